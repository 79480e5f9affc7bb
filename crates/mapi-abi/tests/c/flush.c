/* The same two procedures as flush.cpp, in C: every call through lpVtbl, `This` first.
 *
 *   flush all PROFILE...  |  flush each PROFILE...
 *
 * gcc -o flush flush.c $(pkg-config --cflags --libs mapispool) */
#include <stdio.h>
#include <string.h>
#include <mapix.h>
#include <mapiutil.h>

static void report(const char *what, HRESULT hr, LPMAPIERROR lpErr)
{
    fprintf(stderr, "%s: 0x%08X: %s\n", what, (unsigned)hr, lpErr ? lpErr->lpszError : "(no text)");
    MAPIFreeBuffer(lpErr);
}

static HRESULT status_rows(LPMAPISESSION lpSession, ULONG ulResourceType, LPSRowSet *lppRows)
{
    LPMAPITABLE lpTable = NULL;
    LPMAPIERROR lpErr = NULL;
    SizedSPropTagArray(4, sptCols) = {4, {PR_ENTRYID, PR_RESOURCE_TYPE, PR_DISPLAY_NAME_A, PR_RESOURCE_METHODS}};
    SPropValue spvResourceType;
    SRestriction sres;
    HRESULT hr;

    hr = lpSession->lpVtbl->GetStatusTable(lpSession, 0, &lpTable);
    if (FAILED(hr)) {
        lpSession->lpVtbl->GetLastError(lpSession, hr, 0, &lpErr);
        report("GetStatusTable", hr, lpErr);
        return hr;
    }
    hr = lpTable->lpVtbl->SetColumns(lpTable, (LPSPropTagArray)&sptCols, 0);
    if (SUCCEEDED(hr)) {
        spvResourceType.ulPropTag = PR_RESOURCE_TYPE;
        spvResourceType.Value.l = (LONG)ulResourceType;
        sres.rt = RES_PROPERTY;
        sres.res.resProperty.relop = RELOP_EQ;
        sres.res.resProperty.ulPropTag = PR_RESOURCE_TYPE;
        sres.res.resProperty.lpProp = &spvResourceType;
        hr = HrQueryAllRows(lpTable, NULL, &sres, NULL, 0, lppRows);
    }
    if (FAILED(hr)) {
        lpTable->lpVtbl->GetLastError(lpTable, hr, 0, &lpErr);
        report("SetColumns/HrQueryAllRows", hr, lpErr);
    }
    lpTable->lpVtbl->Release(lpTable);
    return hr;
}

static HRESULT open_status(LPMAPISESSION lpSession, const SRow *row, LPMAPISTATUS *lppStatus)
{
    ULONG ulObjType = 0;
    LPMAPIERROR lpErr = NULL;
    HRESULT hr = lpSession->lpVtbl->OpenEntry(lpSession, row->lpProps[0].Value.bin.cb,
                                              (LPENTRYID)row->lpProps[0].Value.bin.lpb, &IID_IMAPIStatus,
                                              MAPI_BEST_ACCESS, &ulObjType, (LPUNKNOWN *)lppStatus);
    if (FAILED(hr)) {
        lpSession->lpVtbl->GetLastError(lpSession, hr, 0, &lpErr);
        report("OpenEntry", hr, lpErr);
    } else if (ulObjType != MAPI_STATUS) {
        fprintf(stderr, "OpenEntry: object type %u, not MAPI_STATUS\n", (unsigned)ulObjType);
        (*lppStatus)->lpVtbl->Release(*lppStatus);
        *lppStatus = NULL;
        hr = MAPI_E_CALL_FAILED;
    }
    return hr;
}

static HRESULT flush(LPMAPISTATUS lpStatus, ULONG cb, LPENTRYID lpTarget)
{
    LPMAPIERROR lpErr = NULL;
    HRESULT hr = lpStatus->lpVtbl->FlushQueues(lpStatus, 0, cb, lpTarget, FLUSH_NO_UI | FLUSH_UPLOAD | FLUSH_DOWNLOAD);
    if (FAILED(hr)) {
        lpStatus->lpVtbl->GetLastError(lpStatus, hr, 0, &lpErr);
        report("FlushQueues", hr, lpErr);
    }
    return hr;
}

