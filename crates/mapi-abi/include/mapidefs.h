/*
 * mapidefs.h - MAPI's base types, property structures, restrictions and the IMAPIProp,
 * IMAPITable and IMAPIStatus interfaces, for mapispool (libmapispool.so) on Linux.
 *
 * Written for mapispool from Microsoft's public MAPI documentation: the names, numbers and
 * layouts are MAPI's; the text is mapispool's own.
 *
 * On LP64 Linux MAPI's Windows integer types keep their Windows sizes: ULONG and LONG are 32
 * bits (not unsigned long), ULONG_PTR and pointers 64.
 *
 * Strings: PT_UNICODE properties (and LPWSTR / MAPI_UNICODE arguments) are wchar_t, which is
 * 32 bits (UTF-32) on Linux, as in the other Linux MAPI implementations (Kopano's and
 * grommunio's mapi4linux). PT_STRING8 properties and LPSTR arguments are char, in UTF-8.
 * LPTSTR is wchar_t * when UNICODE is defined, else char *.
 *
 * Interfaces are usable from C++ (lpSession->GetStatusTable(...)) and from C
 * (lpSession->lpVtbl->GetStatusTable(lpSession, ...)).
 */
#ifndef MAPISPOOL_MAPIDEFS_H
#define MAPISPOOL_MAPIDEFS_H

#include <stddef.h>
#include <stdint.h>
#include <wchar.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Windows-sized base types ---------------------------------------------------------- */
typedef uint8_t BYTE, *LPBYTE;
typedef uint16_t WORD;
typedef uint32_t DWORD;
typedef uint32_t ULONG, *LPULONG;
typedef int32_t LONG, *LPLONG;
typedef int64_t LONGLONG;
typedef uint64_t ULONGLONG;
typedef int BOOL;
typedef uintptr_t ULONG_PTR;
typedef LONG HRESULT;
typedef LONG SCODE;
typedef ULONG FLAGS;
typedef void *LPVOID;
typedef char CHAR, *LPSTR;
typedef const char *LPCSTR;
typedef wchar_t WCHAR, *LPWSTR;
typedef const wchar_t *LPCWSTR;
#ifdef UNICODE
typedef WCHAR TCHAR;
#else
typedef char TCHAR;
#endif
typedef TCHAR *LPTSTR;

#ifndef FALSE
#define FALSE 0
#endif
#ifndef TRUE
#define TRUE 1
#endif

#define S_OK ((HRESULT)0)
#define hrSuccess 0
#define SUCCEEDED(hr) ((HRESULT)(hr) >= 0)
#define FAILED(hr) ((HRESULT)(hr) < 0)
#define HR_SUCCEEDED(hr) SUCCEEDED(hr)
#define HR_FAILED(hr) FAILED(hr)
#define ResultFromScode(sc) ((HRESULT)(sc))
#define GetScode(hr) ((SCODE)(hr))

/* MAPI's "array of at least one" */
#define MAPI_DIM 1

typedef struct _GUID {
    ULONG Data1;
    WORD Data2;
    WORD Data3;
    BYTE Data4[8];
} GUID, *LPGUID;
typedef GUID IID, CLSID;
typedef IID *LPIID;
typedef const IID *LPCIID;
#ifdef __cplusplus
typedef const IID &REFIID;
#else
typedef const IID *REFIID;
#endif

typedef struct _FILETIME {
    DWORD dwLowDateTime;
    DWORD dwHighDateTime;
} FILETIME, *LPFILETIME;

typedef union _LARGE_INTEGER {
    struct {
        DWORD LowPart;
        LONG HighPart;
    } s;
    LONGLONG QuadPart;
} LARGE_INTEGER;

typedef union tagCY {
    struct {
        ULONG Lo;
        LONG Hi;
    } s;
    LONGLONG int64;
} CURRENCY;

/* ---- Interface declaration helpers --------------------------------------------------- */
#ifdef __cplusplus
#define MAPISPOOL_METHOD(ret, name, args) virtual ret name args = 0;
#define MAPISPOOL_THIS_(I)
#define MAPISPOOL_THIS(I)
#else
#define MAPISPOOL_METHOD(ret, name, args) ret (*name) args;
#define MAPISPOOL_THIS_(I) struct I *This,
#define MAPISPOOL_THIS(I) struct I *This
#endif

/* The interface tags, declared up front so that C's method pointers can name them. */
struct IUnknown;
struct IMAPIProp;
struct IMAPIStatus;
struct IMAPITable;
struct IMAPIAdviseSink;

