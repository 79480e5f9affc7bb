/*
 * mapix.h - MAPI's session functions and the IMAPISession interface, for mapispool
 * (libmapispool.so). Names and numbers are MAPI's; the text is mapispool's own. See mapidefs.h.
 *
 * MAPILogonEx's profile name: a path when it contains '/' or ends in ".toml", otherwise the
 * file <name>.toml in mapispool's config directory ($XDG_CONFIG_HOME/mapispool, by default
 * ~/.config/mapispool). NULL (with MAPI_USE_DEFAULT, or without MAPI_EXPLICIT_PROFILE) is
 * the default profile: $MAPISPOOL_PROFILE, else profile.toml there. The password is not used:
 * transports take their credentials from the profile's credential sources.
 */
#ifndef MAPISPOOL_MAPIX_H
#define MAPISPOOL_MAPIX_H

#include "mapidefs.h"
#include "mapicode.h"
#include "mapiguid.h"
#include "mapitags.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    ULONG ulVersion;
    ULONG ulFlags;
} MAPIINIT_0, *LPMAPIINIT_0;
typedef MAPIINIT_0 MAPIINIT, *LPMAPIINIT;
#define MAPI_INIT_VERSION 0
#define MAPI_MULTITHREAD_NOTIFICATIONS ((ULONG)0x00000001)
#define MAPI_NO_COINIT ((ULONG)0x00000008)

/* MAPILogonEx flags */
#define MAPI_LOGON_UI ((ULONG)0x00000001)        /* no dialog exists: a profile that cannot be found fails */
#define MAPI_NEW_SESSION ((ULONG)0x00000002)     /* else the MAPI_ALLOW_OTHERS session is shared if any */
#define MAPI_ALLOW_OTHERS ((ULONG)0x00000008)    /* this session becomes the shared one */
#define MAPI_EXPLICIT_PROFILE ((ULONG)0x00000010)
#define MAPI_EXTENDED ((ULONG)0x00000020)        /* accepted; every logon here is extended */
#define MAPI_USE_DEFAULT ((ULONG)0x00000040)
#define MAPI_FORCE_DOWNLOAD ((ULONG)0x00001000)  /* a FLUSH_DOWNLOAD before MAPILogonEx returns */
#define MAPI_SERVICE_UI_ALWAYS ((ULONG)0x00002000)
#define MAPI_NO_MAIL ((ULONG)0x00008000)         /* FlushQueues is MAPI_E_NO_SUPPORT in this session */
#define MAPI_PASSWORD_UI ((ULONG)0x00020000)

/* Logoff flags */
#define MAPI_LOGOFF_SHARED ((ULONG)0x00000001)
#define MAPI_LOGOFF_UI ((ULONG)0x00000002)

struct IMAPISession;
typedef struct IMAPISession *LPMAPISESSION;
typedef struct IMsgStore *LPMDB;
typedef struct IAddrBook *LPADRBOOK;
typedef struct IProfSect *LPPROFSECT;
typedef struct IMessage *LPMESSAGE;
typedef struct IMAPIFolder *LPMAPIFOLDER;
typedef struct IMsgServiceAdmin *LPSERVICEADMIN;

