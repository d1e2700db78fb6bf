#!/usr/bin/env bash
# Baileys interop check (issue 7, simulator): two Baileys 6.7.21 companions paired with
# `staylinked sim` exchange 1:1 messages both ways, talk to the simulated phones (phone send,
# phone inbox), send and receive a group message, and receive messages queued while offline.
# Bounded to 90 s inside the driver. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --bin staylinked
if [ ! -d scripts/interop/node_modules/baileys ]; then
  (cd scripts/interop && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
node scripts/interop/messaging.mjs target/debug/staylinked
