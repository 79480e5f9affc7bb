/*
 * mapiutil.h - MAPI's utility functions that mapispool (libmapispool.so) provides. Names are
 * MAPI's; the text is mapispool's own. See mapidefs.h.
 */
#ifndef MAPISPOOL_MAPIUTIL_H
#define MAPISPOOL_MAPIUTIL_H

#include "mapix.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sets the columns, restriction and sort order given (NULL keeps the table's own) and returns
   every row of the table; more rows than crowsMax (0 = no limit) is MAPI_E_TABLE_TOO_BIG.
   Free the result with FreeProws. */
HRESULT HrQueryAllRows(LPMAPITABLE lpTable, LPSPropTagArray lpPropTags,
                       LPSRestriction lpRestriction, LPSSortOrderSet lpSortOrderSet,
                       LONG crowsMax, LPSRowSet *lppRows);

/* Frees each row's property array, then the row set. */
void FreeProws(LPSRowSet lpRows);
/* Frees each entry's property array, then the address list. */
void FreePadrlist(LPADRLIST lpAdrlist);

#ifdef __cplusplus
}
#endif

#endif /* MAPISPOOL_MAPIUTIL_H */
