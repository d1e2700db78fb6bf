// Measures Baileys 6.7.21 on the same codec operations as `cargo bench --bench codec`, on this machine.
// Usage: node scripts/bench-codec-baileys.mjs [seconds-per-row]   (needs scripts/interop/node_modules:
//        `cd scripts/interop && npm ci --ignore-scripts`). Prints one JSON object on stdout.
//
// Rows (identical inputs to benches/codec.rs; the sha256 of each encoded stanza is printed so the two
// benches can be checked to do the same work):
//   message_stanza   encode + decode of a typical 1:1 <message><enc/></message> stanza
//   prekey_upload    encode + decode of a 30-prekey upload iq
//   noise_encrypt_1k Noise transport encrypt (AES-256-GCM, counter IV) + frame of a 1 KiB payload
//   noise_decrypt_1k Noise transport decrypt of the same 1 KiB frame
import { createRequire } from 'node:module';
import crypto from 'node:crypto';

const require = createRequire(new URL('./interop/package.json', import.meta.url));
const B = await import(require.resolve('baileys'));
const { encodeBinaryNode, decodeBinaryNode, aesEncryptGCM, aesDecryptGCM } = B;
const seconds = Number(process.argv[2] || 2);

const fill = (n, b) => Buffer.alloc(n, b);
const be = (v, n) => { const b = Buffer.alloc(n); b.writeUIntBE(v, 0, n); return b; };

export const messageStanza = {
  tag: 'message',
  attrs: { to: '15551234567@s.whatsapp.net', id: '3EB0C431C26A1916D8A1', type: 'text', t: '1700000000' },
  content: [{ tag: 'enc', attrs: { v: '2', type: 'msg' }, content: fill(200, 0x5a) }],
};
const keys = [];
for (let i = 1; i <= 30; i++) {
  keys.push({ tag: 'key', attrs: {}, content: [
    { tag: 'id', attrs: {}, content: be(i, 3) },
    { tag: 'value', attrs: {}, content: fill(32, i) },
  ] });
}
export const prekeyUpload = {
  tag: 'iq',
  attrs: { xmlns: 'encrypt', type: 'set', to: '@s.whatsapp.net', id: '1234.5678-9' },
  content: [
    { tag: 'registration', attrs: {}, content: be(12345, 4) },
    { tag: 'type', attrs: {}, content: Buffer.from([5]) },
    { tag: 'identity', attrs: {}, content: fill(32, 0x11) },
    { tag: 'list', attrs: {}, content: keys },
    { tag: 'skey', attrs: {}, content: [
      { tag: 'id', attrs: {}, content: be(1, 3) },
      { tag: 'value', attrs: {}, content: fill(32, 0x22) },
      { tag: 'signature', attrs: {}, content: fill(64, 0x33) },
    ] },
  ],
};

// Runs `op` for ~`seconds` (after a short warm-up) and returns operations per second. Synchronous
// operations are timed without `await` so the promise machinery is not charged to Baileys;
// `decodeBinaryNode` is async in 6.7.21 (it may inflate), so the codec rows await it.
async function measure(op, isAsync = false) {
  const budget = BigInt(Math.round(seconds * 1e9));
  for (let i = 0; i < 2000; i++) { if (isAsync) await op(); else op(); }
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < budget) {
    if (isAsync) { for (let i = 0; i < 500; i++) await op(); } else { for (let i = 0; i < 500; i++) op(); }
    n += 500;
    elapsed = process.hrtime.bigint() - start;
  }
  return n / (Number(elapsed) / 1e9);
}

const sha = b => crypto.createHash('sha256').update(b).digest('hex');
const rows = {};
for (const [name, node] of [['message_stanza', messageStanza], ['prekey_upload', prekeyUpload]]) {
  const enc = encodeBinaryNode(node);
  rows[name] = {
    encoded_len: enc.length,
    encoded_sha256: sha(enc),
    ops_per_sec: await measure(async () => { await decodeBinaryNode(encodeBinaryNode(node)); }, true),
  };
}

// Transport phase exactly as Baileys' noise handler does it after finishInit: AES-256-GCM with the
// 12-byte IV (8 zero bytes + 32-bit BE counter), empty AAD, then the 3-byte length prefix.
const key = fill(32, 7);
const iv = n => { const b = Buffer.alloc(12); b.writeUInt32BE(n, 8); return b; };
const payload = fill(1024, 0x42);
const empty = Buffer.alloc(0);
let wc = 0;
rows.noise_encrypt_1k = {
  ops_per_sec: await measure(() => {
    const c = aesEncryptGCM(payload, key, iv(wc++), empty);
    const out = Buffer.alloc(3 + c.length);
    out.writeUIntBE(c.length, 0, 3);
    c.copy(out, 3);
    return out;
  }),
};
const sealed = aesEncryptGCM(payload, key, iv(0), empty);
rows.noise_decrypt_1k = { ops_per_sec: await measure(() => aesDecryptGCM(sealed, key, iv(0), empty)) };

process.stdout.write(JSON.stringify({
  generator: { baileys: require('baileys/package.json').version, node: process.version, seconds_per_row: seconds },
  rows,
}, null, 1) + '\n');
