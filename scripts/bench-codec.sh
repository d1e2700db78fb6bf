#!/usr/bin/env bash
# Runs the codec benchmark on both sides, back to back on this machine, and writes
# bench-reports/codec.{json,md}: ops/s for staylinked (criterion median) and Baileys 6.7.21
# (scripts/bench-codec-baileys.mjs, same inputs) and the ratio. Target: >= 5x on every row.
#   scripts/bench-codec.sh [seconds-per-row]     (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
if [ ! -d scripts/interop/node_modules/baileys ]; then
  (cd scripts/interop && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
mkdir -p bench-reports
cargo bench --bench codec -- --warm-up-time 1 --measurement-time "$secs" >/dev/null
node scripts/bench-codec-baileys.mjs "$secs" > bench-reports/codec-baileys.json
node - "$secs" <<'JS'
const fs = require('fs');
const rows = ['message_stanza', 'prekey_upload', 'noise_encrypt_1k', 'noise_decrypt_1k'];
const baileys = JSON.parse(fs.readFileSync('bench-reports/codec-baileys.json', 'utf8'));
const out = { machine: { cpus: require('os').cpus().length, model: require('os').cpus()[0].model, load: require('os').loadavg() },
  baileys: baileys.generator, rows: {} };
let md = '| operation | staylinked ops/s | Baileys 6.7.21 ops/s | ratio |\n|---|---:|---:|---:|\n';
for (const r of rows) {
  const est = JSON.parse(fs.readFileSync(`target/criterion/codec/${r}/new/estimates.json`, 'utf8'));
  const ours = 1e9 / est.median.point_estimate;
  const theirs = baileys.rows[r].ops_per_sec;
  out.rows[r] = { staylinked_ops_per_sec: ours, baileys_ops_per_sec: theirs, ratio: ours / theirs };
  const f = n => Math.round(n).toLocaleString('en-US');
  md += `| ${r} | ${f(ours)} | ${f(theirs)} | ${(ours / theirs).toFixed(1)}x |\n`;
}
fs.writeFileSync('bench-reports/codec.json', JSON.stringify(out, null, 1) + '\n');
fs.writeFileSync('bench-reports/codec.md', md);
process.stdout.write(md);
JS
