#!/usr/bin/env bash
# Manage Google's Cloud Firestore emulator for tests and local runs.
#
#   scripts/firestore-emulator.sh start   # start (idempotent), wait until ready, print the export line
#   scripts/firestore-emulator.sh stop    # stop (idempotent)
#   scripts/firestore-emulator.sh reset [project]  # delete all documents of a project (default: all known)
#   scripts/firestore-emulator.sh env     # print `export FIRESTORE_EMULATOR_HOST=127.0.0.1:PORT`
#   scripts/firestore-emulator.sh status  # exit 0 if running and ready
#
# Settings (env):
#   FIRESTORE_EMULATOR_JAR   jar path (default: the gcloud SDK component location below)
#   FIRESTORE_EMULATOR_PORT  port (default 8686)
#   FIRESTORE_EMULATOR_STATE state dir for pidfile and log (default: <repo>/target/firestore-emulator)
#   FIRESTORE_EMULATOR_READY_SECS  readiness deadline (default 60)
#   JAVA                     java binary (default: java on PATH; needs Java 17+)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JAR="${FIRESTORE_EMULATOR_JAR:-/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar}"
PORT="${FIRESTORE_EMULATOR_PORT:-8686}"
STATE="${FIRESTORE_EMULATOR_STATE:-$ROOT/target/firestore-emulator}"
READY_SECS="${FIRESTORE_EMULATOR_READY_SECS:-60}"
JAVA="${JAVA:-java}"
PIDFILE="$STATE/emulator.pid"
LOG="$STATE/emulator.log"
HOSTPORT="127.0.0.1:$PORT"

die() { echo "firestore-emulator: $*" >&2; exit 1; }

is_ready() { curl -fsS --max-time 2 "http://$HOSTPORT/" 2>/dev/null | grep -q '^Ok'; }

our_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  if our_pid >/dev/null && is_ready; then
    echo "firestore-emulator: already running on $HOSTPORT (pid $(our_pid))" >&2
    echo "export FIRESTORE_EMULATOR_HOST=$HOSTPORT"; return 0
  fi
  if is_ready; then
    die "port $PORT already answers but was not started by this script; stop that process or set FIRESTORE_EMULATOR_PORT"
  fi
  [[ -f "$JAR" ]] || die "emulator jar not found at $JAR
install it with:  gcloud components install cloud-firestore-emulator
(or point FIRESTORE_EMULATOR_JAR at cloud-firestore-emulator.jar)"
  command -v "$JAVA" >/dev/null || die "java not found (Java 17+ is required); set JAVA=/path/to/java"
  mkdir -p "$STATE"
  # A stale pidfile from a crashed run is replaced.
  rm -f "$PIDFILE"
  nohup "$JAVA" -cp "$JAR" com.google.cloud.datastore.emulator.firestore.CloudFirestore \
    --host 127.0.0.1 --port "$PORT" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + READY_SECS))
  until is_ready; do
    if ! our_pid >/dev/null; then
      tail -n 20 "$LOG" >&2 || true
      die "emulator exited during startup (log: $LOG)"
    fi
    if (( SECONDS >= deadline )); then
      tail -n 20 "$LOG" >&2 || true
      stop >/dev/null 2>&1 || true
      die "emulator not ready on $HOSTPORT after ${READY_SECS}s (log: $LOG)"
    fi
    sleep 0.2
  done
  echo "firestore-emulator: ready on $HOSTPORT (pid $(our_pid), log $LOG)" >&2
  echo "export FIRESTORE_EMULATOR_HOST=$HOSTPORT"
}

stop() {
  local pid
  if pid="$(our_pid)"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    echo "firestore-emulator: stopped (pid $pid)" >&2
  else
    echo "firestore-emulator: not running" >&2
  fi
  rm -f "$PIDFILE"
}

reset() {
  is_ready || die "emulator is not running on $HOSTPORT"
  local project="${1:-${GOOGLE_CLOUD_PROJECT:-staylinked-local}}"
  curl -fsS -X DELETE "http://$HOSTPORT/emulator/v1/projects/$project/databases/(default)/documents" >/dev/null \
    || die "reset of project $project failed"
  echo "firestore-emulator: reset project $project" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reset) shift; reset "${1:-}" ;;
  env) echo "export FIRESTORE_EMULATOR_HOST=$HOSTPORT" ;;
  status) if our_pid >/dev/null && is_ready; then echo "running on $HOSTPORT"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|reset [project]|env|status" >&2; exit 2 ;;
esac
