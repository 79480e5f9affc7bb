/* The rest of the interface, call by call, in C: every check names what it expected.
 * Run by tests/c_api.rs on alice's profile (transports "local", with FlushQueues, and
 * "relay", without), under Valgrind. Exits non-zero on any failed check. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>
#include <mapix.h>
#include <mapiutil.h>

static int failures = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "api.c:%d: expected %s\n", __LINE__, #cond);     \
            failures++;                                                      \
        }                                                                    \
    } while (0)

#define CHECK_HR(call, expected)                                                          \
    do {                                                                                  \
        HRESULT hr_ = (call);                                                             \
        if (hr_ != (HRESULT)(expected)) {                                                 \
            fprintf(stderr, "api.c:%d: %s gave 0x%08X, expected %s\n", __LINE__, #call,   \
                    (unsigned)hr_, #expected);                                            \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

/* GetLastError's text for hr contains `word`. */
#define CHECK_ERROR_TEXT(obj, hr, word)                                              \
    do {                                                                             \
        LPMAPIERROR e_ = NULL;                                                       \
        CHECK_HR((obj)->lpVtbl->GetLastError((obj), (hr), 0, &e_), S_OK);           \
        CHECK(e_ != NULL && strstr(e_->lpszError, (word)) != NULL);                 \
        if (e_ && !strstr(e_->lpszError, (word)))                                    \
            fprintf(stderr, "  GetLastError said: %s\n", e_->lpszError);             \
        MAPIFreeBuffer(e_);                                                          \
    } while (0)

static const char *profile;

static void allocation(void)
{
    LPVOID root = NULL, more = NULL;
    int i;
    CHECK_HR(MAPIAllocateBuffer(64, &root), S_OK);
    memset(root, 0xAB, 64);
    for (i = 0; i < 3; i++) {
        CHECK_HR(MAPIAllocateMore(100, root, &more), S_OK);
        memset(more, i, 100);
    }
    CHECK_HR(MAPIAllocateMore(8, NULL, &more), MAPI_E_INVALID_PARAMETER);
    CHECK_HR(MAPIAllocateBuffer(8, NULL), MAPI_E_INVALID_PARAMETER);
    CHECK(MAPIFreeBuffer(root) == 0); /* frees the three linked blocks too (Valgrind checks) */
    CHECK(MAPIFreeBuffer(NULL) == 0);

    /* FreePadrlist: each entry's properties, then the list. */
    {
        LPADRLIST list = NULL;
        CHECK_HR(MAPIAllocateBuffer(CbNewSRowSet(2), (LPVOID *)&list), S_OK);
        if (list) {
            list->cEntries = 2;
            for (i = 0; i < 2; i++) {
                list->aEntries[i].cValues = 1;
                CHECK_HR(MAPIAllocateBuffer(sizeof(SPropValue), (LPVOID *)&list->aEntries[i].rgPropVals), S_OK);
                CHECK_HR(MAPIAllocateMore(16, list->aEntries[i].rgPropVals, &more), S_OK);
                list->aEntries[i].rgPropVals[0].ulPropTag = PR_DISPLAY_NAME_A;
                list->aEntries[i].rgPropVals[0].Value.lpszA = (LPSTR)more;
                strcpy((char *)more, "someone");
            }
            FreePadrlist(list);
        }
    }
}

