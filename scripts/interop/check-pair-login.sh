#!/usr/bin/env bash
# Baileys interop check (issue 4): Baileys 6.7.21 pairs with `staylinked sim` by QR, reconnects
# after 515, reaches `open`, restarts from its saved auth state without a QR, and the simulator
# lists exactly one device. Bounded to 30 s inside the script. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --bin staylinked
if [ ! -d scripts/interop/node_modules/baileys ]; then
  (cd scripts/interop && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
node scripts/interop/pair-login.mjs target/debug/staylinked