#define MAPI_IUNKNOWN_METHODS(I) \
    MAPISPOOL_METHOD(HRESULT, QueryInterface, (MAPISPOOL_THIS_(I) REFIID riid, LPVOID *ppvObj)) \
    MAPISPOOL_METHOD(ULONG, AddRef, (MAPISPOOL_THIS(I))) \
    MAPISPOOL_METHOD(ULONG, Release, (MAPISPOOL_THIS(I)))

#ifdef __cplusplus
struct IUnknown {
    MAPI_IUNKNOWN_METHODS(IUnknown)
};
#else
typedef struct IUnknownVtbl {
    MAPI_IUNKNOWN_METHODS(IUnknown)
} IUnknownVtbl;
struct IUnknown {
    const IUnknownVtbl *lpVtbl;
};
#endif
typedef struct IUnknown IUnknown, *LPUNKNOWN;

/* ---- Entry IDs and UIDs ---------------------------------------------------------------- */
typedef struct _ENTRYID {
    BYTE abFlags[4];
    BYTE ab[MAPI_DIM];
} ENTRYID, *LPENTRYID;
#define CbNewENTRYID(cb) (offsetof(ENTRYID, ab) + (cb))

typedef struct _MAPIUID {
    BYTE ab[16];
} MAPIUID, *LPMAPIUID;

/* ---- Object types ---------------------------------------------------------------------- */
#define MAPI_STORE ((ULONG)0x00000001)
#define MAPI_ADDRBOOK ((ULONG)0x00000002)
#define MAPI_FOLDER ((ULONG)0x00000003)
#define MAPI_ABCONT ((ULONG)0x00000004)
#define MAPI_MESSAGE ((ULONG)0x00000005)
#define MAPI_MAILUSER ((ULONG)0x00000006)
#define MAPI_ATTACH ((ULONG)0x00000007)
#define MAPI_DISTLIST ((ULONG)0x00000008)
#define MAPI_PROFSECT ((ULONG)0x00000009)
#define MAPI_STATUS ((ULONG)0x0000000A)
#define MAPI_SESSION ((ULONG)0x0000000B)
#define MAPI_FORMINFO ((ULONG)0x0000000C)

/* ---- Common flags ---------------------------------------------------------------------- */
#define MAPI_UNICODE ((ULONG)0x80000000)
#define MAPI_MODIFY ((ULONG)0x00000001)
#define MAPI_DEFERRED_ERRORS ((ULONG)0x00000008)
#define MAPI_BEST_ACCESS ((ULONG)0x00000010)

/* ---- Property values -------------------------------------------------------------------- */
typedef struct _SBinary {
    ULONG cb;
    LPBYTE lpb;
} SBinary, *LPSBinary;

typedef struct _SShortArray { ULONG cValues; short int *lpi; } SShortArray;
typedef struct _SLongArray { ULONG cValues; LONG *lpl; } SLongArray;
typedef struct _SRealArray { ULONG cValues; float *lpflt; } SRealArray;
typedef struct _SDoubleArray { ULONG cValues; double *lpdbl; } SDoubleArray;
typedef struct _SCurrencyArray { ULONG cValues; CURRENCY *lpcur; } SCurrencyArray;
typedef struct _SAppTimeArray { ULONG cValues; double *lpat; } SAppTimeArray;
typedef struct _SDateTimeArray { ULONG cValues; FILETIME *lpft; } SDateTimeArray;
typedef struct _SBinaryArray { ULONG cValues; SBinary *lpbin; } SBinaryArray;
typedef struct _SLPSTRArray { ULONG cValues; LPSTR *lppszA; } SLPSTRArray;
typedef struct _SWStringArray { ULONG cValues; LPWSTR *lppszW; } SWStringArray;
typedef struct _SGuidArray { ULONG cValues; GUID *lpguid; } SGuidArray;
typedef struct _SLargeIntegerArray { ULONG cValues; LARGE_INTEGER *lpli; } SLargeIntegerArray;

