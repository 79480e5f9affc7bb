#!/usr/bin/env bash
# A private PostgreSQL 15 for tests and benchmarks: its own cluster in DIR, on 127.0.0.1:PORT and
# a Unix socket in DIR/run, never the system's instance.
#
#   scripts/peers/postgres.sh start DIR PORT   # initdb on first start, then pg_ctl start; prints the URL
#   scripts/peers/postgres.sh stop DIR         # fast shutdown (the data stays: start again resumes it)
#   scripts/peers/postgres.sh url DIR          # postgres://USER@127.0.0.1:PORT/postgres
#
# Env: POSTGRES_USER (default mapispool), POSTGRES_PASSWORD (default mapispool): the superuser,
# which logs in over TCP with SCRAM-SHA-256 (over the socket without a password);
# POSTGRES_FSYNC (default on; off for throwaway test databases);
# POSTGRES_WATCH_PID: stop the server and delete DIR once that process has exited (a test
# process that cannot run a destructor for a server it shares between its tests).
#
# initdb and postgres refuse to run as root, and CI runs as root: then the cluster belongs to
# `nobody` (every parent of DIR must be o+x; DIR is made 0755). Otherwise it runs as the caller.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR PORT | stop DIR | url DIR"; }

BIN=${POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
USER_NAME=${POSTGRES_USER:-mapispool}

# Runs a PostgreSQL program as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env env LC_ALL=C.UTF-8 "$@"
  else
    env LC_ALL=C.UTF-8 "$@"
  fi
}

url() {
  [ $# -eq 1 ] || usage
  local dir=$1
  [ -f "$dir/port" ] || die "no cluster in $dir (start it first)"
  echo "postgres://$USER_NAME@127.0.0.1:$(cat "$dir/port")/postgres"
}

start() {
  [ $# -eq 2 ] || usage
  local dir=$1 port=$2
  [ -x "$BIN/initdb" ] ||
    die "PostgreSQL 15 is not installed ($BIN/initdb is missing); run scripts/peers/install.sh (or apt-get install postgresql-15)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  chmod 755 "$dir"
  if [ "$(id -u)" = 0 ]; then
    local p=$dir
    while [ "$p" != / ]; do
      setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$p" 2>/dev/null ||
        die "$p is not searchable by others (o+x); chmod 755 it (mktemp -d gives 0700)"
      p=$(dirname "$p")
    done
  fi
  mkdir -p "$dir/run"
  [ "$(id -u)" = 0 ] && chown nobody:nogroup "$dir/run"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    mkdir -p "$dir/data"
    [ "$(id -u)" = 0 ] && chown nobody:nogroup "$dir/data"
    chmod 700 "$dir/data"
    local pwfile="$dir/run/pwfile"
    printf '%s\n' "${POSTGRES_PASSWORD:-mapispool}" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown nobody:nogroup "$pwfile"
    chmod 600 "$pwfile"
    # --no-sync: a test cluster that a crash loses is made again.
    as_owner "$BIN/initdb" -D "$dir/data" -U "$USER_NAME" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$dir/initdb.log" 2>&1 ||
      { rm -f "$pwfile"; die "initdb failed: $(tail -5 "$dir/initdb.log")"; }
    rm -f "$pwfile"
    cat >>"$dir/data/postgresql.conf" <<CONF
# scripts/peers/postgres.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
fsync = ${POSTGRES_FSYNC:-on}
max_connections = 200
shared_buffers = 64MB
logging_collector = off
CONF
    echo "$port" >"$dir/port"
  fi
  [ "$(cat "$dir/port")" = "$port" ] || sed -i "s/^port = .*/port = $port/" "$dir/data/postgresql.conf"
  echo "$port" >"$dir/port"
  touch "$dir/postgres.log"
  [ "$(id -u)" = 0 ] && chown nobody:nogroup "$dir/postgres.log"
  # -w: returns once the server accepts connections. The server must not keep our stdout open.
  as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start </dev/null >"$dir/pg_ctl.out" 2>&1 ||
    die "PostgreSQL did not start on port $port: $(tail -5 "$dir/postgres.log")"
  if [ -n "${POSTGRES_WATCH_PID:-}" ]; then
    local watched=$POSTGRES_WATCH_PID
    setsid -f bash -c '
      while kill -0 "$1" 2>/dev/null; do sleep 1; done
      pid=$(head -1 "$2/data/postmaster.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null
      for _ in $(seq 1 100); do [ -f "$2/data/postmaster.pid" ] || break; sleep 0.1; done
      rm -rf "$2"' watch "$watched" "$dir" </dev/null >/dev/null 2>&1
  fi
  url "$dir"
}

stop() {
  [ $# -eq 1 ] || usage
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
    die "PostgreSQL in $dir did not stop; see $dir/postgres.log"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  url) shift; url "$@" ;;
  *) usage ;;
esac