static void logon_errors(void)
{
    LPMAPISESSION s = NULL;
    MAPIINIT_0 bad = {1, 0};
    CHECK_HR(MAPILogonEx(0, (LPTSTR)profile, NULL, MAPI_EXTENDED, &s), MAPI_E_NOT_INITIALIZED);
    CHECK_HR(MAPIInitialize(&bad), MAPI_E_VERSION);
    CHECK_HR(MAPIInitialize(NULL), S_OK);
    CHECK_HR(MAPILogonEx(0, (LPTSTR)"no-such-profile-here", NULL, MAPI_EXTENDED, &s), MAPI_E_LOGON_FAILED);
    CHECK(s == NULL);
    CHECK_HR(MAPILogonEx(0, (LPTSTR)profile, NULL, 0x4, &s), MAPI_E_UNKNOWN_FLAGS);
    CHECK_HR(MAPILogonEx(0, (LPTSTR)profile, NULL, MAPI_EXTENDED, NULL), MAPI_E_INVALID_PARAMETER);
    CHECK_HR(MAPILogonEx(0, NULL, NULL, MAPI_EXPLICIT_PROFILE, &s), MAPI_E_LOGON_FAILED);
}

static void shared_and_unicode_logon(void)
{
    LPMAPISESSION a = NULL, b = NULL, w = NULL;
    wchar_t wide[4096];
    mbstowcs(wide, profile, 4096);
    CHECK_HR(MAPILogonEx(0, (LPTSTR)profile, NULL, MAPI_EXTENDED | MAPI_NEW_SESSION | MAPI_ALLOW_OTHERS, &a), S_OK);
    /* Without MAPI_NEW_SESSION: the shared session, whatever the name. */
    CHECK_HR(MAPILogonEx(0, NULL, NULL, MAPI_EXTENDED, &b), S_OK);
    CHECK(a == b);
    CHECK(b->lpVtbl->Release(b) == 1);
    CHECK(a->lpVtbl->Release(a) == 0);
    /* MAPI_UNICODE: the profile name is wchar_t. */
    CHECK_HR(MAPILogonEx(0, (LPTSTR)wide, NULL, MAPI_EXTENDED | MAPI_NEW_SESSION | MAPI_UNICODE, &w), S_OK);
    if (w)
        w->lpVtbl->Release(w);
}

static LPSPropValue find(LPSRow row, ULONG tag)
{
    ULONG i;
    for (i = 0; i < row->cValues; i++)
        if (row->lpProps[i].ulPropTag == tag)
            return &row->lpProps[i];
    return NULL;
}