typedef union _PV {
    short int i;          /* PT_I2 */
    LONG l;               /* PT_LONG */
    ULONG ul;             /* PT_LONG, unsigned */
    float flt;            /* PT_R4 */
    double dbl;           /* PT_DOUBLE */
    unsigned short int b; /* PT_BOOLEAN */
    CURRENCY cur;         /* PT_CURRENCY */
    double at;            /* PT_APPTIME */
    FILETIME ft;          /* PT_SYSTIME */
    LPSTR lpszA;          /* PT_STRING8 (UTF-8) */
    SBinary bin;          /* PT_BINARY */
    LPWSTR lpszW;         /* PT_UNICODE (wchar_t, UTF-32) */
    LPGUID lpguid;        /* PT_CLSID */
    LARGE_INTEGER li;     /* PT_I8 */
    SShortArray MVi;
    SLongArray MVl;
    SRealArray MVflt;
    SDoubleArray MVdbl;
    SCurrencyArray MVcur;
    SAppTimeArray MVat;
    SDateTimeArray MVft;
    SBinaryArray MVbin;
    SLPSTRArray MVszA;
    SWStringArray MVszW;
    SGuidArray MVguid;
    SLargeIntegerArray MVli;
    SCODE err;            /* PT_ERROR */
    LONG x;               /* PT_NULL, PT_OBJECT */
} __UPV;

typedef struct _SPropValue {
    ULONG ulPropTag;
    ULONG dwAlignPad;
    union _PV Value;
} SPropValue, *LPSPropValue;

typedef struct _SPropTagArray {
    ULONG cValues;
    ULONG aulPropTag[MAPI_DIM];
} SPropTagArray, *LPSPropTagArray;
#define CbNewSPropTagArray(c) (offsetof(SPropTagArray, aulPropTag) + (c) * sizeof(ULONG))
#define CbSPropTagArray(p) CbNewSPropTagArray((p)->cValues)
#define SizedSPropTagArray(n, name) \
    struct _SPropTagArray_##name { ULONG cValues; ULONG aulPropTag[n]; } name

typedef struct _SRow {
    ULONG ulAdrEntryPad;
    ULONG cValues;
    LPSPropValue lpProps;
} SRow, *LPSRow;

typedef struct _SRowSet {
    ULONG cRows;
    SRow aRow[MAPI_DIM];
} SRowSet, *LPSRowSet;
#define CbNewSRowSet(c) (offsetof(SRowSet, aRow) + (c) * sizeof(SRow))

/* An ADRLIST has the layout of an SRowSet. */
typedef struct _ADRENTRY {
    ULONG ulReserved1;
    ULONG cValues;
    LPSPropValue rgPropVals;
} ADRENTRY, *LPADRENTRY;
typedef struct _ADRLIST {
    ULONG cEntries;
    ADRENTRY aEntries[MAPI_DIM];
} ADRLIST, *LPADRLIST;

typedef struct _MAPIERROR {
    ULONG ulVersion;
    LPTSTR lpszError;      /* wchar_t * when GetLastError was given MAPI_UNICODE */
    LPTSTR lpszComponent;
    ULONG ulLowLevelError;
    ULONG ulContext;
} MAPIERROR, *LPMAPIERROR;
#define MAPI_ERROR_VERSION 0

/* ---- Sort orders ------------------------------------------------------------------------ */
typedef struct _SSortOrder {
    ULONG ulPropTag;
    ULONG ulOrder;
} SSortOrder, *LPSSortOrder;
#define TABLE_SORT_ASCEND ((ULONG)0x00000000)
#define TABLE_SORT_DESCEND ((ULONG)0x00000001)
#define TABLE_SORT_COMBINE ((ULONG)0x00000002)

typedef struct _SSortOrderSet {
    ULONG cSorts;
    ULONG cCategories;
    ULONG cExpanded;
    SSortOrder aSort[MAPI_DIM];
} SSortOrderSet, *LPSSortOrderSet;
#define CbNewSSortOrderSet(c) (offsetof(SSortOrderSet, aSort) + (c) * sizeof(SSortOrder))
#define SizedSSortOrderSet(n, name) \
    struct _SSortOrderSet_##name { ULONG cSorts; ULONG cCategories; ULONG cExpanded; SSortOrder aSort[n]; } name

/* ---- Restrictions ----------------------------------------------------------------------- */
#define RES_AND ((ULONG)0x00000000)
#define RES_OR ((ULONG)0x00000001)
#define RES_NOT ((ULONG)0x00000002)
#define RES_CONTENT ((ULONG)0x00000003)
#define RES_PROPERTY ((ULONG)0x00000004)
#define RES_COMPAREPROPS ((ULONG)0x00000005)
#define RES_BITMASK ((ULONG)0x00000006)
#define RES_SIZE ((ULONG)0x00000007)
#define RES_EXIST ((ULONG)0x00000008)
#define RES_SUBRESTRICTION ((ULONG)0x00000009)
#define RES_COMMENT ((ULONG)0x0000000A)

