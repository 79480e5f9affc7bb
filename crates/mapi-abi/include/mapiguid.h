/*
 * mapiguid.h - the interface identifiers of the MAPI interfaces mapispool (libmapispool.so)
 * implements. MAPI's interface IDs are OLE GUIDs {l, 0, 0, {C0 00 00 00 00 00 00 46}}. Defined
 * static here, so no translation unit has to define them (INITGUID is not needed).
 */
#ifndef MAPISPOOL_MAPIGUID_H
#define MAPISPOOL_MAPIGUID_H

#include "mapidefs.h"

#define MAPISPOOL_OLEGUID(name, l) \
    static const IID name = {(ULONG)(l), 0, 0, {0xC0, 0, 0, 0, 0, 0, 0, 0x46}}

#if defined(__GNUC__)
#define MAPISPOOL_UNUSED __attribute__((unused))
#else
#define MAPISPOOL_UNUSED
#endif

MAPISPOOL_UNUSED MAPISPOOL_OLEGUID(IID_IUnknown, 0x00000000);
MAPISPOOL_UNUSED MAPISPOOL_OLEGUID(IID_IMAPISession, 0x00020300);
MAPISPOOL_UNUSED MAPISPOOL_OLEGUID(IID_IMAPITable, 0x00020301);
MAPISPOOL_UNUSED MAPISPOOL_OLEGUID(IID_IMAPIAdviseSink, 0x00020302);
MAPISPOOL_UNUSED MAPISPOOL_OLEGUID(IID_IMAPIProp, 0x00020303);
MAPISPOOL_UNUSED MAPISPOOL_OLEGUID(IID_IMAPIStatus, 0x00020305);

#endif /* MAPISPOOL_MAPIGUID_H */