static void table(LPMAPISESSION s)
{
    LPMAPITABLE t = NULL;
    LPSRowSet rows = NULL;
    LPSPropTagArray cols = NULL;
    LPSSortOrderSet sorted = NULL;
    ULONG n = 0, row = 0, num = 0, den = 0, st = 0, ty = 0, i;
    LONG sought = 0;
    BOOKMARK bk = 0;
    SizedSPropTagArray(3, three) = {3, {PR_DISPLAY_NAME_A, PR_RESOURCE_TYPE, PROP_TAG(PT_LONG, 0x6000)}};
    SizedSSortOrderSet(1, byName) = {1, 0, 0, {{PR_DISPLAY_NAME_A, TABLE_SORT_DESCEND}}};
    SPropValue name, transport;
    SRestriction content, and_[2], both;

    CHECK_HR(s->lpVtbl->GetStatusTable(s, 0, NULL), MAPI_E_INVALID_PARAMETER);
    CHECK_HR(s->lpVtbl->GetStatusTable(s, 1, &t), MAPI_E_UNKNOWN_FLAGS);
    CHECK_ERROR_TEXT(s, MAPI_E_UNKNOWN_FLAGS, "GetStatusTable");
    CHECK_HR(s->lpVtbl->GetStatusTable(s, 0, &t), S_OK);
    if (!t)
        return;
    CHECK(t->lpVtbl->AddRef(t) == 2);
    CHECK(t->lpVtbl->Release(t) == 1);
    /* The wrong object for the vtable is refused, not used. */
    CHECK_HR(t->lpVtbl->GetRowCount((LPMAPITABLE)s, 0, &n), MAPI_E_INVALID_PARAMETER);

    CHECK_HR(t->lpVtbl->GetRowCount(t, 0, &n), S_OK);
    CHECK(n == 5); /* subsystem, spooler, store, local, relay */
    CHECK_HR(t->lpVtbl->GetStatus(t, &st, &ty), S_OK);
    CHECK(st == TBLSTAT_COMPLETE && ty == TBLTYPE_DYNAMIC);

    CHECK_HR(t->lpVtbl->SetColumns(t, (LPSPropTagArray)&three, 0), S_OK);
    CHECK_HR(t->lpVtbl->QueryColumns(t, 0, &cols), S_OK);
    CHECK(cols && cols->cValues == 3 && cols->aulPropTag[0] == PR_DISPLAY_NAME_A);
    MAPIFreeBuffer(cols);
    CHECK_HR(t->lpVtbl->QueryRows(t, 0, 0, &rows), MAPI_E_INVALID_PARAMETER);
    CHECK_HR(t->lpVtbl->QueryRows(t, 10, 0, &rows), S_OK);
    CHECK(rows && rows->cRows == 5);
    if (rows && rows->cRows == 5) {
        int spooler = 0;
        for (i = 0; i < rows->cRows; i++) {
            LPSRow r = &rows->aRow[i];
            CHECK(r->cValues == 3);
            CHECK(r->lpProps[0].ulPropTag == PR_DISPLAY_NAME_A);
            CHECK(r->lpProps[2].ulPropTag == PROP_TAG(PT_ERROR, 0x6000));
            CHECK(r->lpProps[2].Value.err == MAPI_E_NOT_FOUND);
            if (r->lpProps[1].Value.l == (LONG)MAPI_SPOOLER)
                spooler = strcmp(r->lpProps[0].Value.lpszA, "MAPI Spooler") == 0;
        }
        CHECK(spooler);
    }
    FreeProws(rows);
    rows = NULL;
    CHECK_HR(t->lpVtbl->QueryPosition(t, &row, &num, &den), S_OK);
    CHECK(row == 5 && den == 5);
    CHECK_HR(t->lpVtbl->SeekRow(t, BOOKMARK_BEGINNING, 2, &sought), S_OK);
    CHECK(sought == 2);
    CHECK_HR(t->lpVtbl->QueryPosition(t, &row, &num, &den), S_OK);
    CHECK(row == 2);
    CHECK_HR(t->lpVtbl->CreateBookmark(t, &bk), S_OK);
    CHECK_HR(t->lpVtbl->SeekRow(t, BOOKMARK_END, 0, NULL), S_OK);
    CHECK_HR(t->lpVtbl->SeekRow(t, bk, 0, NULL), S_OK);
    CHECK_HR(t->lpVtbl->QueryPosition(t, &row, &num, &den), S_OK);
    CHECK(row == 2);
    CHECK_HR(t->lpVtbl->FreeBookmark(t, bk), S_OK);
    CHECK_HR(t->lpVtbl->SeekRowApprox(t, 1, 1), S_OK);
    CHECK_HR(t->lpVtbl->QueryPosition(t, &row, &num, &den), S_OK);
    CHECK(row == 5);

    /* Sort by name, descending: "relay" first, then "local", ... */
    CHECK_HR(t->lpVtbl->SortTable(t, (LPSSortOrderSet)&byName, 0), S_OK);
    CHECK_HR(t->lpVtbl->QuerySortOrder(t, &sorted), S_OK);
    CHECK(sorted && sorted->cSorts == 1 && sorted->aSort[0].ulOrder == TABLE_SORT_DESCEND);
    MAPIFreeBuffer(sorted);
    CHECK_HR(t->lpVtbl->QueryRows(t, 1, 0, &rows), S_OK);
    CHECK(rows && rows->cRows == 1 && strcmp(rows->aRow[0].lpProps[0].Value.lpszA, "relay") == 0);
    FreeProws(rows);
    rows = NULL;

    /* FindRow: a content restriction on the PT_STRING8 name. */
    name.ulPropTag = PR_DISPLAY_NAME_A;
    name.Value.lpszA = (LPSTR) "LOCA";
    content.rt = RES_CONTENT;
    content.res.resContent.ulFuzzyLevel = FL_SUBSTRING | FL_IGNORECASE;
    content.res.resContent.ulPropTag = PR_DISPLAY_NAME_A;
    content.res.resContent.lpProp = &name;
    CHECK_HR(t->lpVtbl->FindRow(t, &content, BOOKMARK_BEGINNING, 0), S_OK);
    CHECK_HR(t->lpVtbl->QueryRows(t, 1, TBL_NOADVANCE, &rows), S_OK);
    CHECK(rows && rows->cRows == 1 && strcmp(rows->aRow[0].lpProps[0].Value.lpszA, "local") == 0);
    FreeProws(rows);
    rows = NULL;

    /* Restrict: transports whose PR_RESOURCE_METHODS has STATUS_FLUSH_QUEUES. */
    transport.ulPropTag = PR_RESOURCE_TYPE;
    transport.Value.l = MAPI_TRANSPORT_PROVIDER;
    and_[0].rt = RES_PROPERTY;
    and_[0].res.resProperty.relop = RELOP_EQ;
    and_[0].res.resProperty.ulPropTag = PR_RESOURCE_TYPE;
    and_[0].res.resProperty.lpProp = &transport;
    and_[1].rt = RES_BITMASK;
    and_[1].res.resBitMask.relBMR = BMR_NEZ;
    and_[1].res.resBitMask.ulPropTag = PR_RESOURCE_METHODS;
    and_[1].res.resBitMask.ulMask = STATUS_FLUSH_QUEUES;
    both.rt = RES_AND;
    both.res.resAnd.cRes = 2;
    both.res.resAnd.lpRes = and_;
    CHECK_HR(t->lpVtbl->Restrict(t, &both, 0), S_OK);
    CHECK_HR(t->lpVtbl->GetRowCount(t, 0, &n), S_OK);
    CHECK(n == 1);
    both.rt = 77;
    CHECK_HR(t->lpVtbl->Restrict(t, &both, 0), MAPI_E_TOO_COMPLEX);
    CHECK_HR(t->lpVtbl->Restrict(t, NULL, 0), S_OK);
    CHECK_HR(t->lpVtbl->GetRowCount(t, 0, &n), S_OK);
    CHECK(n == 5);

    /* HrQueryAllRows' cap is an error, never a truncation. */
    CHECK_HR(HrQueryAllRows(t, NULL, NULL, NULL, 1, &rows), MAPI_E_TABLE_TOO_BIG);
    CHECK(rows == NULL);
    CHECK_HR(HrQueryAllRows(t, NULL, NULL, NULL, 0, NULL), MAPI_E_INVALID_PARAMETER);

    /* Methods outside the core: MAPI_E_NO_SUPPORT, and GetLastError names the method (which
       also shows the vtable slot is the one the header says). */
    CHECK_HR(t->lpVtbl->ExpandRow(t, 0, NULL, 0, 0, NULL, NULL), MAPI_E_NO_SUPPORT);
    CHECK_ERROR_TEXT(t, MAPI_E_NO_SUPPORT, "ExpandRow");
    CHECK_HR(t->lpVtbl->SetCollapseState(t, 0, 0, NULL, NULL), MAPI_E_NO_SUPPORT);
    CHECK_ERROR_TEXT(t, MAPI_E_NO_SUPPORT, "SetCollapseState");
    CHECK_HR(t->lpVtbl->Abort(t), S_OK);
    CHECK(t->lpVtbl->Release(t) == 0);
}