#define RELOP_LT ((ULONG)0)
#define RELOP_LE ((ULONG)1)
#define RELOP_GT ((ULONG)2)
#define RELOP_GE ((ULONG)3)
#define RELOP_EQ ((ULONG)4)
#define RELOP_NE ((ULONG)5)
#define RELOP_RE ((ULONG)6)

#define BMR_EQZ ((ULONG)0)
#define BMR_NEZ ((ULONG)1)

#define FL_FULLSTRING ((ULONG)0x00000000)
#define FL_SUBSTRING ((ULONG)0x00000001)
#define FL_PREFIX ((ULONG)0x00000002)
#define FL_IGNORECASE ((ULONG)0x00010000)
#define FL_IGNORENONSPACE ((ULONG)0x00020000)
#define FL_LOOSE ((ULONG)0x00040000)

typedef struct _SRestriction *LPSRestriction;

typedef struct _SAndRestriction { ULONG cRes; LPSRestriction lpRes; } SAndRestriction;
typedef struct _SOrRestriction { ULONG cRes; LPSRestriction lpRes; } SOrRestriction;
typedef struct _SNotRestriction { ULONG ulReserved; LPSRestriction lpRes; } SNotRestriction;
typedef struct _SContentRestriction { ULONG ulFuzzyLevel; ULONG ulPropTag; LPSPropValue lpProp; } SContentRestriction;
typedef struct _SPropertyRestriction { ULONG relop; ULONG ulPropTag; LPSPropValue lpProp; } SPropertyRestriction;
typedef struct _SComparePropsRestriction { ULONG relop; ULONG ulPropTag1; ULONG ulPropTag2; } SComparePropsRestriction;
typedef struct _SBitMaskRestriction { ULONG relBMR; ULONG ulPropTag; ULONG ulMask; } SBitMaskRestriction;
typedef struct _SSizeRestriction { ULONG relop; ULONG ulPropTag; ULONG cb; } SSizeRestriction;
typedef struct _SExistRestriction { ULONG ulReserved1; ULONG ulPropTag; ULONG ulReserved2; } SExistRestriction;
typedef struct _SSubRestriction { ULONG ulSubObject; LPSRestriction lpRes; } SSubRestriction;
typedef struct _SCommentRestriction { ULONG cValues; LPSRestriction lpRes; LPSPropValue lpProp; } SCommentRestriction;

typedef struct _SRestriction {
    ULONG rt;
    union {
        SComparePropsRestriction resCompareProps;
        SAndRestriction resAnd;
        SOrRestriction resOr;
        SNotRestriction resNot;
        SContentRestriction resContent;
        SPropertyRestriction resProperty;
        SBitMaskRestriction resBitMask;
        SSizeRestriction resSize;
        SExistRestriction resExist;
        SSubRestriction resSub;
        SCommentRestriction resComment;
    } res;
} SRestriction;

/* ---- Tables ----------------------------------------------------------------------------- */
typedef ULONG_PTR BOOKMARK;
#define BOOKMARK_BEGINNING ((BOOKMARK)0)
#define BOOKMARK_CURRENT ((BOOKMARK)1)
#define BOOKMARK_END ((BOOKMARK)2)

#define TBL_ALL_COLUMNS ((ULONG)0x00000001)
#define TBL_NOWAIT ((ULONG)0x00000001)
#define TBL_ASYNC ((ULONG)0x00000001)
#define TBL_BATCH ((ULONG)0x00000002)
#define TBL_NOADVANCE ((ULONG)0x00000001)
#define DIR_BACKWARD ((ULONG)0x00000001)

#define TBLSTAT_COMPLETE ((ULONG)0)
#define TBLTYPE_SNAPSHOT ((ULONG)0)
#define TBLTYPE_KEYSET ((ULONG)1)
#define TBLTYPE_DYNAMIC ((ULONG)2)

/* ---- Status objects --------------------------------------------------------------------- */
#define MAPI_STORE_PROVIDER ((ULONG)33)
#define MAPI_AB ((ULONG)34)
#define MAPI_AB_PROVIDER ((ULONG)35)
#define MAPI_TRANSPORT_PROVIDER ((ULONG)36)
#define MAPI_SPOOLER ((ULONG)37)
#define MAPI_PROFILE_PROVIDER ((ULONG)38)
#define MAPI_SUBSYSTEM ((ULONG)39)
#define MAPI_HOOK_PROVIDER ((ULONG)40)

#define STATUS_VALIDATE_STATE ((ULONG)0x00000001)
#define STATUS_SETTINGS_DIALOG ((ULONG)0x00000002)
#define STATUS_CHANGE_PASSWORD ((ULONG)0x00000004)
#define STATUS_FLUSH_QUEUES ((ULONG)0x00000008)

