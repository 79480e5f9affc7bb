// Sending or receiving a message on demand, as Microsoft's MAPI documentation describes it,
// against mapispool's libmapispool.so.
//
//   flush all PROFILE...    the spooler's status object flushes every transport
//   flush each PROFILE...   each transport on its own: through its own status object when its
//                           PR_RESOURCE_METHODS has STATUS_FLUSH_QUEUES, else through the
//                           spooler's, with the transport's entry ID as the target
//
// g++ -o flush flush.cpp $(pkg-config --cflags --libs mapispool)
#include <mapix.h>
#include <mapiutil.h>
#include <cstdio>
#include <cstring>

// Prints what GetLastError says about hr on lpObj.
template <class T> static void Report(T *lpObj, const char *what, HRESULT hr)
{
    LPMAPIERROR lpErr = NULL;
    if (lpObj && SUCCEEDED(lpObj->GetLastError(hr, 0, &lpErr)) && lpErr) {
        std::fprintf(stderr, "%s: 0x%08X: %s\n", what, (unsigned)hr, lpErr->lpszError);
        MAPIFreeBuffer(lpErr);
    } else {
        std::fprintf(stderr, "%s: 0x%08X\n", what, (unsigned)hr);
    }
}

// Steps 1-4: the status table's rows of one PR_RESOURCE_TYPE.
static HRESULT StatusRows(LPMAPISESSION lpSession, ULONG ulResourceType, LPSRowSet *lppRows)
{
    LPMAPITABLE lpTable = NULL;
    SizedSPropTagArray(4, sptCols) = {4, {PR_ENTRYID, PR_RESOURCE_TYPE, PR_DISPLAY_NAME_A, PR_RESOURCE_METHODS}};
    SPropValue spvResourceType;
    SRestriction sres;

    HRESULT hr = lpSession->GetStatusTable(0, &lpTable);
    if (FAILED(hr)) {
        Report(lpSession, "GetStatusTable", hr);
        return hr;
    }
    hr = lpTable->SetColumns((LPSPropTagArray)&sptCols, 0);
    if (FAILED(hr)) {
        Report(lpTable, "SetColumns", hr);
        lpTable->Release();
        return hr;
    }
    spvResourceType.ulPropTag = PR_RESOURCE_TYPE;
    spvResourceType.Value.l = ulResourceType;
    sres.rt = RES_PROPERTY;
    sres.res.resProperty.relop = RELOP_EQ;
    sres.res.resProperty.ulPropTag = PR_RESOURCE_TYPE;
    sres.res.resProperty.lpProp = &spvResourceType;
    hr = HrQueryAllRows(lpTable, NULL, &sres, NULL, 0, lppRows);
    if (FAILED(hr))
        Report(lpTable, "HrQueryAllRows", hr);
    lpTable->Release();
    return hr;
}

// Step 5: OpenEntry on a row's PR_ENTRYID.
static HRESULT OpenStatus(LPMAPISESSION lpSession, const SRow &row, LPMAPISTATUS *lppStatus)
{
    ULONG ulObjType = 0;
    if (PROP_TYPE(row.lpProps[0].ulPropTag) != PT_BINARY)
        return MAPI_E_NOT_FOUND;
    HRESULT hr = lpSession->OpenEntry(row.lpProps[0].Value.bin.cb, (LPENTRYID)row.lpProps[0].Value.bin.lpb,
                                      &IID_IMAPIStatus, MAPI_BEST_ACCESS, &ulObjType, (LPUNKNOWN *)lppStatus);
    if (FAILED(hr))
        Report(lpSession, "OpenEntry", hr);
    else if (ulObjType != MAPI_STATUS) {
        std::fprintf(stderr, "OpenEntry: object type %u, not MAPI_STATUS\n", (unsigned)ulObjType);
        (*lppStatus)->Release();
        *lppStatus = NULL;
        return MAPI_E_CALL_FAILED;
    }
    return hr;
}

static const ULONG ulFlushFlags = FLUSH_NO_UI | FLUSH_UPLOAD | FLUSH_DOWNLOAD;