static void unicode_table(LPMAPISESSION s)
{
    LPMAPITABLE t = NULL;
    LPSRowSet rows = NULL;
    ULONG i;
    int found = 0;
    CHECK_HR(s->lpVtbl->GetStatusTable(s, MAPI_UNICODE, &t), S_OK);
    if (!t)
        return;
    CHECK_HR(HrQueryAllRows(t, NULL, NULL, NULL, 0, &rows), S_OK);
    for (i = 0; rows && i < rows->cRows; i++) {
        LPSPropValue v = find(&rows->aRow[i], PR_DISPLAY_NAME_W);
        if (v && wcscmp(v->Value.lpszW, L"MAPI Spooler") == 0)
            found = 1;
    }
    CHECK(found);
    FreeProws(rows);
    t->lpVtbl->Release(t);
}

static LPMAPISTATUS open_kind(LPMAPISESSION s, ULONG kind, const char *name)
{
    LPMAPITABLE t = NULL;
    LPSRowSet rows = NULL;
    LPMAPISTATUS st = NULL;
    ULONG type = 0, i;
    SizedSPropTagArray(3, cols) = {3, {PR_ENTRYID, PR_RESOURCE_TYPE, PR_DISPLAY_NAME_A}};
    if (FAILED(s->lpVtbl->GetStatusTable(s, 0, &t)))
        return NULL;
    CHECK_HR(HrQueryAllRows(t, (LPSPropTagArray)&cols, NULL, NULL, 0, &rows), S_OK);
    for (i = 0; rows && i < rows->cRows; i++) {
        LPSRow r = &rows->aRow[i];
        if ((ULONG)r->lpProps[1].Value.l == kind && (!name || strcmp(r->lpProps[2].Value.lpszA, name) == 0)) {
            CHECK_HR(s->lpVtbl->OpenEntry(s, r->lpProps[0].Value.bin.cb, (LPENTRYID)r->lpProps[0].Value.bin.lpb,
                                          NULL, 0, &type, (LPUNKNOWN *)&st), S_OK);
            CHECK(type == MAPI_STATUS);
        }
    }
    FreeProws(rows);
    t->lpVtbl->Release(t);
    return st;
}