#define STATUS_DEFAULT_OUTBOUND ((ULONG)0x00000001)
#define STATUS_DEFAULT_STORE ((ULONG)0x00000002)
#define STATUS_PRIMARY_IDENTITY ((ULONG)0x00000004)
#define STATUS_SIMPLE_STORE ((ULONG)0x00000008)
#define STATUS_XP_PREFER_LAST ((ULONG)0x00000010)
#define STATUS_NO_PRIMARY_IDENTITY ((ULONG)0x00000020)
#define STATUS_NO_DEFAULT_STORE ((ULONG)0x00000040)
#define STATUS_TEMP_SECTION ((ULONG)0x00000080)
#define STATUS_OWN_STORE ((ULONG)0x00000100)

#define STATUS_AVAILABLE ((ULONG)0x00000001)
#define STATUS_OFFLINE ((ULONG)0x00000002)
#define STATUS_FAILURE ((ULONG)0x00000004)
#define STATUS_INBOUND_ENABLED ((ULONG)0x00010000)
#define STATUS_INBOUND_ACTIVE ((ULONG)0x00020000)
#define STATUS_INBOUND_FLUSH ((ULONG)0x00040000)
#define STATUS_OUTBOUND_ENABLED ((ULONG)0x00100000)
#define STATUS_OUTBOUND_ACTIVE ((ULONG)0x00200000)
#define STATUS_OUTBOUND_FLUSH ((ULONG)0x00400000)
#define STATUS_REMOTE_ACCESS ((ULONG)0x00800000)

#define FLUSH_UPLOAD ((ULONG)0x00000002)
#define FLUSH_DOWNLOAD ((ULONG)0x00000004)
#define FLUSH_FORCE ((ULONG)0x00000008)
#define FLUSH_NO_UI ((ULONG)0x00000010)
#define FLUSH_ASYNC_OK ((ULONG)0x00000020)

#define SUPPRESS_UI ((ULONG)0x00000001)
#define REFRESH_XP_HEADER_CACHE ((ULONG)0x00010000)
#define PROCESS_XP_HEADER_CACHE ((ULONG)0x00020000)
#define FORCE_XP_CONNECT ((ULONG)0x00040000)
#define FORCE_XP_DISCONNECT ((ULONG)0x00080000)
#define CONFIG_CHANGED ((ULONG)0x00100000)
#define ABORT_XP_HEADER_OPERATION ((ULONG)0x00200000)
#define SHOW_XP_SESSION_UI ((ULONG)0x00400000)
#define UI_READONLY ((ULONG)0x00000001)

/* ---- Notifications ---------------------------------------------------------------------- */
#define fnevCriticalError ((ULONG)0x00000001)
#define fnevNewMail ((ULONG)0x00000002)
#define fnevObjectCreated ((ULONG)0x00000004)
#define fnevObjectDeleted ((ULONG)0x00000008)
#define fnevObjectModified ((ULONG)0x00000010)
#define fnevObjectMoved ((ULONG)0x00000020)
#define fnevObjectCopied ((ULONG)0x00000040)
#define fnevSearchComplete ((ULONG)0x00000080)
#define fnevTableModified ((ULONG)0x00000100)
#define fnevStatusObjectModified ((ULONG)0x00000200)
#define fnevExtended ((ULONG)0x80000000)

#define TABLE_CHANGED 1
#define TABLE_ERROR 2
#define TABLE_ROW_ADDED 3
#define TABLE_ROW_DELETED 4
#define TABLE_ROW_MODIFIED 5
#define TABLE_SORT_DONE 6
#define TABLE_RESTRICT_DONE 7
#define TABLE_SETCOL_DONE 8
#define TABLE_RELOAD 9

typedef struct _ERROR_NOTIFICATION {
    ULONG cbEntryID;
    LPENTRYID lpEntryID;
    SCODE scode;
    ULONG ulFlags;
    LPMAPIERROR lpMAPIError;
} ERROR_NOTIFICATION;

typedef struct _NEWMAIL_NOTIFICATION {
    ULONG cbEntryID;
    LPENTRYID lpEntryID;
    ULONG cbParentID;
    LPENTRYID lpParentID;
    ULONG ulFlags;
    LPTSTR lpszMessageClass;
    ULONG ulMessageFlags;
} NEWMAIL_NOTIFICATION;

