#!/usr/bin/env bash
# The whole test suite, from a fresh clone, non-interactive and idempotent:
#   1. installs what the tests need (Baileys oracle via npm, cargo-fuzz) if missing,
#   2. starts the local Firestore emulator (127.0.0.1 only) for the store conformance suite,
#   3. checks formatting and clippy, runs every Rust test (unit, property, integration),
#   4. runs each fuzz target for a short bounded time (FUZZ_SECONDS, default 10; 0 skips),
#   5. runs the Baileys interop checks against `staylinked sim`.
# Exits non-zero as soon as anything fails. `.ci/run` calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "toolchain"
cargo --version
node --version

step "Baileys oracle (npm, registry only)"
if [ ! -d scripts/interop/node_modules/baileys ]; then
  (cd scripts/interop && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

if [ -x scripts/firestore-emulator.sh ]; then
  step "Firestore emulator"
  # A free port of our own unless one is given, so a developer's emulator on the default port
  # (or a second checkout running its tests) never collides with this run.
  if [ -z "${FIRESTORE_EMULATOR_PORT:-}" ]; then
    FIRESTORE_EMULATOR_PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
    export FIRESTORE_EMULATOR_PORT
  fi
  ./scripts/firestore-emulator.sh start
  eval "$(./scripts/firestore-emulator.sh env)"
  trap './scripts/firestore-emulator.sh stop >/dev/null 2>&1 || true' EXIT
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo test (unit, property, integration, benches in test mode)"
cargo test --all-targets
cargo test --doc --quiet

if [ "$FUZZ_SECONDS" != "0" ]; then
  step "fuzz targets (${FUZZ_SECONDS}s each)"
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
  fi
  for target in $(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^staylinked'); do
    mkdir -p "fuzz/corpus/$target"
    # A private copy of the committed seed corpus, so fuzzing never rewrites tracked files.
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$target/." "$work/"
    echo "fuzz: $target"
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$work" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=0 2>&1 | tail -n 3
    rm -rf "$work"
  done
fi

for check in scripts/interop/check-*.sh; do
  [ -e "$check" ] || continue
  step "interop: $check"
  "$check"
done

echo
echo "all checks passed in $(( $(date +%s) - started ))s"
