/* logon FLAGS PROFILE: MAPILogonEx with the flags given (a number, e.g. 0x1022), then Logoff
 * and Release. Prints the HRESULT; exits non-zero when the logon fails. */
#include <stdio.h>
#include <stdlib.h>
#include <mapix.h>

int main(int argc, char **argv)
{
    LPMAPISESSION lpSession = NULL;
    HRESULT hr;
    if (argc != 3) {
        fprintf(stderr, "usage: %s FLAGS PROFILE\n", argv[0]);
        return 2;
    }
    hr = MAPIInitialize(NULL);
    if (SUCCEEDED(hr))
        hr = MAPILogonEx(0, (LPTSTR)argv[2], NULL, (FLAGS)strtoul(argv[1], NULL, 0), &lpSession);
    printf("MAPILogonEx: 0x%08X\n", (unsigned)hr);
    if (lpSession) {
        lpSession->lpVtbl->Logoff(lpSession, 0, 0, 0);
        lpSession->lpVtbl->Release(lpSession);
    }
    MAPIUninitialize();
    return FAILED(hr) ? 1 : 0;
}