typedef struct _OBJECT_NOTIFICATION {
    ULONG cbEntryID;
    LPENTRYID lpEntryID;
    ULONG ulObjType;
    ULONG cbParentID;
    LPENTRYID lpParentID;
    ULONG cbOldID;
    LPENTRYID lpOldID;
    ULONG cbOldParentID;
    LPENTRYID lpOldParentID;
    LPSPropTagArray lpPropTagArray;
} OBJECT_NOTIFICATION;

typedef struct _TABLE_NOTIFICATION {
    ULONG ulTableEvent;
    HRESULT hResult;
    SPropValue propIndex;   /* the row's PR_INSTANCE_KEY */
    SPropValue propPrior;   /* the previous row's PR_INSTANCE_KEY, or PR_NULL */
    SRow row;               /* in the view's columns; empty for TABLE_ROW_DELETED */
    ULONG ulPad;
} TABLE_NOTIFICATION;

typedef struct _EXTENDED_NOTIFICATION {
    ULONG ulEvent;
    ULONG cb;
    LPBYTE pbEventParameters;
} EXTENDED_NOTIFICATION;

typedef struct {
    ULONG cbEntryID;
    LPENTRYID lpEntryID;
    ULONG cValues;
    LPSPropValue lpPropVals;
} STATUS_OBJECT_NOTIFICATION;

typedef struct _NOTIFICATION {
    ULONG ulEventType;
    ULONG ulAlignPad;
    union {
        ERROR_NOTIFICATION err;
        NEWMAIL_NOTIFICATION newmail;
        OBJECT_NOTIFICATION obj;
        TABLE_NOTIFICATION tab;
        EXTENDED_NOTIFICATION ext;
        STATUS_OBJECT_NOTIFICATION statobj;
    } info;
} NOTIFICATION, *LPNOTIFICATION;

/* ---- Interfaces ------------------------------------------------------------------------- */
struct IMAPIAdviseSink;
typedef struct IMAPIAdviseSink *LPMAPIADVISESINK;
typedef struct IMAPIProgress *LPMAPIPROGRESS;
typedef struct _MAPINAMEID *LPMAPINAMEID;
typedef struct _SPropProblemArray *LPSPropProblemArray;

#define MAPI_IMAPIPROP_METHODS(I) \
    MAPISPOOL_METHOD(HRESULT, GetLastError, (MAPISPOOL_THIS_(I) HRESULT hResult, ULONG ulFlags, LPMAPIERROR *lppMAPIError)) \
    MAPISPOOL_METHOD(HRESULT, SaveChanges, (MAPISPOOL_THIS_(I) ULONG ulFlags)) \
    MAPISPOOL_METHOD(HRESULT, GetProps, (MAPISPOOL_THIS_(I) LPSPropTagArray lpPropTagArray, ULONG ulFlags, ULONG *lpcValues, LPSPropValue *lppPropArray)) \
    MAPISPOOL_METHOD(HRESULT, GetPropList, (MAPISPOOL_THIS_(I) ULONG ulFlags, LPSPropTagArray *lppPropTagArray)) \
    MAPISPOOL_METHOD(HRESULT, OpenProperty, (MAPISPOOL_THIS_(I) ULONG ulPropTag, LPCIID lpiid, ULONG ulInterfaceOptions, ULONG ulFlags, LPUNKNOWN *lppUnk)) \
    MAPISPOOL_METHOD(HRESULT, SetProps, (MAPISPOOL_THIS_(I) ULONG cValues, LPSPropValue lpPropArray, LPSPropProblemArray *lppProblems)) \
    MAPISPOOL_METHOD(HRESULT, DeleteProps, (MAPISPOOL_THIS_(I) LPSPropTagArray lpPropTagArray, LPSPropProblemArray *lppProblems)) \
    MAPISPOOL_METHOD(HRESULT, CopyTo, (MAPISPOOL_THIS_(I) ULONG ciidExclude, LPCIID rgiidExclude, LPSPropTagArray lpExcludeProps, ULONG_PTR ulUIParam, LPMAPIPROGRESS lpProgress, LPCIID lpInterface, LPVOID lpDestObj, ULONG ulFlags, LPSPropProblemArray *lppProblems)) \
    MAPISPOOL_METHOD(HRESULT, CopyProps, (MAPISPOOL_THIS_(I) LPSPropTagArray lpIncludeProps, ULONG_PTR ulUIParam, LPMAPIPROGRESS lpProgress, LPCIID lpInterface, LPVOID lpDestObj, ULONG ulFlags, LPSPropProblemArray *lppProblems)) \
    MAPISPOOL_METHOD(HRESULT, GetNamesFromIDs, (MAPISPOOL_THIS_(I) LPSPropTagArray *lppPropTags, LPGUID lpPropSetGuid, ULONG ulFlags, ULONG *lpcPropNames, LPMAPINAMEID **lpppPropNames)) \
    MAPISPOOL_METHOD(HRESULT, GetIDsFromNames, (MAPISPOOL_THIS_(I) ULONG cPropNames, LPMAPINAMEID *lppPropNames, ULONG ulFlags, LPSPropTagArray *lppPropTags))

