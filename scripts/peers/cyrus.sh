#!/usr/bin/env bash
# A private Cyrus IMAP (IMAP + POP3) for tests, on loopback, with its own config, users and
# mail spool: the second real server family next to Dovecot (scripts/peers/dovecot.sh).
#
#   scripts/peers/cyrus.sh start DIR IMAP_PORT POP3_PORT [IMAPS_PORT POP3S_PORT]
#   scripts/peers/cyrus.sh stop DIR
#
# Users come from CYRUS_USERS="user:password user2:password2" (default "test:test"); their INBOX
# is made at their first login (autocreate). With TLS ports, a self-signed certificate for
# localhost/127.0.0.1 is made at start (DIR/tls/cert.pem, key.pem) and the plain ports offer
# STARTTLS/STLS too. Messages are put in over IMAP APPEND (the Rust wrapper does that): Cyrus
# keeps its own index beside the files, so writing into the spool as for a Maildir does not work.
#
# Pitfalls, each met while writing this (Cyrus 3.6, Debian 12):
# - Cyrus's processes refuse to run as root: `master` starts as root and every service runs as
#   the `cyrus` user, so all of DIR belongs to cyrus and every parent of DIR must be o+x. As
#   another user the services run as that user (untested here; CI runs as root).
# - Everything not named in DIR/imapd.conf falls back to compiled-in paths under /run/cyrus and
#   /var/lib/cyrus, the system instance's: proc_path, mboxname_lockpath and the lmtp, idle and
#   notify sockets are set here explicitly so that nothing is shared with it. `master -C` does
#   not pass its config on: every service in cyrus.conf needs its own `-C DIR/imapd.conf`, or
#   it silently reads /etc/imapd.conf (logins then fail against the system's sasldb).
# - Debian's /etc/imapd.conf sets `popminpoll: 1`: a second POP3 login within a minute is
#   refused ("Logins must be at least 1 minute apart"). This config sets 0.
# - Cyrus 3 defaults to `altnamespace: yes` and `unixhierarchysep: yes` (Debian's config turns
#   both off): a user's folders are "Archive", siblings of INBOX, with "/" as separator, as in
#   Dovecot's default; set explicitly here.
# - Without `idled`, IMAP IDLE polls the mailbox every `imapidlepoll` seconds (default 60): a test
#   waiting 10 s for a push would fail. The DAEMON section runs idled on a private socket, and
#   each imapd in IDLE listens on CONFIGDIRECTORY/socket/idle.PID: without that directory the
#   push silently never arrives and IDLE falls back to the once-a-minute poll. (The tests do not
#   shorten imapidlepoll, so IDLE against Cyrus is a real push.)
# - POP3 UIDLs are "UIDVALIDITY.UID" (Dovecot's here: %08Xu%08Xv); expunge is delayed (files stay
#   on disk under DIR/spool until cyr_expire), so count messages over IMAP, never on disk.
# - A wrong password: IMAP answers `NO authentication failure` (no [AUTHENTICATIONFAILED] code,
#   unlike Dovecot) to AUTHENTICATE PLAIN, which it offers in its greeting; POP3 answers
#   `-ERR [AUTH] Invalid login`. Its greeting names the host (`vm Cyrus IMAP 3.6.1-...`).
# - Logging goes to syslog only; there is none here. For a protocol trace, create
#   DIR/conf/log/USER: Cyrus then writes that user's sessions there (telemetry).
set -euo pipefail

die() { echo "cyrus.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR IMAP_PORT POP3_PORT [IMAPS_PORT POP3S_PORT] | stop DIR"; }

# master, ctl_cyrusdb: cyrus-common. imapd, pop3d, idled: cyrus-imapd and cyrus-pop3d, installed
# as packages where Dovecot is not, else unpacked by scripts/peers/install.sh (see there why).
CYRUS_BIN=/usr/lib/cyrus/bin
if [ -x "$CYRUS_BIN/imapd" ] && [ -x "$CYRUS_BIN/pop3d" ]; then
  SERVICE_BIN=$CYRUS_BIN
else
  SERVICE_BIN=/usr/local/lib/mapispool-peers/cyrus/usr/lib/cyrus/bin
fi

# Whether something answers on 127.0.0.1:PORT with a line starting with PREFIX.
answers() {
  local port=$1 prefix=$2 line=""
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  IFS= read -r -t 2 line <&3 || true
  exec 3>&- 3<&-
  [[ $line == "$prefix"* ]]
}

# Whether PID is alive (not a zombie waiting to be reaped).
alive() {
  local pid=$1 state
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed -e 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ "$state" != Z ] && [ "$state" != X ]
}