// The first procedure: the spooler flushes every transport.
static HRESULT FlushAll(LPMAPISESSION lpSession)
{
    LPSRowSet lpRows = NULL;
    LPMAPISTATUS lpSpooler = NULL;
    HRESULT hr = StatusRows(lpSession, MAPI_SPOOLER, &lpRows);
    if (FAILED(hr))
        return hr;
    if (lpRows->cRows != 1) {
        std::fprintf(stderr, "the status table has %u MAPI_SPOOLER rows\n", (unsigned)lpRows->cRows);
        FreeProws(lpRows);
        return MAPI_E_NOT_FOUND;
    }
    hr = OpenStatus(lpSession, lpRows->aRow[0], &lpSpooler);
    if (SUCCEEDED(hr)) {
        hr = lpSpooler->FlushQueues(0, 0, NULL, ulFlushFlags);
        if (FAILED(hr))
            Report(lpSpooler, "FlushQueues", hr);
        else
            std::printf("spooler: FlushQueues 0x%08X\n", (unsigned)hr);
        lpSpooler->Release();
    }
    FreeProws(lpRows);
    return hr;
}

// The second procedure: each transport on its own.
static HRESULT FlushEach(LPMAPISESSION lpSession)
{
    LPSRowSet lpRows = NULL;
    HRESULT hr = StatusRows(lpSession, MAPI_TRANSPORT_PROVIDER, &lpRows);
    if (FAILED(hr))
        return hr;
    for (ULONG i = 0; i < lpRows->cRows && SUCCEEDED(hr); i++) {
        const SRow &row = lpRows->aRow[i];
        const char *name = PROP_TYPE(row.lpProps[2].ulPropTag) == PT_STRING8 ? row.lpProps[2].Value.lpszA : "?";
        ULONG ulMethods = PROP_TYPE(row.lpProps[3].ulPropTag) == PT_LONG ? row.lpProps[3].Value.l : 0;
        LPMAPISTATUS lpStatus = NULL;
        if (ulMethods & STATUS_FLUSH_QUEUES) {
            hr = OpenStatus(lpSession, row, &lpStatus);
            if (SUCCEEDED(hr)) {
                hr = lpStatus->FlushQueues(0, 0, NULL, ulFlushFlags);
                std::printf("%s: FlushQueues on its own status object: 0x%08X\n", name, (unsigned)hr);
            }
        } else {
            LPSRowSet lpSpoolerRows = NULL;
            hr = StatusRows(lpSession, MAPI_SPOOLER, &lpSpoolerRows);
            if (SUCCEEDED(hr) && lpSpoolerRows->cRows == 1)
                hr = OpenStatus(lpSession, lpSpoolerRows->aRow[0], &lpStatus);
            else if (SUCCEEDED(hr))
                hr = MAPI_E_NOT_FOUND;
            if (SUCCEEDED(hr)) {
                hr = lpStatus->FlushQueues(0, row.lpProps[0].Value.bin.cb,
                                           (LPENTRYID)row.lpProps[0].Value.bin.lpb, ulFlushFlags);
                std::printf("%s: FlushQueues on the spooler, targeted: 0x%08X\n", name, (unsigned)hr);
            }
            FreeProws(lpSpoolerRows);
        }
        if (lpStatus) {
            if (FAILED(hr))
                Report(lpStatus, "FlushQueues", hr);
            lpStatus->Release();
        }
    }
    FreeProws(lpRows);
    return hr;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (std::strcmp(argv[1], "all") != 0 && std::strcmp(argv[1], "each") != 0)) {
        std::fprintf(stderr, "usage: %s all|each PROFILE...\n", argv[0]);
        return 2;
    }
    HRESULT hr = MAPIInitialize(NULL);
    if (FAILED(hr)) {
        std::fprintf(stderr, "MAPIInitialize: 0x%08X\n", (unsigned)hr);
        return 1;
    }
    for (int i = 2; i < argc && SUCCEEDED(hr); i++) {
        LPMAPISESSION lpSession = NULL;
        hr = MAPILogonEx(0, (LPTSTR)argv[i], NULL, MAPI_EXTENDED | MAPI_NEW_SESSION, &lpSession);
        if (FAILED(hr)) {
            std::fprintf(stderr, "MAPILogonEx %s: 0x%08X\n", argv[i], (unsigned)hr);
            break;
        }
        std::printf("%s:\n", argv[i]);
        hr = std::strcmp(argv[1], "all") == 0 ? FlushAll(lpSession) : FlushEach(lpSession);
        lpSession->Logoff(0, 0, 0);
        lpSession->Release();
    }
    MAPIUninitialize();
    return FAILED(hr) ? 1 : 0;
}
