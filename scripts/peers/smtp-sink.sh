#!/usr/bin/env bash
# Postfix's smtp-sink on 127.0.0.1:PORT, for tests: counts every message it accepts.
#   smtp-sink.sh start DIR PORT   starts it detached; waits until the port answers
#   smtp-sink.sh stop DIR         stops it (by the pid in DIR/smtp-sink.pid) and waits for the port
# DIR/smtp-sink.out gets the running counters ("sess=N quit=N mesg=N", \r-separated).
# SMTP_SINK_OPTS adds options, e.g. fault injection: -r RCPT (4xx), -f DATA (5xx), -Q MAIL
# (421 + drop), -q DATA (drop), -w 2 (slow DATA), -a (no AUTH).
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }

alive() { # pid alive and not a zombie (pid 1 reaps late here: peers.md)
  local pid=$1
  [ -r "/proc/$pid/stat" ] || return 1
  local state
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ]
}
port_open() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && { exec 3>&- 3<&-; return 0; }; return 1; }

case $cmd in
start)
  port=${3:?PORT}
  sink=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
  [ -x "$sink" ] || { echo "smtp-sink is not installed: run scripts/peers/install.sh" >&2; exit 3; }
  mkdir -p "$dir"
  user=()
  [ "$(id -u)" -eq 0 ] && user=(-u nobody)
  # shellcheck disable=SC2086
  setsid -f sh -c 'echo $$ > "$1/smtp-sink.pid"; shift; exec "$@"' sh "$dir" \
    "$sink" -c "${user[@]}" ${SMTP_SINK_OPTS:-} "127.0.0.1:$port" 1000 \
    >"$dir/smtp-sink.out" 2>"$dir/smtp-sink.err" </dev/null
  for _ in $(seq 1 100); do
    if port_open "$port"; then exit 0; fi
    if [ -s "$dir/smtp-sink.pid" ] && ! alive "$(cat "$dir/smtp-sink.pid")"; then break; fi
    sleep 0.05
  done
  echo "smtp-sink did not start on 127.0.0.1:$port: $(cat "$dir/smtp-sink.err" 2>/dev/null)" >&2
  exit 1
  ;;
stop)
  [ -s "$dir/smtp-sink.pid" ] || exit 0
  pid=$(cat "$dir/smtp-sink.pid")
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
    alive "$pid" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/smtp-sink.pid"
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