#define MAPI_IMAPISESSION_METHODS(I) \
    MAPISPOOL_METHOD(HRESULT, GetLastError, (MAPISPOOL_THIS_(I) HRESULT hResult, ULONG ulFlags, LPMAPIERROR *lppMAPIError)) \
    MAPISPOOL_METHOD(HRESULT, GetMsgStoresTable, (MAPISPOOL_THIS_(I) ULONG ulFlags, LPMAPITABLE *lppTable)) \
    MAPISPOOL_METHOD(HRESULT, OpenMsgStore, (MAPISPOOL_THIS_(I) ULONG_PTR ulUIParam, ULONG cbEntryID, LPENTRYID lpEntryID, LPCIID lpInterface, ULONG ulFlags, LPMDB *lppMDB)) \
    MAPISPOOL_METHOD(HRESULT, OpenAddressBook, (MAPISPOOL_THIS_(I) ULONG_PTR ulUIParam, LPCIID lpInterface, ULONG ulFlags, LPADRBOOK *lppAdrBook)) \
    MAPISPOOL_METHOD(HRESULT, OpenProfileSection, (MAPISPOOL_THIS_(I) LPMAPIUID lpUID, LPCIID lpInterface, ULONG ulFlags, LPPROFSECT *lppProfSect)) \
    MAPISPOOL_METHOD(HRESULT, GetStatusTable, (MAPISPOOL_THIS_(I) ULONG ulFlags, LPMAPITABLE *lppTable)) \
    MAPISPOOL_METHOD(HRESULT, OpenEntry, (MAPISPOOL_THIS_(I) ULONG cbEntryID, LPENTRYID lpEntryID, LPCIID lpInterface, ULONG ulFlags, ULONG *lpulObjType, LPUNKNOWN *lppUnk)) \
    MAPISPOOL_METHOD(HRESULT, CompareEntryIDs, (MAPISPOOL_THIS_(I) ULONG cbEntryID1, LPENTRYID lpEntryID1, ULONG cbEntryID2, LPENTRYID lpEntryID2, ULONG ulFlags, ULONG *lpulResult)) \
    MAPISPOOL_METHOD(HRESULT, Advise, (MAPISPOOL_THIS_(I) ULONG cbEntryID, LPENTRYID lpEntryID, ULONG ulEventMask, LPMAPIADVISESINK lpAdviseSink, ULONG_PTR *lpulConnection)) \
    MAPISPOOL_METHOD(HRESULT, Unadvise, (MAPISPOOL_THIS_(I) ULONG_PTR ulConnection)) \
    MAPISPOOL_METHOD(HRESULT, MessageOptions, (MAPISPOOL_THIS_(I) ULONG_PTR ulUIParam, ULONG ulFlags, LPTSTR lpszAdrType, LPMESSAGE lpMessage)) \
    MAPISPOOL_METHOD(HRESULT, QueryDefaultMessageOpt, (MAPISPOOL_THIS_(I) LPTSTR lpszAdrType, ULONG ulFlags, ULONG *lpcValues, LPSPropValue *lppOptions)) \
    MAPISPOOL_METHOD(HRESULT, EnumAdrTypes, (MAPISPOOL_THIS_(I) ULONG ulFlags, ULONG *lpcAdrTypes, LPTSTR **lpppszAdrTypes)) \
    MAPISPOOL_METHOD(HRESULT, QueryIdentity, (MAPISPOOL_THIS_(I) ULONG *lpcbEntryID, LPENTRYID *lppEntryID)) \
    MAPISPOOL_METHOD(HRESULT, Logoff, (MAPISPOOL_THIS_(I) ULONG_PTR ulUIParam, ULONG ulFlags, ULONG ulReserved)) \
    MAPISPOOL_METHOD(HRESULT, SetDefaultStore, (MAPISPOOL_THIS_(I) ULONG ulFlags, ULONG cbEntryID, LPENTRYID lpEntryID)) \
    MAPISPOOL_METHOD(HRESULT, AdminServices, (MAPISPOOL_THIS_(I) ULONG ulFlags, LPSERVICEADMIN *lppServiceAdmin)) \
    MAPISPOOL_METHOD(HRESULT, ShowForm, (MAPISPOOL_THIS_(I) ULONG_PTR ulUIParam, LPMDB lpMsgStore, LPMAPIFOLDER lpParentFolder, LPCIID lpInterface, ULONG ulMessageToken, LPMESSAGE lpMessageSent, ULONG ulFlags, ULONG ulMessageStatus, ULONG ulMessageFlags, ULONG ulAccess, LPSTR lpszMessageClass)) \
    MAPISPOOL_METHOD(HRESULT, PrepareForm, (MAPISPOOL_THIS_(I) LPCIID lpInterface, LPMESSAGE lpMessage, ULONG *lpulMessageToken))

#ifdef __cplusplus
struct IMAPISession : public IUnknown {
    MAPI_IMAPISESSION_METHODS(IMAPISession)
};
#else
typedef struct IMAPISessionVtbl {
    MAPI_IUNKNOWN_METHODS(IMAPISession)
    MAPI_IMAPISESSION_METHODS(IMAPISession)
} IMAPISessionVtbl;
struct IMAPISession {
    const IMAPISessionVtbl *lpVtbl;
};
#endif
typedef struct IMAPISession IMAPISession;

HRESULT MAPIInitialize(LPVOID lpMapiInit);
void MAPIUninitialize(void);
HRESULT MAPILogonEx(ULONG_PTR ulUIParam, LPTSTR lpszProfileName, LPTSTR lpszPassword,
                    FLAGS flFlags, LPMAPISESSION *lppSession);

SCODE MAPIAllocateBuffer(ULONG cbSize, LPVOID *lppBuffer);
SCODE MAPIAllocateMore(ULONG cbSize, LPVOID lpObject, LPVOID *lppBuffer);
ULONG MAPIFreeBuffer(LPVOID lpBuffer);

#ifdef __cplusplus
}
#endif

#endif /* MAPISPOOL_MAPIX_H */