static HRESULT flush_all(LPMAPISESSION lpSession)
{
    LPSRowSet lpRows = NULL;
    LPMAPISTATUS lpSpooler = NULL;
    HRESULT hr = status_rows(lpSession, MAPI_SPOOLER, &lpRows);
    if (FAILED(hr))
        return hr;
    if (lpRows->cRows != 1) {
        fprintf(stderr, "the status table has %u MAPI_SPOOLER rows\n", (unsigned)lpRows->cRows);
        hr = MAPI_E_NOT_FOUND;
    } else {
        hr = open_status(lpSession, &lpRows->aRow[0], &lpSpooler);
    }
    if (SUCCEEDED(hr)) {
        hr = flush(lpSpooler, 0, NULL);
        printf("spooler: FlushQueues 0x%08X\n", (unsigned)hr);
        lpSpooler->lpVtbl->Release(lpSpooler);
    }
    FreeProws(lpRows);
    return hr;
}

static HRESULT flush_each(LPMAPISESSION lpSession)
{
    LPSRowSet lpRows = NULL;
    ULONG i;
    HRESULT hr = status_rows(lpSession, MAPI_TRANSPORT_PROVIDER, &lpRows);
    if (FAILED(hr))
        return hr;
    for (i = 0; i < lpRows->cRows && SUCCEEDED(hr); i++) {
        const SRow *row = &lpRows->aRow[i];
        const char *name = PROP_TYPE(row->lpProps[2].ulPropTag) == PT_STRING8 ? row->lpProps[2].Value.lpszA : "?";
        ULONG ulMethods = PROP_TYPE(row->lpProps[3].ulPropTag) == PT_LONG ? (ULONG)row->lpProps[3].Value.l : 0;
        LPMAPISTATUS lpStatus = NULL;
        if (ulMethods & STATUS_FLUSH_QUEUES) {
            hr = open_status(lpSession, row, &lpStatus);
            if (SUCCEEDED(hr)) {
                hr = flush(lpStatus, 0, NULL);
                printf("%s: FlushQueues on its own status object: 0x%08X\n", name, (unsigned)hr);
            }
        } else {
            LPSRowSet lpSpoolerRows = NULL;
            hr = status_rows(lpSession, MAPI_SPOOLER, &lpSpoolerRows);
            if (SUCCEEDED(hr))
                hr = lpSpoolerRows->cRows == 1 ? open_status(lpSession, &lpSpoolerRows->aRow[0], &lpStatus)
                                               : MAPI_E_NOT_FOUND;
            if (SUCCEEDED(hr)) {
                hr = flush(lpStatus, row->lpProps[0].Value.bin.cb, (LPENTRYID)row->lpProps[0].Value.bin.lpb);
                printf("%s: FlushQueues on the spooler, targeted: 0x%08X\n", name, (unsigned)hr);
            }
            FreeProws(lpSpoolerRows);
        }
        if (lpStatus)
            lpStatus->lpVtbl->Release(lpStatus);
    }
    FreeProws(lpRows);
    return hr;
}

int main(int argc, char **argv)
{
    HRESULT hr;
    int i;
    if (argc < 3 || (strcmp(argv[1], "all") != 0 && strcmp(argv[1], "each") != 0)) {
        fprintf(stderr, "usage: %s all|each PROFILE...\n", argv[0]);
        return 2;
    }
    hr = MAPIInitialize(NULL);
    if (FAILED(hr)) {
        fprintf(stderr, "MAPIInitialize: 0x%08X\n", (unsigned)hr);
        return 1;
    }
    for (i = 2; i < argc && SUCCEEDED(hr); i++) {
        LPMAPISESSION lpSession = NULL;
        hr = MAPILogonEx(0, (LPTSTR)argv[i], NULL, MAPI_EXTENDED | MAPI_NEW_SESSION, &lpSession);
        if (FAILED(hr)) {
            fprintf(stderr, "MAPILogonEx %s: 0x%08X\n", argv[i], (unsigned)hr);
            break;
        }
        printf("%s:\n", argv[i]);
        hr = strcmp(argv[1], "all") == 0 ? flush_all(lpSession) : flush_each(lpSession);
        lpSession->lpVtbl->Logoff(lpSession, 0, 0, 0);
        lpSession->lpVtbl->Release(lpSession);
    }
    MAPIUninitialize();
    return FAILED(hr) ? 1 : 0;
}
