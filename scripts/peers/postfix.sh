#!/usr/bin/env bash
# A private Postfix instance for tests, under DIR (its own config_directory, queue and log), so
# it never touches the system instance:
#   postfix.sh start DIR SMTPD_PORT RELAY_HOST:PORT   smtpd on 127.0.0.1:SMTPD_PORT relaying
#                                                      everything to RELAY_HOST:PORT (smtp-sink)
#   postfix.sh stop DIR                                stops it, waits until the port closes
# DIR must be searchable by the postfix user (chmod 755, like every parent). The log is
# DIR/postfix.log. POSTFIX_EXTRA="key=value ..." adds main.cf settings.
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [SMTPD_PORT RELAY_HOST:PORT]" >&2; exit 2; }
PATH=$PATH:/usr/sbin:/sbin

port_open() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && { exec 3>&- 3<&-; return 0; }; return 1; }
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  local state
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ]
}

case $cmd in
start)
  port=${3:?SMTPD_PORT}; relay=${4:?RELAY_HOST:PORT}
  command -v postfix >/dev/null 2>&1 || { echo "postfix is not installed: run scripts/peers/install.sh" >&2; exit 3; }
  [ "$(id -u)" -eq 0 ] || { echo "a private Postfix instance needs root (postfix owns its queue)" >&2; exit 3; }
  dir=$(cd "$dir" && pwd)
  etc=$dir/etc
  mkdir -p "$etc" "$dir/spool" "$dir/data"
  chmod 755 "$dir"
  chown postfix "$dir/data"
  cp /etc/postfix/master.cf "$etc/master.cf"
  # A main.cf of our own: nothing from the system instance's.
  : > "$etc/main.cf"
  relay_host=${relay%:*}; relay_port=${relay##*:}
  postconf -c "$etc" -e \
    "compatibility_level = 3.6" \
    "queue_directory = $dir/spool" \
    "data_directory = $dir/data" \
    "mail_owner = postfix" "setgid_group = postdrop" \
    "myhostname = localhost.localdomain" "mydomain = localdomain" "myorigin = localhost.localdomain" \
    "mydestination =" "local_recipient_maps =" \
    "inet_interfaces = 127.0.0.1" "inet_protocols = ipv4" \
    "mynetworks = 127.0.0.0/8" \
    "relayhost = [$relay_host]:$relay_port" \
    "default_transport = smtp" "relay_transport = relay" \
    "smtp_tls_security_level = none" "smtpd_tls_security_level = none" \
    "maillog_file_prefixes = $dir" "maillog_file = $dir/postfix.log" \
    "syslog_name = postfix-test-$port" \
    "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination" \
    "alias_maps =" "alias_database =" \
    "queue_run_delay = 1s" "minimal_backoff_time = 1s" "maximal_backoff_time = 2s" \
    "smtp_connection_cache_on_demand = no"
  if [ -n "${POSTFIX_EXTRA:-}" ]; then
    # shellcheck disable=SC2086
    postconf -c "$etc" -e $POSTFIX_EXTRA
  fi
  # smtpd on our port only; no chroot (Debian's master.cf chroots, which needs a prepared jail).
  postconf -c "$etc" -MX smtp/inet
  postconf -c "$etc" -MX submission/inet 2>/dev/null || true
  postconf -c "$etc" -MX smtps/inet 2>/dev/null || true
  postconf -c "$etc" -Me "$port/inet = $port inet n - n - - smtpd"
  postconf -c "$etc" -F '*/*/chroot = n'
  # postfix(1) reports to syslog (absent here) unless stderr is a terminal: script(1) gives one.
  script -qec "postfix -c $etc check" /dev/null >"$dir/start.log" 2>&1 || true
  if ! script -qec "postfix -c $etc start" /dev/null >>"$dir/start.log" 2>&1; then
    echo "postfix did not start:" >&2; cat "$dir/start.log" >&2; exit 1
  fi
  for _ in $(seq 1 200); do
    if port_open "$port"; then exit 0; fi
    sleep 0.05
  done
  echo "postfix did not listen on 127.0.0.1:$port:" >&2
  cat "$dir/start.log" "$dir/postfix.log" >&2 2>/dev/null || true
  exit 1
  ;;
stop)
  dir=$(cd "$dir" 2>/dev/null && pwd) || exit 0
  etc=$dir/etc
  [ -f "$etc/main.cf" ] || exit 0
  pidfile=$dir/spool/pid/master.pid
  pid=$(tr -d ' \n' < "$pidfile" 2>/dev/null || true)
  postfix -c "$etc" stop >/dev/null 2>&1 || true
  if [ -n "$pid" ]; then
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  port=$(postconf -c "$etc" -M 2>/dev/null | awk '$2 == "inet" && $NF == "smtpd" { print $1; exit }')
  if [ -n "$port" ]; then
    for _ in $(seq 1 100); do port_open "$port" || break; sleep 0.05; done
  fi
  ;;
*) echo "usage: $0 start|stop DIR [SMTPD_PORT RELAY_HOST:PORT]" >&2; exit 2 ;;
esac