static void status(LPMAPISESSION s)
{
    LPMAPISTATUS sp = open_kind(s, MAPI_SPOOLER, NULL), relay = open_kind(s, MAPI_TRANSPORT_PROVIDER, "relay");
    LPSPropValue props = NULL;
    LPSPropTagArray list = NULL;
    LPUNKNOWN unk = NULL;
    ULONG n = 0, type = 0, same = 0;
    BYTE junk[20] = {0};
    SizedSPropTagArray(3, want) = {3, {PR_RESOURCE_TYPE, PR_STATUS_STRING_A, PROP_TAG(PT_LONG, 0x6001)}};
    CHECK(sp != NULL && relay != NULL);
    if (!sp || !relay)
        return;
    CHECK_HR(sp->lpVtbl->GetProps(sp, (LPSPropTagArray)&want, 0, &n, &props), MAPI_W_ERRORS_RETURNED);
    CHECK(n == 3 && props[0].Value.l == (LONG)MAPI_SPOOLER && PROP_TYPE(props[1].ulPropTag) == PT_STRING8);
    CHECK(props && props[2].ulPropTag == PROP_TAG(PT_ERROR, 0x6001));
    MAPIFreeBuffer(props);
    props = NULL;
    CHECK_HR(sp->lpVtbl->GetProps(sp, NULL, 0, &n, &props), S_OK);
    CHECK(n >= 7);
    MAPIFreeBuffer(props);
    CHECK_HR(sp->lpVtbl->GetPropList(sp, 0, &list), S_OK);
    CHECK(list && list->cValues == n);
    MAPIFreeBuffer(list);

    CHECK_HR(sp->lpVtbl->QueryInterface(sp, &IID_IMAPIProp, (LPVOID *)&unk), S_OK);
    CHECK(unk == (LPUNKNOWN)sp);
    CHECK(unk->lpVtbl->Release(unk) == 1);
    CHECK_HR(sp->lpVtbl->QueryInterface(sp, &IID_IMAPITable, (LPVOID *)&unk), MAPI_E_INTERFACE_NOT_SUPPORTED);
    CHECK(unk == NULL);

    CHECK_HR(sp->lpVtbl->ValidateState(sp, 0, 0), S_OK);
    CHECK_HR(sp->lpVtbl->SettingsDialog(sp, 0, 0), MAPI_E_NO_SUPPORT);
    CHECK_HR(sp->lpVtbl->ChangePassword(sp, NULL, NULL, 0), MAPI_E_NO_SUPPORT);
    CHECK_HR(sp->lpVtbl->SaveChanges(sp, 0), MAPI_E_NO_SUPPORT);
    CHECK_ERROR_TEXT(sp, MAPI_E_NO_SUPPORT, "SaveChanges");
    CHECK_HR(sp->lpVtbl->GetIDsFromNames(sp, 0, NULL, 0, NULL), MAPI_E_NO_SUPPORT);
    CHECK_ERROR_TEXT(sp, MAPI_E_NO_SUPPORT, "GetIDsFromNames");
    /* "relay" has no STATUS_FLUSH_QUEUES: its own FlushQueues is refused, and says how. */
    CHECK_HR(relay->lpVtbl->FlushQueues(relay, 0, 0, NULL, FLUSH_NO_UI | FLUSH_UPLOAD), MAPI_E_NO_SUPPORT);
    CHECK_ERROR_TEXT(relay, MAPI_E_NO_SUPPORT, "spooler");

    CHECK_HR(s->lpVtbl->OpenEntry(s, sizeof junk, (LPENTRYID)junk, NULL, 0, &type, &unk), MAPI_E_INVALID_ENTRYID);
    CHECK_HR(s->lpVtbl->CompareEntryIDs(s, sizeof junk, (LPENTRYID)junk, sizeof junk, (LPENTRYID)junk, 0, &same), S_OK);
    CHECK(same == 1);
    CHECK_HR(s->lpVtbl->OpenMsgStore(s, 0, 0, NULL, NULL, 0, NULL), MAPI_E_NO_SUPPORT);
    CHECK_ERROR_TEXT(s, MAPI_E_NO_SUPPORT, "OpenMsgStore");
    CHECK_HR(s->lpVtbl->PrepareForm(s, NULL, NULL, NULL), MAPI_E_NO_SUPPORT);
    CHECK_ERROR_TEXT(s, MAPI_E_NO_SUPPORT, "PrepareForm");
    CHECK(relay->lpVtbl->Release(relay) == 0);
    CHECK(sp->lpVtbl->Release(sp) == 0);
}

