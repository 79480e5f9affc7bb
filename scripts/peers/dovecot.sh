#!/usr/bin/env bash
# A private Dovecot (IMAP + POP3) for tests, on loopback, with its own config, users and Maildirs.
#
#   scripts/peers/dovecot.sh start DIR IMAP_PORT POP3_PORT [IMAPS_PORT POP3S_PORT]
#   scripts/peers/dovecot.sh stop DIR
#   scripts/peers/dovecot.sh preload DIR USER N [SIZE]   # N messages of about SIZE bytes into USER's INBOX
#
# Users come from DOVECOT_USERS="user:password user2:password2" (default "test:test"); mail is in
# Maildir DIR/mail/USER. With TLS ports, a self-signed certificate for localhost/127.0.0.1 is made
# at start (DIR/tls/cert.pem, key.pem) and the plain ports offer STARTTLS/STLS too.
# Env: DOVECOT_LISTEN (default 127.0.0.1), DOVECOT_FSYNC (default never).
# Pitfalls (see /work/shared/peers.md): every parent of DIR must be o+x; DIR must be at most 70
# characters (unix socket paths); as root, mail runs as nobody (Dovecot refuses uid 0).
set -euo pipefail

die() { echo "dovecot.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR IMAP_PORT POP3_PORT [IMAPS_PORT POP3S_PORT] | stop DIR | preload DIR USER N [SIZE]"; }

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
  command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] ||
    die "dovecot is not installed; run scripts/peers/install.sh (or apt-get install dovecot-imapd dovecot-pop3d)"
  local dovecot_bin
  dovecot_bin=$(command -v dovecot 2>/dev/null || echo /usr/sbin/dovecot)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  [ ${#dir} -le 70 ] || die "DIR $dir is ${#dir} characters long; Dovecot's unix sockets need at most 70"
  # Every parent must be searchable by the unprivileged Dovecot users.
  local p=$dir
  while [ "$p" != / ]; do
    if [ "$(id -u)" = 0 ] && ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$p" 2>/dev/null; then
      die "$p is not searchable by others (o+x); chmod 755 it (mktemp -d gives 0700)"
    fi
    p=$(dirname "$p")
  done
  chmod 755 "$dir"
  if [ -f "$dir/run/master.pid" ] && alive "$(cat "$dir/run/master.pid")"; then
    die "a Dovecot already runs for $dir (pid $(cat "$dir/run/master.pid")); stop it first"
  fi
  mkdir -p "$dir/run" "$dir/state" "$dir/mail" "$dir/home"

  local mail_uid mail_gid internal_user login_user internal_group chroot_line=""
  if [ "$(id -u)" = 0 ]; then
    mail_uid=${MAIL_UID:-$(id -u nobody)}
    mail_gid=${MAIL_GID:-$(getent group nogroup | cut -d: -f3)}
    internal_user=dovecot login_user=dovenull internal_group=dovecot
  else
    mail_uid=${MAIL_UID:-$(id -u)}
    mail_gid=${MAIL_GID:-$(id -g)}
    internal_user=$(id -un) login_user=$(id -un) internal_group=$(id -gn)
    chroot_line="chroot ="
  fi

  : >"$dir/passwd"
  local entry user pw
  for entry in ${DOVECOT_USERS:-test:test}; do
    user=${entry%%:*} pw=${entry#*:}
    echo "$user:{PLAIN}$pw:$mail_uid:$mail_gid::$dir/home/$user::" >>"$dir/passwd"
    mkdir -p "$dir/mail/$user/cur" "$dir/mail/$user/new" "$dir/mail/$user/tmp" "$dir/home/$user"
  done
  chmod 644 "$dir/passwd"
  if [ "$(id -u)" = 0 ]; then
    chown -R "$mail_uid:$mail_gid" "$dir/mail" "$dir/home"
  fi

  local ssl_block="ssl = no"
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
    ssl_block="ssl = yes
ssl_cert = <$dir/tls/cert.pem
ssl_key = <$dir/tls/key.pem
ssl_min_protocol = TLSv1.2"
  fi

  cat >"$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
instance_name = dovecot-test-$imap
protocols = imap pop3
listen = ${DOVECOT_LISTEN:-127.0.0.1}
$ssl_block
disable_plaintext_auth = no
auth_mechanisms = plain login apop
default_internal_user = $internal_user
default_login_user = $login_user
default_internal_group = $internal_group
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:$dir/mail/%u
mail_fsync = ${DOVECOT_FSYNC:-never}
pop3_uidl_format = %08Xu%08Xv
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/passwd
}
protocol imap {
  mail_max_userip_connections = 200
}
protocol pop3 {
  mail_max_userip_connections = 200
}
service imap-login {
  $chroot_line
  inet_listener imap {
    port = $imap
  }
  inet_listener imaps {
    port = $imaps
    ssl = yes
  }
}
service pop3-login {
  $chroot_line
  inet_listener pop3 {
    port = $pop3
  }
  inet_listener pop3s {
    port = $pop3s
    ssl = yes
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
CONF

  # The daemon must not keep our stdout/stderr open: a caller waiting for their end (a test's
  # Command::output, $(...)) would wait forever.
  "$dovecot_bin" -c "$dir/dovecot.conf" </dev/null >"$dir/dovecot.out" 2>&1 ||
    die "dovecot did not start: $(cat "$dir/dovecot.out"); see $dir/dovecot.log"
  local i
  for i in $(seq 1 200); do
    if answers "$imap" "* OK" && answers "$pop3" "+OK"; then
      echo "dovecot: imap 127.0.0.1:$imap pop3 127.0.0.1:$pop3${4:+ imaps $imaps pop3s $pop3s} (pid $(cat "$dir/run/master.pid" 2>/dev/null))"
      return 0
    fi
    sleep 0.05
  done
  tail -20 "$dir/dovecot.log" >&2 2>/dev/null || true
  stop "$dir" || true
  die "dovecot did not answer on ports $imap/$pop3 within 10 s; see $dir/dovecot.log"
}

stop() {
  [ $# -eq 1 ] || usage
  local dir=$1 pid
  [ -f "$dir/run/master.pid" ] || return 0
  pid=$(cat "$dir/run/master.pid")
  if alive "$pid"; then
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

# Writes N messages straight into USER's Maildir (tmp/ then rename into new/): far faster than
# APPEND. Message i has Subject "preload i" and Message-ID <preload-i.N@test>.
preload() {
  [ $# -ge 3 ] && [ $# -le 4 ] || usage
  local dir=$1 user=$2 n=$3 size=${4:-2000}
  local md="$dir/mail/$user"
  [ -d "$md/new" ] || die "no Maildir for $user under $dir/mail (is $user in DOVECOT_USERS?)"
  local filler line i now
  line=$(printf '%076d' 0 | tr 0 x)
  filler=""
  local lines=$(( (size + 77) / 78 ))
  for ((i = 0; i < lines; i++)); do filler+="$line"$'\r\n'; done
  now=$(date +%s)
  local date
  date=$(date -R)
  for ((i = 1; i <= n; i++)); do
    local name="$now.P$$Q$i.preload"
    printf 'From: Sender <sender@example.com>\r\nTo: %s@localhost\r\nSubject: preload %d\r\nMessage-ID: <preload-%d.%s@test>\r\nDate: %s\r\n\r\n%s' \
      "$user" "$i" "$i" "$now" "$date" "$filler" >"$md/tmp/$name"
    mv "$md/tmp/$name" "$md/new/$name"
  done
  if [ "$(id -u)" = 0 ]; then chown -R --reference="$md" "$md/new" 2>/dev/null || true; fi
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  preload) shift; preload "$@" ;;
  *) usage ;;
esac
