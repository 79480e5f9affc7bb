#!/usr/bin/env bash
# Installs the real mail servers the integration tests start on loopback: Postfix (for smtp-sink
# and a private Postfix instance), Dovecot and Cyrus IMAP (two IMAP/POP3 server families); and
# the mail clients the sendmail tests drive. Idempotent and quick when everything is there;
# non-interactive (CI runs it as root on a fresh Debian 12).
#
# Cyrus and Dovecot cannot both be installed as packages: cyrus-imapd and cyrus-pop3d declare
# `Conflicts: imap-server` / `pop3-server`, which dovecot-imapd / dovecot-pop3d provide (one
# system IMAP server on port 143). The tests run private instances on high ports, so the conflict
# does not apply to them: cyrus-common (master, the libraries, the `cyrus` user) and sasl2-bin
# (saslpasswd2) are installed as packages, and the three service programs of cyrus-imapd and
# cyrus-pop3d (imapd, idled, pop3d), of the same version, are unpacked with dpkg-deb into
# $CYRUS_PRIVATE (scripts/peers/cyrus.sh looks there), where no package manager sees them.
set -euo pipefail

need=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v postconf >/dev/null 2>&1 || [ -x /usr/sbin/postconf ] || need+=(postfix)
[ -x /usr/sbin/dovecot ] || need+=(dovecot-core)
[ -e /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -e /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
[ -x /usr/lib/cyrus/bin/master ] || need+=(cyrus-common)
command -v saslpasswd2 >/dev/null 2>&1 || [ -x /usr/sbin/saslpasswd2 ] || need+=(sasl2-bin)
# Everyday clients that drive our sendmail entry in crates/mapispool-cli/tests/clients.rs
# (Mailutils' mail, git send-email with the Perl module it needs), and GNU time for the
# memory bound there.
[ -x /usr/bin/mail.mailutils ] || need+=(mailutils)
[ -x /usr/lib/git-core/git-send-email ] || need+=(git-email)
perl -MMail::Address -e 1 >/dev/null 2>&1 || need+=(libmailtools-perl)
[ -x /usr/bin/time ] || need+=(time)
# systemd-analyze, for the checks of contrib/mapispool.service (crates/mapispool-cli/tests/
# systemd.rs). Debian's systemd package installs in a container without becoming its init.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The C/C++ toolchain and Valgrind that crates/mapi-abi/tests/c_api.rs builds and runs MAPI
# programs with.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v strace >/dev/null 2>&1 || need+=(strace)
# promtool checks the daemon's /metrics (crates/mapispool-cli/tests/web.rs).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# PostgreSQL 15 for the store's second backend (scripts/peers/postgres.sh runs private clusters;
# Debian's package creates the system cluster but does not start it here).
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
# Headless Chromium drives the status page (crates/mapispool-cli/tests/browser.rs).
[ -x /usr/bin/chromium ] || need+=(chromium)
# libfaketime runs a cluster node with its clock ten minutes off (crates/mapispool-cli/tests/
# cluster.rs: leases follow the database server's clock).
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || need+=(faketime)
CYRUS_PRIVATE=/usr/local/lib/mapispool-peers/cyrus
cyrus_services() {
  [ -x /usr/lib/cyrus/bin/imapd ] && [ -x /usr/lib/cyrus/bin/pop3d ] && [ -x /usr/lib/cyrus/bin/idled ] && return 0
  local v
  v=$(dpkg-query -W -f='${Version}' cyrus-common 2>/dev/null) || return 1
  [ "$(cat "$CYRUS_PRIVATE/version" 2>/dev/null)" = "$v" ]
}
if [ ${#need[@]} -eq 0 ] && cyrus_services; then
  exit 0
fi
# De-duplicate.
if [ ${#need[@]} -ne 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
fi

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "scripts/peers/install.sh: missing ${need[*]}; run this script as root to install them" >&2
    exit 1
  fi
else
  SUDO=()
fi

echo "scripts/peers/install.sh: installing ${need[*]:-} (and Cyrus's services if missing)" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how it is used; "Local only" with a fixed mail name keeps the installer quiet.
# (The tests never use the system instance's settings: they run private instances.)
printf '%s\n' \
  "postfix postfix/main_mailer_type select Local only" \
  "postfix postfix/mailname string localhost.localdomain" \
  | "${SUDO[@]}" debconf-set-selections
# Wait for a dpkg lock held by another install rather than failing.
APT_OPTS=(-o DPkg::Lock::Timeout=600)
"${SUDO[@]}" apt-get "${APT_OPTS[@]}" update -qq
if [ ${#need[@]} -ne 0 ]; then
  "${SUDO[@]}" apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}" >/dev/null
fi
if ! cyrus_services; then
  version=$(dpkg-query -W -f='${Version}' cyrus-common)
  fetch=$(mktemp -d)
  (cd "$fetch" && "${SUDO[@]}" apt-get -q download "cyrus-imapd=$version" "cyrus-pop3d=$version" 2>&1 |
    grep -v "unsandboxed as root" >&2 || true)
  "${SUDO[@]}" rm -rf "$CYRUS_PRIVATE"
  "${SUDO[@]}" mkdir -p "$CYRUS_PRIVATE"
  for deb in "$fetch"/cyrus-imapd_*.deb "$fetch"/cyrus-pop3d_*.deb; do
    [ -f "$deb" ] || { echo "scripts/peers/install.sh: apt-get download cyrus-imapd/cyrus-pop3d $version failed" >&2; exit 1; }
    "${SUDO[@]}" dpkg-deb -x "$deb" "$CYRUS_PRIVATE"
  done
  echo "$version" | "${SUDO[@]}" tee "$CYRUS_PRIVATE/version" >/dev/null
  rm -rf "$fetch"
fi
# Debian starts the system daemons after installing; the tests do not use them. Leave them be
# unless they hold the ports we use (they listen on 25/143/110, ours are high ports; the
# private Cyrus and Dovecot instances share no file or socket with the system ones).
echo "scripts/peers/install.sh: installed ${need[*]:-} (Cyrus's services in $CYRUS_PRIVATE)" >&2