/* An advise sink: counts the TABLE_ROW_MODIFIED notifications whose row has the spooler's
   PR_STATUS_CODE. mapispool calls it on one of its own threads. */
struct Sink {
    const IMAPIAdviseSinkVtbl *lpVtbl;
    pthread_mutex_t mu;
    ULONG refs;
    int modified;
};

static HRESULT sink_qi(IMAPIAdviseSink *This, REFIID riid, LPVOID *ppv)
{
    (void)riid;
    *ppv = This;
    This->lpVtbl->AddRef(This);
    return S_OK;
}
static ULONG sink_addref(IMAPIAdviseSink *This)
{
    struct Sink *s = (struct Sink *)This;
    ULONG n;
    pthread_mutex_lock(&s->mu);
    n = ++s->refs;
    pthread_mutex_unlock(&s->mu);
    return n;
}
static ULONG sink_release(IMAPIAdviseSink *This)
{
    struct Sink *s = (struct Sink *)This;
    ULONG n;
    pthread_mutex_lock(&s->mu);
    n = --s->refs;
    pthread_mutex_unlock(&s->mu);
    return n;
}
static ULONG sink_notify(IMAPIAdviseSink *This, ULONG cNotif, LPNOTIFICATION lpNotif)
{
    struct Sink *s = (struct Sink *)This;
    ULONG i;
    for (i = 0; i < cNotif; i++) {
        const TABLE_NOTIFICATION *t = &lpNotif[i].info.tab;
        if (lpNotif[i].ulEventType == fnevTableModified && t->ulTableEvent == TABLE_ROW_MODIFIED &&
            PROP_TYPE(t->propIndex.ulPropTag) == PT_BINARY && t->row.cValues == 2 &&
            t->row.lpProps[0].ulPropTag == PR_DISPLAY_NAME_A && t->row.lpProps[1].ulPropTag == PR_STATUS_CODE) {
            pthread_mutex_lock(&s->mu);
            s->modified++;
            pthread_mutex_unlock(&s->mu);
        }
    }
    return 0;
}
static const IMAPIAdviseSinkVtbl sink_vtbl = {sink_qi, sink_addref, sink_release, sink_notify};

