#!/usr/bin/env bash
# Baileys interop check (issue 7 item 5): a staylinked tenant (`staylinked run`, embedded store,
# linked by QR in `staylinked sim`) and a Baileys 6.7.21 companion (its own libsignal) exchange
# 1:1 and group messages both ways, across a SIGTERM + restart of the gateway from the same
# store. Every message exactly once, 0 decrypt failures, 0 retry receipts, signed webhooks.
# Bounded to 90 s inside the driver. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --bin staylinked
if [ ! -d scripts/interop/node_modules/baileys ]; then
  (cd scripts/interop && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
node scripts/interop/staylinked-messaging.mjs target/debug/staylinked
