/* The layout test: every size and offset of MAPI's structures (and the vtables' method
 * slots) as gcc lays out mapispool's headers, compared with what libmapispool.so itself uses
 * (mapispool_abi_layout). Exits non-zero and names each difference. Run by tests/c_api.rs. */
#include <stdio.h>
#include <string.h>
#include <mapix.h>
#include <mapiutil.h>

struct LayoutEntry {
    const char *name;
    size_t size;
    size_t offset;
};
const struct LayoutEntry *mapispool_abi_layout(size_t *count);

#define S(name, type) {#name, sizeof(type), 0}
#define F(name, type, field) {#name "." #field, 0, offsetof(type, field)}

static const struct LayoutEntry c_side[] = {
    S(GUID, GUID),
    F(GUID, GUID, Data1),
    F(GUID, GUID, Data2),
    F(GUID, GUID, Data3),
    F(GUID, GUID, Data4),
    S(FILETIME, FILETIME),
    F(FILETIME, FILETIME, dwLowDateTime),
    F(FILETIME, FILETIME, dwHighDateTime),
    S(SBinary, SBinary),
    F(SBinary, SBinary, cb),
    F(SBinary, SBinary, lpb),
    S(PV, union _PV),
    S(SPropValue, SPropValue),
    F(SPropValue, SPropValue, ulPropTag),
    F(SPropValue, SPropValue, dwAlignPad),
    F(SPropValue, SPropValue, Value),
    S(SPropTagArray, SPropTagArray),
    F(SPropTagArray, SPropTagArray, cValues),
    F(SPropTagArray, SPropTagArray, aulPropTag),
    S(SRow, SRow),
    F(SRow, SRow, ulAdrEntryPad),
    F(SRow, SRow, cValues),
    F(SRow, SRow, lpProps),
    S(SRowSet, SRowSet),
    F(SRowSet, SRowSet, cRows),
    F(SRowSet, SRowSet, aRow),
    S(SSortOrder, SSortOrder),
    F(SSortOrder, SSortOrder, ulPropTag),
    F(SSortOrder, SSortOrder, ulOrder),
    S(SSortOrderSet, SSortOrderSet),
    F(SSortOrderSet, SSortOrderSet, cSorts),
    F(SSortOrderSet, SSortOrderSet, cCategories),
    F(SSortOrderSet, SSortOrderSet, cExpanded),
    F(SSortOrderSet, SSortOrderSet, aSort),
    S(ENTRYID, ENTRYID),
    F(ENTRYID, ENTRYID, abFlags),
    F(ENTRYID, ENTRYID, ab),
    S(MAPIUID, MAPIUID),
    F(MAPIUID, MAPIUID, ab),
    S(MAPIERROR, MAPIERROR),
    F(MAPIERROR, MAPIERROR, ulVersion),
    F(MAPIERROR, MAPIERROR, lpszError),
    F(MAPIERROR, MAPIERROR, lpszComponent),
    F(MAPIERROR, MAPIERROR, ulLowLevelError),
    F(MAPIERROR, MAPIERROR, ulContext),
    S(MAPIINIT_0, MAPIINIT_0),
    F(MAPIINIT_0, MAPIINIT_0, ulVersion),
    F(MAPIINIT_0, MAPIINIT_0, ulFlags),
    S(SAndRestriction, SAndRestriction),
    F(SAndRestriction, SAndRestriction, cRes),
    F(SAndRestriction, SAndRestriction, lpRes),
    S(SNotRestriction, SNotRestriction),
    F(SNotRestriction, SNotRestriction, ulReserved),
    F(SNotRestriction, SNotRestriction, lpRes),
    S(SContentRestriction, SContentRestriction),
    F(SContentRestriction, SContentRestriction, ulFuzzyLevel),
    F(SContentRestriction, SContentRestriction, ulPropTag),
    F(SContentRestriction, SContentRestriction, lpProp),
    S(SPropertyRestriction, SPropertyRestriction),
    F(SPropertyRestriction, SPropertyRestriction, relop),
    F(SPropertyRestriction, SPropertyRestriction, ulPropTag),
    F(SPropertyRestriction, SPropertyRestriction, lpProp),
    S(SComparePropsRestriction, SComparePropsRestriction),
    F(SComparePropsRestriction, SComparePropsRestriction, relop),
    F(SComparePropsRestriction, SComparePropsRestriction, ulPropTag1),
    F(SComparePropsRestriction, SComparePropsRestriction, ulPropTag2),
    S(SBitMaskRestriction, SBitMaskRestriction),
    F(SBitMaskRestriction, SBitMaskRestriction, relBMR),
    F(SBitMaskRestriction, SBitMaskRestriction, ulPropTag),
    F(SBitMaskRestriction, SBitMaskRestriction, ulMask),
    S(SSizeRestriction, SSizeRestriction),
    F(SSizeRestriction, SSizeRestriction, relop),
    F(SSizeRestriction, SSizeRestriction, ulPropTag),
    F(SSizeRestriction, SSizeRestriction, cb),
    S(SExistRestriction, SExistRestriction),
    F(SExistRestriction, SExistRestriction, ulReserved1),
    F(SExistRestriction, SExistRestriction, ulPropTag),
    F(SExistRestriction, SExistRestriction, ulReserved2),
    S(SSubRestriction, SSubRestriction),
    F(SSubRestriction, SSubRestriction, ulSubObject),
    F(SSubRestriction, SSubRestriction, lpRes),
    S(SCommentRestriction, SCommentRestriction),
    F(SCommentRestriction, SCommentRestriction, cValues),
    F(SCommentRestriction, SCommentRestriction, lpRes),
    F(SCommentRestriction, SCommentRestriction, lpProp),
    S(SRestriction, SRestriction),
    F(SRestriction, SRestriction, rt),
    F(SRestriction, SRestriction, res),
    S(TABLE_NOTIFICATION, TABLE_NOTIFICATION),
    F(TABLE_NOTIFICATION, TABLE_NOTIFICATION, ulTableEvent),
    F(TABLE_NOTIFICATION, TABLE_NOTIFICATION, hResult),
    F(TABLE_NOTIFICATION, TABLE_NOTIFICATION, propIndex),
    F(TABLE_NOTIFICATION, TABLE_NOTIFICATION, propPrior),
    F(TABLE_NOTIFICATION, TABLE_NOTIFICATION, row),
    F(TABLE_NOTIFICATION, TABLE_NOTIFICATION, ulPad),
    S(NOTIFICATION, NOTIFICATION),
    F(NOTIFICATION, NOTIFICATION, ulEventType),
    F(NOTIFICATION, NOTIFICATION, ulAlignPad),
    F(NOTIFICATION, NOTIFICATION, info),
    S(IMAPISessionVtbl, IMAPISessionVtbl),
    F(IMAPISessionVtbl, IMAPISessionVtbl, QueryInterface),
    F(IMAPISessionVtbl, IMAPISessionVtbl, AddRef),
    F(IMAPISessionVtbl, IMAPISessionVtbl, Release),
    F(IMAPISessionVtbl, IMAPISessionVtbl, GetLastError),
    F(IMAPISessionVtbl, IMAPISessionVtbl, GetMsgStoresTable),
    F(IMAPISessionVtbl, IMAPISessionVtbl, OpenMsgStore),
    F(IMAPISessionVtbl, IMAPISessionVtbl, OpenAddressBook),
    F(IMAPISessionVtbl, IMAPISessionVtbl, OpenProfileSection),
    F(IMAPISessionVtbl, IMAPISessionVtbl, GetStatusTable),
    F(IMAPISessionVtbl, IMAPISessionVtbl, OpenEntry),
    F(IMAPISessionVtbl, IMAPISessionVtbl, CompareEntryIDs),
    F(IMAPISessionVtbl, IMAPISessionVtbl, Advise),
    F(IMAPISessionVtbl, IMAPISessionVtbl, Unadvise),
    F(IMAPISessionVtbl, IMAPISessionVtbl, MessageOptions),
    F(IMAPISessionVtbl, IMAPISessionVtbl, QueryDefaultMessageOpt),
    F(IMAPISessionVtbl, IMAPISessionVtbl, EnumAdrTypes),
    F(IMAPISessionVtbl, IMAPISessionVtbl, QueryIdentity),
    F(IMAPISessionVtbl, IMAPISessionVtbl, Logoff),
    F(IMAPISessionVtbl, IMAPISessionVtbl, SetDefaultStore),
    F(IMAPISessionVtbl, IMAPISessionVtbl, AdminServices),
    F(IMAPISessionVtbl, IMAPISessionVtbl, ShowForm),
    F(IMAPISessionVtbl, IMAPISessionVtbl, PrepareForm),
    S(IMAPITableVtbl, IMAPITableVtbl),
    F(IMAPITableVtbl, IMAPITableVtbl, QueryInterface),
    F(IMAPITableVtbl, IMAPITableVtbl, AddRef),
    F(IMAPITableVtbl, IMAPITableVtbl, Release),
    F(IMAPITableVtbl, IMAPITableVtbl, GetLastError),
    F(IMAPITableVtbl, IMAPITableVtbl, Advise),
    F(IMAPITableVtbl, IMAPITableVtbl, Unadvise),
    F(IMAPITableVtbl, IMAPITableVtbl, GetStatus),
    F(IMAPITableVtbl, IMAPITableVtbl, SetColumns),
    F(IMAPITableVtbl, IMAPITableVtbl, QueryColumns),
    F(IMAPITableVtbl, IMAPITableVtbl, GetRowCount),
    F(IMAPITableVtbl, IMAPITableVtbl, SeekRow),
    F(IMAPITableVtbl, IMAPITableVtbl, SeekRowApprox),
    F(IMAPITableVtbl, IMAPITableVtbl, QueryPosition),
    F(IMAPITableVtbl, IMAPITableVtbl, FindRow),
    F(IMAPITableVtbl, IMAPITableVtbl, Restrict),
    F(IMAPITableVtbl, IMAPITableVtbl, CreateBookmark),
    F(IMAPITableVtbl, IMAPITableVtbl, FreeBookmark),
    F(IMAPITableVtbl, IMAPITableVtbl, SortTable),
    F(IMAPITableVtbl, IMAPITableVtbl, QuerySortOrder),
    F(IMAPITableVtbl, IMAPITableVtbl, QueryRows),
    F(IMAPITableVtbl, IMAPITableVtbl, Abort),
    F(IMAPITableVtbl, IMAPITableVtbl, ExpandRow),
    F(IMAPITableVtbl, IMAPITableVtbl, CollapseRow),
    F(IMAPITableVtbl, IMAPITableVtbl, WaitForCompletion),
    F(IMAPITableVtbl, IMAPITableVtbl, GetCollapseState),
    F(IMAPITableVtbl, IMAPITableVtbl, SetCollapseState),
    S(IMAPIStatusVtbl, IMAPIStatusVtbl),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, QueryInterface),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, AddRef),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, Release),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, GetLastError),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, SaveChanges),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, GetProps),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, GetPropList),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, OpenProperty),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, SetProps),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, DeleteProps),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, CopyTo),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, CopyProps),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, GetNamesFromIDs),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, GetIDsFromNames),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, ValidateState),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, SettingsDialog),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, ChangePassword),
    F(IMAPIStatusVtbl, IMAPIStatusVtbl, FlushQueues),
};