static int sink_count(struct Sink *s, int *refs)
{
    int n;
    pthread_mutex_lock(&s->mu);
    n = s->modified;
    *refs = (int)s->refs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void advise(LPMAPISESSION s)
{
    struct Sink sink = {&sink_vtbl, PTHREAD_MUTEX_INITIALIZER, 1, 0};
    LPMAPITABLE t = NULL;
    LPMAPISTATUS sp = NULL;
    ULONG_PTR conn = 0;
    int refs = 0, tries, before;
    SizedSPropTagArray(2, cols) = {2, {PR_DISPLAY_NAME_A, PR_STATUS_CODE}};
    CHECK_HR(s->lpVtbl->GetStatusTable(s, 0, &t), S_OK);
    if (!t)
        return;
    CHECK_HR(t->lpVtbl->SetColumns(t, (LPSPropTagArray)&cols, 0), S_OK);
    CHECK_HR(t->lpVtbl->Advise(t, fnevNewMail, (LPMAPIADVISESINK)&sink, &conn), MAPI_E_INVALID_PARAMETER);
    CHECK_HR(t->lpVtbl->Advise(t, fnevTableModified, (LPMAPIADVISESINK)&sink, &conn), S_OK);
    sink_count(&sink, &refs);
    CHECK(refs == 2); /* the table holds a reference while advised */
    sp = open_kind(s, MAPI_SPOOLER, NULL);
    if (sp) {
        /* A flush changes the status rows' PR_STATUS_CODE while it runs. */
        CHECK(SUCCEEDED(sp->lpVtbl->FlushQueues(sp, 0, 0, NULL, FLUSH_NO_UI | FLUSH_UPLOAD | FLUSH_DOWNLOAD)));
        sp->lpVtbl->Release(sp);
    }
    for (tries = 0; tries < 500 && sink_count(&sink, &refs) == 0; tries++)
        usleep(10000); /* wait for the condition, up to 5 s */
    CHECK(sink_count(&sink, &refs) > 0);
    CHECK_HR(t->lpVtbl->Unadvise(t, conn), S_OK);
    CHECK_HR(t->lpVtbl->Unadvise(t, conn), MAPI_E_NOT_FOUND);
    before = sink_count(&sink, &refs);
    CHECK(refs == 1); /* Unadvise gave the reference back */
    sp = open_kind(s, MAPI_SPOOLER, NULL);
    if (sp) {
        CHECK(SUCCEEDED(sp->lpVtbl->FlushQueues(sp, 0, 0, NULL, FLUSH_NO_UI | FLUSH_UPLOAD)));
        sp->lpVtbl->Release(sp);
    }
    CHECK(sink_count(&sink, &refs) == before); /* nothing after Unadvise */
    /* Advised when the table goes: its last Release gives the sink back too. */
    CHECK_HR(t->lpVtbl->Advise(t, fnevTableModified, (LPMAPIADVISESINK)&sink, &conn), S_OK);
    CHECK(t->lpVtbl->Release(t) == 0);
    sink_count(&sink, &refs);
    CHECK(refs == 1);
}

static void no_mail(void)
{
    LPMAPISESSION s = NULL;
    LPMAPISTATUS sp;
    CHECK_HR(MAPILogonEx(0, (LPTSTR)profile, NULL, MAPI_EXTENDED | MAPI_NEW_SESSION | MAPI_NO_MAIL, &s), S_OK);
    if (!s)
        return;
    sp = open_kind(s, MAPI_SPOOLER, NULL);
    if (sp) {
        CHECK_HR(sp->lpVtbl->FlushQueues(sp, 0, 0, NULL, FLUSH_NO_UI | FLUSH_UPLOAD), MAPI_E_NO_SUPPORT);
        CHECK_ERROR_TEXT(sp, MAPI_E_NO_SUPPORT, "MAPI_NO_MAIL");
        sp->lpVtbl->Release(sp);
    }
    s->lpVtbl->Release(s);
}

/* Four threads read the status table of one session at once. */
static void *reader(void *arg)
{
    LPMAPISESSION s = (LPMAPISESSION)arg;
    int i;
    for (i = 0; i < 20; i++) {
        LPMAPITABLE t = NULL;
        LPSRowSet rows = NULL;
        CHECK_HR(s->lpVtbl->GetStatusTable(s, 0, &t), S_OK);
        if (!t)
            continue;
        CHECK_HR(HrQueryAllRows(t, NULL, NULL, NULL, 0, &rows), S_OK);
        CHECK(rows && rows->cRows == 5);
        FreeProws(rows);
        t->lpVtbl->Release(t);
    }
    return NULL;
}

static void threads(LPMAPISESSION s)
{
    pthread_t th[4];
    int i;
    for (i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, reader, s);
    for (i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
}

/* A profile given by name is <name>.toml in $XDG_CONFIG_HOME/mapispool. */
static void by_name(const char *name)
{
    LPMAPISESSION s = NULL;
    LPMAPITABLE t = NULL;
    ULONG n = 0;
    CHECK_HR(MAPILogonEx(0, (LPTSTR)name, NULL, MAPI_EXTENDED | MAPI_NEW_SESSION, &s), S_OK);
    if (!s)
        return;
    CHECK_HR(s->lpVtbl->GetStatusTable(s, 0, &t), S_OK);
    if (t) {
        CHECK_HR(t->lpVtbl->GetRowCount(t, 0, &n), S_OK);
        CHECK(n == 5);
        t->lpVtbl->Release(t);
    }
    s->lpVtbl->Logoff(s, 0, 0, 0);
    s->lpVtbl->Release(s);
}

int main(int argc, char **argv)
{
    LPMAPISESSION s = NULL;
    LPMAPITABLE t = NULL;
    if (argc != 3) {
        fprintf(stderr, "usage: %s PROFILE-PATH PROFILE-NAME\n", argv[0]);
        return 2;
    }
    profile = argv[1];
    allocation();
    logon_errors();
    shared_and_unicode_logon();
    CHECK_HR(MAPILogonEx(0, (LPTSTR)profile, NULL, MAPI_EXTENDED | MAPI_NEW_SESSION, &s), S_OK);
    if (s) {
        CHECK(s->lpVtbl->AddRef(s) == 2);
        CHECK(s->lpVtbl->Release(s) == 1);
        table(s);
        unicode_table(s);
        status(s);
        threads(s);
        advise(s);
        CHECK_HR(s->lpVtbl->Logoff(s, 0, 0, 0), S_OK);
        CHECK_HR(s->lpVtbl->GetStatusTable(s, 0, &t), MAPI_E_END_OF_SESSION);
        CHECK(s->lpVtbl->Release(s) == 0);
    }
    no_mail();
    by_name(argv[2]);
    MAPIUninitialize();
    printf("api: %d failed checks\n", failures);
    return failures ? 1 : 0;
}