#define MAPI_IMAPISTATUS_METHODS(I) \
    MAPISPOOL_METHOD(HRESULT, ValidateState, (MAPISPOOL_THIS_(I) ULONG_PTR ulUIParam, ULONG ulFlags)) \
    MAPISPOOL_METHOD(HRESULT, SettingsDialog, (MAPISPOOL_THIS_(I) ULONG_PTR ulUIParam, ULONG ulFlags)) \
    MAPISPOOL_METHOD(HRESULT, ChangePassword, (MAPISPOOL_THIS_(I) LPTSTR lpOldPass, LPTSTR lpNewPass, ULONG ulFlags)) \
    MAPISPOOL_METHOD(HRESULT, FlushQueues, (MAPISPOOL_THIS_(I) ULONG_PTR ulUIParam, ULONG cbTargetTransport, LPENTRYID lpTargetTransport, ULONG ulFlags))

#define MAPI_IMAPITABLE_METHODS(I) \
    MAPISPOOL_METHOD(HRESULT, GetLastError, (MAPISPOOL_THIS_(I) HRESULT hResult, ULONG ulFlags, LPMAPIERROR *lppMAPIError)) \
    MAPISPOOL_METHOD(HRESULT, Advise, (MAPISPOOL_THIS_(I) ULONG ulEventMask, LPMAPIADVISESINK lpAdviseSink, ULONG_PTR *lpulConnection)) \
    MAPISPOOL_METHOD(HRESULT, Unadvise, (MAPISPOOL_THIS_(I) ULONG_PTR ulConnection)) \
    MAPISPOOL_METHOD(HRESULT, GetStatus, (MAPISPOOL_THIS_(I) ULONG *lpulTableStatus, ULONG *lpulTableType)) \
    MAPISPOOL_METHOD(HRESULT, SetColumns, (MAPISPOOL_THIS_(I) LPSPropTagArray lpPropTagArray, ULONG ulFlags)) \
    MAPISPOOL_METHOD(HRESULT, QueryColumns, (MAPISPOOL_THIS_(I) ULONG ulFlags, LPSPropTagArray *lpPropTagArray)) \
    MAPISPOOL_METHOD(HRESULT, GetRowCount, (MAPISPOOL_THIS_(I) ULONG ulFlags, ULONG *lpulCount)) \
    MAPISPOOL_METHOD(HRESULT, SeekRow, (MAPISPOOL_THIS_(I) BOOKMARK bkOrigin, LONG lRowCount, LONG *lplRowsSought)) \
    MAPISPOOL_METHOD(HRESULT, SeekRowApprox, (MAPISPOOL_THIS_(I) ULONG ulNumerator, ULONG ulDenominator)) \
    MAPISPOOL_METHOD(HRESULT, QueryPosition, (MAPISPOOL_THIS_(I) ULONG *lpulRow, ULONG *lpulNumerator, ULONG *lpulDenominator)) \
    MAPISPOOL_METHOD(HRESULT, FindRow, (MAPISPOOL_THIS_(I) LPSRestriction lpRestriction, BOOKMARK bkOrigin, ULONG ulFlags)) \
    MAPISPOOL_METHOD(HRESULT, Restrict, (MAPISPOOL_THIS_(I) LPSRestriction lpRestriction, ULONG ulFlags)) \
    MAPISPOOL_METHOD(HRESULT, CreateBookmark, (MAPISPOOL_THIS_(I) BOOKMARK *lpbkPosition)) \
    MAPISPOOL_METHOD(HRESULT, FreeBookmark, (MAPISPOOL_THIS_(I) BOOKMARK bkPosition)) \
    MAPISPOOL_METHOD(HRESULT, SortTable, (MAPISPOOL_THIS_(I) LPSSortOrderSet lpSortCriteria, ULONG ulFlags)) \
    MAPISPOOL_METHOD(HRESULT, QuerySortOrder, (MAPISPOOL_THIS_(I) LPSSortOrderSet *lppSortCriteria)) \
    MAPISPOOL_METHOD(HRESULT, QueryRows, (MAPISPOOL_THIS_(I) LONG lRowCount, ULONG ulFlags, LPSRowSet *lppRows)) \
    MAPISPOOL_METHOD(HRESULT, Abort, (MAPISPOOL_THIS(I))) \
    MAPISPOOL_METHOD(HRESULT, ExpandRow, (MAPISPOOL_THIS_(I) ULONG cbInstanceKey, LPBYTE pbInstanceKey, ULONG ulRowCount, ULONG ulFlags, LPSRowSet *lppRows, ULONG *lpulMoreRows)) \
    MAPISPOOL_METHOD(HRESULT, CollapseRow, (MAPISPOOL_THIS_(I) ULONG cbInstanceKey, LPBYTE pbInstanceKey, ULONG ulFlags, ULONG *lpulRowCount)) \
    MAPISPOOL_METHOD(HRESULT, WaitForCompletion, (MAPISPOOL_THIS_(I) ULONG ulFlags, ULONG ulTimeout, ULONG *lpulTableStatus)) \
    MAPISPOOL_METHOD(HRESULT, GetCollapseState, (MAPISPOOL_THIS_(I) ULONG ulFlags, ULONG cbInstanceKey, LPBYTE lpbInstanceKey, ULONG *lpcbCollapseState, LPBYTE *lppbCollapseState)) \
    MAPISPOOL_METHOD(HRESULT, SetCollapseState, (MAPISPOOL_THIS_(I) ULONG ulFlags, ULONG cbCollapseState, LPBYTE pbCollapseState, BOOKMARK *lpbkLocation))

