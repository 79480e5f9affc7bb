#!/usr/bin/env bash
# Installs the real mail servers the integration tests start on loopback: Postfix (for smtp-sink
# and a private Postfix instance) and Dovecot (IMAP, POP3); and the mail clients the sendmail
# tests drive. Idempotent and quick when everything is there; non-interactive (CI runs it as
# root on a fresh Debian 12).
set -euo pipefail

need=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v postconf >/dev/null 2>&1 || [ -x /usr/sbin/postconf ] || need+=(postfix)
[ -x /usr/sbin/dovecot ] || need+=(dovecot-core)
[ -e /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -e /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
# Everyday clients that drive our sendmail entry in crates/mapispool-cli/tests/clients.rs
# (Mailutils' mail, git send-email with the Perl module it needs), and GNU time for the
# memory bound there.
[ -x /usr/bin/mail.mailutils ] || need+=(mailutils)
[ -x /usr/lib/git-core/git-send-email ] || need+=(git-email)
perl -MMail::Address -e 1 >/dev/null 2>&1 || need+=(libmailtools-perl)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# De-duplicate.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

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

echo "scripts/peers/install.sh: installing ${need[*]}" >&2
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
"${SUDO[@]}" apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}" >/dev/null
# Debian starts the system daemons after installing; the tests do not use them. Leave them be
# unless they hold the ports we use (they listen on 25/143/110, ours are high ports).
echo "scripts/peers/install.sh: installed ${need[*]}" >&2
