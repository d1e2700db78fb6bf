#!/usr/bin/env bash
# "libsignal decrypts ours" (issue 7): staylinked's wa::signal writes a pairwise conversation
# (pkmsgs, out-of-order delivery, several ratchet turns, a session without one-time prekey) and
# group sender-key messages (`cargo run --example signal_vectors`); libsignal-node 6.0.0 and
# Baileys' group cipher decrypt every one of them (scripts/interop/check-signal.js). Offline,
# deterministic, a few seconds. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -d scripts/interop/node_modules/baileys ]; then
  (cd scripts/interop && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
mkdir -p target
cargo run --quiet --example signal_vectors > target/signal-ours.json
node scripts/interop/check-signal.js target/signal-ours.json