static int failures = 0;

#define EXPECT(cond)                                            \
    do {                                                        \
        if (!(cond)) {                                          \
            fprintf(stderr, "layout: %s is false\n", #cond);    \
            failures++;                                         \
        }                                                       \
    } while (0)

int main(void)
{
    size_t n = 0, i, j;
    const struct LayoutEntry *rust = mapispool_abi_layout(&n);
    size_t c_n = sizeof c_side / sizeof c_side[0];

    /* MAPI's Windows sizes on LP64 Linux. */
    EXPECT(sizeof(ULONG) == 4);
    EXPECT(sizeof(LONG) == 4);
    EXPECT(sizeof(HRESULT) == 4);
    EXPECT(sizeof(ULONG_PTR) == sizeof(void *));
    EXPECT(sizeof(BOOKMARK) == sizeof(void *));
    EXPECT(sizeof(wchar_t) == 4);
    EXPECT(sizeof(SPropValue) == 24);
    EXPECT(sizeof(SRestriction) == 32);
    EXPECT(sizeof(NOTIFICATION) == 88);
    EXPECT(MAPI_E_NO_SUPPORT == (SCODE)0x80040102);
    EXPECT(MAPI_E_INVALID_PARAMETER == (SCODE)0x80070057);
    EXPECT(MAPI_W_ERRORS_RETURNED == 0x00040380);
    EXPECT(PR_ENTRYID == 0x0FFF0102);
    EXPECT(PR_RESOURCE_TYPE == 0x3E030003);
    EXPECT(PR_DISPLAY_NAME_W == 0x3001001F);
    EXPECT(PR_DISPLAY_NAME_A == 0x3001001E);
    EXPECT(IID_IMAPIStatus.Data1 == 0x00020305 && IID_IMAPIStatus.Data4[7] == 0x46);

    if (n != c_n) {
        fprintf(stderr, "layout: the library lists %zu entries, the headers %zu\n", n, c_n);
        failures++;
    }
    for (i = 0; i < c_n; i++) {
        const struct LayoutEntry *r = NULL;
        for (j = 0; j < n; j++)
            if (strcmp(rust[j].name, c_side[i].name) == 0)
                r = &rust[j];
        if (!r) {
            fprintf(stderr, "layout: %s is not in the library's list\n", c_side[i].name);
            failures++;
        } else if (r->size != c_side[i].size || r->offset != c_side[i].offset) {
            fprintf(stderr, "layout: %s: C has size %zu offset %zu, Rust size %zu offset %zu\n",
                    c_side[i].name, c_side[i].size, c_side[i].offset, r->size, r->offset);
            failures++;
        }
    }
    printf("layout: %zu entries compared, %d differences\n", c_n, failures);
    return failures ? 1 : 0;
}