start() {
  [ $# -eq 3 ] || [ $# -eq 5 ] || usage
  local dir=$1 imap=$2 pop3=$3 imaps=${4:-0} pop3s=${5:-0}
  [ -x "$CYRUS_BIN/master" ] && [ -x "$SERVICE_BIN/imapd" ] && [ -x "$SERVICE_BIN/pop3d" ] ||
    die "Cyrus IMAP is not installed; run scripts/peers/install.sh (or apt-get install cyrus-imapd cyrus-pop3d sasl2-bin)"
  command -v saslpasswd2 >/dev/null 2>&1 ||
    die "saslpasswd2 is missing; run scripts/peers/install.sh (or apt-get install sasl2-bin)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  # Unix socket paths (sun_path) hold at most 107 bytes; the longest is DIR/run/socket/notify.
  [ ${#dir} -le 80 ] || die "DIR $dir is ${#dir} characters long; Cyrus's unix sockets need at most 80"
  local owner group
  if [ "$(id -u)" = 0 ]; then
    owner=cyrus group=mail
    id cyrus >/dev/null 2>&1 || die "there is no user cyrus; is cyrus-common installed?"
    local p=$dir
    while [ "$p" != / ]; do
      setpriv --reuid=cyrus --regid=mail --clear-groups test -x "$p" 2>/dev/null ||
        die "$p is not searchable by others (o+x); chmod 755 it (mktemp -d gives 0700)"
      p=$(dirname "$p")
    done
  else
    owner=$(id -un) group=$(id -gn)
  fi
  if [ -f "$dir/run/master.pid" ] && alive "$(cat "$dir/run/master.pid")"; then
    die "a Cyrus already runs for $dir (pid $(cat "$dir/run/master.pid")); stop it first"
  fi
  chmod 755 "$dir"
  mkdir -p "$dir/run/socket" "$dir/run/proc" "$dir/run/lock" "$dir/spool" \
    "$dir/conf"/{db,log,quota,user,sieve,msg,ptclient,socket}

  local tls_lines=""
  if [ "$imaps" != 0 ] || [ "$pop3s" != 0 ]; then
    mkdir -p "$dir/tls"
    if [ ! -f "$dir/tls/cert.pem" ]; then
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -keyout "$dir/tls/key.pem" -out "$dir/tls/cert.pem" >/dev/null 2>&1 ||
        die "openssl could not make a self-signed certificate"
    fi
    chmod 644 "$dir/tls/cert.pem"
    chmod 600 "$dir/tls/key.pem"
    tls_lines="tls_server_cert: $dir/tls/cert.pem
tls_server_key: $dir/tls/key.pem
tls_versions: tls1_2 tls1_3"
  fi

  cat >"$dir/imapd.conf" <<CONF
configdirectory: $dir/conf
proc_path: $dir/run/proc
mboxname_lockpath: $dir/run/lock
defaultpartition: default
partition-default: $dir/spool
lmtpsocket: $dir/run/socket/lmtp
idlesocket: $dir/run/socket/idle
notifysocket: $dir/run/socket/notify
syslog_prefix: cyrus-test-$imap
altnamespace: yes
unixhierarchysep: yes
autocreate_quota: 0
popminpoll: 0
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $dir/sasldb2
sasl_mech_list: PLAIN LOGIN
$tls_lines
CONF

  local services="imap cmd=\"$SERVICE_BIN/imapd -C $dir/imapd.conf\" listen=\"127.0.0.1:$imap\" prefork=0 maxchild=200
  pop3 cmd=\"$SERVICE_BIN/pop3d -C $dir/imapd.conf\" listen=\"127.0.0.1:$pop3\" prefork=0 maxchild=200"
  [ "$imaps" != 0 ] && services+="
  imaps cmd=\"$SERVICE_BIN/imapd -s -C $dir/imapd.conf\" listen=\"127.0.0.1:$imaps\" prefork=0 maxchild=50"
  [ "$pop3s" != 0 ] && services+="
  pop3s cmd=\"$SERVICE_BIN/pop3d -s -C $dir/imapd.conf\" listen=\"127.0.0.1:$pop3s\" prefork=0 maxchild=50"
  cat >"$dir/cyrus.conf" <<CONF
START {
  recover cmd="$CYRUS_BIN/ctl_cyrusdb -C $dir/imapd.conf -r"
}
SERVICES {
  $services
}
DAEMON {
  idled cmd="$SERVICE_BIN/idled -C $dir/imapd.conf"
}
CONF

  # saslpasswd2 makes the database; an empty file in its place is "unexpected file type".
  rm -f "$dir/sasldb2"
  local entry user pw
  for entry in ${CYRUS_USERS:-test:test}; do
    user=${entry%%:*} pw=${entry#*:}
    printf '%s' "$pw" | saslpasswd2 -p -c -f "$dir/sasldb2" "$user" ||
      die "saslpasswd2 could not add $user"
    # Cyrus writes every session of a user with a folder here (its "telemetry"): the only log
    # there is without syslog.
    mkdir -p "$dir/conf/log/$user"
  done
  chown -R "$owner:$group" "$dir"
  chmod 640 "$dir/sasldb2"

  # The daemon must not keep our stdout/stderr open (a caller waiting for their end would wait
  # forever): -d detaches; its own output goes to DIR/master.out.
  "$CYRUS_BIN/master" -C "$dir/imapd.conf" -M "$dir/cyrus.conf" \
    -p "$dir/run/master.pid" -d </dev/null >"$dir/master.out" 2>&1 ||
    die "cyrus master did not start: $(cat "$dir/master.out")"
  local i
  for i in $(seq 1 200); do
    if answers "$imap" "* OK" && answers "$pop3" "+OK"; then
      echo "cyrus: imap 127.0.0.1:$imap pop3 127.0.0.1:$pop3${4:+ imaps $imaps pop3s $pop3s} (pid $(cat "$dir/run/master.pid" 2>/dev/null))"
      return 0
    fi
    sleep 0.05
  done
  cat "$dir/master.out" >&2 2>/dev/null || true
  stop "$dir" || true
  die "cyrus did not answer on ports $imap/$pop3 within 10 s"
}

stop() {
  [ $# -eq 1 ] || usage
  local dir=$1 pid
  [ -f "$dir/run/master.pid" ] || return 0
  pid=$(cat "$dir/run/master.pid")
  if alive "$pid"; then
    # master ends its children on SIGTERM (SIGQUIT would leave them to finish their sessions).
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
      alive "$pid" || break
      sleep 0.05
    done
    alive "$pid" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/run/master.pid"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) usage ;;
esac