/* An advise sink the application implements. mapispool calls OnNotify on one of its own
   threads, after the change, with memory that is valid only during the call. Reading the table
   from OnNotify is fine; the calls that wait for mail to move (MAPILogonEx, Logoff, FlushQueues,
   ValidateState) return MAPI_E_CALL_FAILED there: make them from the application's thread. */
#define MAPI_IMAPIADVISESINK_METHODS(I) \
    MAPISPOOL_METHOD(ULONG, OnNotify, (MAPISPOOL_THIS_(I) ULONG cNotif, LPNOTIFICATION lpNotifications))

#ifdef __cplusplus
struct IMAPIAdviseSink : public IUnknown {
    MAPI_IMAPIADVISESINK_METHODS(IMAPIAdviseSink)
};
#else
typedef struct IMAPIAdviseSinkVtbl {
    MAPI_IUNKNOWN_METHODS(IMAPIAdviseSink)
    MAPI_IMAPIADVISESINK_METHODS(IMAPIAdviseSink)
} IMAPIAdviseSinkVtbl;
struct IMAPIAdviseSink {
    const IMAPIAdviseSinkVtbl *lpVtbl;
};
#endif
typedef struct IMAPIAdviseSink IMAPIAdviseSink;

#ifdef __cplusplus
struct IMAPIProp : public IUnknown {
    MAPI_IMAPIPROP_METHODS(IMAPIProp)
};
struct IMAPIStatus : public IMAPIProp {
    MAPI_IMAPISTATUS_METHODS(IMAPIStatus)
};
struct IMAPITable : public IUnknown {
    MAPI_IMAPITABLE_METHODS(IMAPITable)
};
#else
typedef struct IMAPIPropVtbl {
    MAPI_IUNKNOWN_METHODS(IMAPIProp)
    MAPI_IMAPIPROP_METHODS(IMAPIProp)
} IMAPIPropVtbl;
struct IMAPIProp {
    const IMAPIPropVtbl *lpVtbl;
};
typedef struct IMAPIStatusVtbl {
    MAPI_IUNKNOWN_METHODS(IMAPIStatus)
    MAPI_IMAPIPROP_METHODS(IMAPIStatus)
    MAPI_IMAPISTATUS_METHODS(IMAPIStatus)
} IMAPIStatusVtbl;
struct IMAPIStatus {
    const IMAPIStatusVtbl *lpVtbl;
};
typedef struct IMAPITableVtbl {
    MAPI_IUNKNOWN_METHODS(IMAPITable)
    MAPI_IMAPITABLE_METHODS(IMAPITable)
} IMAPITableVtbl;
struct IMAPITable {
    const IMAPITableVtbl *lpVtbl;
};
#endif
typedef struct IMAPIProp IMAPIProp, *LPMAPIPROP;
typedef struct IMAPIStatus IMAPIStatus, *LPMAPISTATUS;
typedef struct IMAPITable IMAPITable, *LPMAPITABLE;

#ifdef __cplusplus
}
#endif

#endif /* MAPISPOOL_MAPIDEFS_H */
