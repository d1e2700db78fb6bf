#!/usr/bin/env bash
# Smoke check of the Baileys side of `staylinked bench scale` (issue 9): 5 Baileys sockets
# provisioned through POST /admin/phones/{phone}/companions (no QR) are restored from their
# multi-file auth state and all reach `open` + the offline marker against `staylinked sim`.
# No timing assertions. Bounded: the script times out after 60 s. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --bin staylinked
if [ ! -d scripts/interop/node_modules/baileys ]; then
  (cd scripts/interop && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
work=$(mktemp -d)
target/debug/staylinked sim --listen 127.0.0.1:0 > "$work/ready" &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
[ -s "$work/ready" ] || { echo "check-bench-baileys: simulator did not start" >&2; exit 1; }
ready=$(head -n1 "$work/ready")
ws=$(node -e 'console.log(JSON.parse(process.argv[1]).ws_url)' "$ready")
admin=$(node -e 'console.log(JSON.parse(process.argv[1]).admin_url)' "$ready")
out=$(node scripts/interop/bench-baileys.mjs --ws-url "$ws" --admin-url "$admin" --tenants 5 \
  --idle-secs 0 --timeout-secs 60 --dir "$work/auth")
node -e '
  const r = JSON.parse(process.argv[1].trim().split("\n").pop());
  if (r.ready.count !== 5 || r.failed !== 0) { console.error("check-bench-baileys: FAILED", JSON.stringify(r)); process.exit(1); }
  console.log(`check-bench-baileys: OK: 5 Baileys sockets restored without QR, ready (open + offline marker)`);
' "$out"
