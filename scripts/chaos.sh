#!/usr/bin/env bash
# Sleep/wake + deploy-overlap chaos against real processes (issue 9).
#
#   scripts/chaos.sh                         # 50 tenants x 200 cycles, embedded store, release build
#   scripts/chaos.sh --store firestore       # same on the Firestore emulator (started if needed)
#   scripts/chaos.sh --tenants 5 --cycles 20 --seed 9
#   scripts/chaos.sh --messages false        # no message traffic (default: both ways, 0 lost / 0 duplicated / 0 decrypt failures)
#
# Starts `staylinked sim` and then gateway processes (`staylinked run`) as children, links every
# tenant by QR through the simulator, and runs seeded cycles of SIGTERM, SIGKILL and overlapping
# starts against one store. Checks after every cycle: 0 re-pairs, exactly 1 linked device per
# phone, 0 `replaced` (440), every tenant `connected` again without a QR, lease epochs only
# increase; at the end the store holds every tenant's creds with its lease released. Messages go
# both ways during the cycles (a simulated phone → tenants; tenants → the phone through the message
# API when the build has it): every one arrives exactly once, 0 decrypt failures.
# Writes bench-reports/chaos.{json,md}; exits non-zero on any violation. Every wait has a deadline.
#
# Env: CHAOS_PROFILE=release|debug (default release), CHAOS_GATEWAY_LOG (RUST_LOG of the
# gateways, default info; logs in target/chaos/logs/).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${CHAOS_PROFILE:-release}
store=embedded
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store=$2; args+=("$1" "$2"); shift 2 ;;
    --store=*) store=${1#--store=}; args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ "$profile" = release ]; then
  cargo build --release --quiet --bin staylinked
  bin=target/release/staylinked
else
  cargo build --quiet --bin staylinked
  bin=target/debug/staylinked
fi

stop_emulator=
if [ "$store" = firestore ] && [ -z "${FIRESTORE_EMULATOR_HOST:-}" ]; then
  # Our own emulator on a free port (never the one another process uses), stopped on exit.
  FIRESTORE_EMULATOR_PORT=${FIRESTORE_EMULATOR_PORT:-$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')}
  FIRESTORE_EMULATOR_STATE=${FIRESTORE_EMULATOR_STATE:-target/chaos/firestore-emulator}
  export FIRESTORE_EMULATOR_PORT FIRESTORE_EMULATOR_STATE
  ./scripts/firestore-emulator.sh start >/dev/null
  eval "$(./scripts/firestore-emulator.sh env)"
  stop_emulator=1
fi
cleanup() { if [ -n "$stop_emulator" ]; then ./scripts/firestore-emulator.sh stop >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

"$bin" chaos --bin "$bin" "${args[@]}"
