// Measures libsignal-node 6.0.0 (Baileys' 1:1 Signal) and Baileys 6.7.21's group cipher on the
// same operations as `cargo bench --bench signal`, on this machine.
// Usage: node scripts/bench-signal-libsignal.mjs [seconds-per-row]   (needs scripts/interop/node_modules:
//        `cd scripts/interop && npm ci --ignore-scripts`). Prints one JSON object on stdout.
//
// Rows (one element = one encrypt + one decrypt of a 100-byte message):
//   pairwise_100b           Alice encrypts on an established session, Bob decrypts (same chain)
//   pairwise_pingpong_100b  the sides alternate, so every decrypt performs a DH-ratchet step
//   group_100b              Baileys GroupCipher encrypt (signed) + decrypt (verified); note that
//                           Baileys skips one iteration per message, so its receiver also stores
//                           one skipped key per message (capped at 2000) — its real behaviour.
// The in-memory stores keep libsignal's objects (no serialisation), as Baileys' cache does between
// commits; our Rust rows additionally encode the updated records for the store.
import { createRequire } from 'node:module';

const require = createRequire(new URL('./interop/package.json', import.meta.url));
const libsignal = require('libsignal');
await import(require.resolve('baileys'));
const G = await import(require.resolve('baileys/lib/Signal/Group/index.js'));
const seconds = Number(process.argv[2] || 2);

const mkStore = (ident, regId, preKeys, signed) => {
  const sessions = {};
  return {
    getOurIdentity: async () => ident, getOurRegistrationId: async () => regId, isTrustedIdentity: async () => true,
    loadSession: async a => sessions[a], storeSession: async (a, r) => { sessions[a] = r; },
    loadPreKey: async id => preKeys[id], removePreKey: async id => { delete preKeys[id]; },
    loadSignedPreKey: async id => signed[id], saveIdentity: async () => false,
  };
};

// Runs `op` for ~`seconds` after a warm-up and returns operations per second.
async function measure(op) {
  const budget = BigInt(Math.round(seconds * 1e9));
  for (let i = 0; i < 500; i++) await op();
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < 100; i++) await op();
    n += 100;
    elapsed = process.hrtime.bigint() - start;
  }
  return n / (Number(elapsed) / 1e9);
}

async function established() {
  const { curve, keyhelper } = libsignal;
  const aliceId = curve.generateKeyPair(), bobId = curve.generateKeyPair();
  const pre = curve.generateKeyPair(), spk = curve.generateKeyPair();
  const sig = curve.calculateSignature(bobId.privKey, spk.pubKey);
  const aStore = mkStore(aliceId, keyhelper.generateRegistrationId(), {}, {});
  const bStore = mkStore(bobId, keyhelper.generateRegistrationId(), { 1: pre }, { 1: spk });
  const aAddr = new libsignal.ProtocolAddress('alice', 1), bAddr = new libsignal.ProtocolAddress('bob', 1);
  await new libsignal.SessionBuilder(aStore, bAddr).initOutgoing({ registrationId: 1, identityKey: bobId.pubKey,
    signedPreKey: { keyId: 1, publicKey: spk.pubKey, signature: sig }, preKey: { keyId: 1, publicKey: pre.pubKey } });
  const alice = new libsignal.SessionCipher(aStore, bAddr), bob = new libsignal.SessionCipher(bStore, aAddr);
  const m1 = await alice.encrypt(Buffer.from('hello'));
  await bob.decryptPreKeyWhisperMessage(Buffer.from(m1.body, 'binary'));
  const m2 = await bob.encrypt(Buffer.from('hi'));
  await alice.decryptWhisperMessage(Buffer.from(m2.body, 'binary'));
  return { alice, bob };
}

const plaintext = Buffer.alloc(100, 0x61);
const rows = {};
{
  const { alice, bob } = await established();
  rows.pairwise_100b = { ops_per_sec: await measure(async () => {
    const m = await alice.encrypt(plaintext);
    return bob.decryptWhisperMessage(Buffer.from(m.body, 'binary'));
  }) };
}
{
  const { alice, bob } = await established();
  const sides = [[alice, bob], [bob, alice]];
  let turn = 0;
  rows.pairwise_pingpong_100b = { ops_per_sec: await measure(async () => {
    const [s, r] = sides[turn++ & 1];
    const m = await s.encrypt(plaintext);
    return r.decryptWhisperMessage(Buffer.from(m.body, 'binary'));
  }) };
}
{
  const records = {};
  const store = prefix => ({ loadSenderKey: async n => records[prefix + n.toString()] || new G.SenderKeyRecord(),
    storeSenderKey: async (n, r) => { records[prefix + n.toString()] = r; } });
  const name = new G.SenderKeyName('120363025246125486@g.us', new libsignal.ProtocolAddress('alice', 1));
  const sender = store('s:'), receiver = store('r:');
  const skdm = await new G.GroupSessionBuilder(sender).create(name);
  await new G.GroupSessionBuilder(receiver).process(name, new G.SenderKeyDistributionMessage(null, null, null, null, skdm.serialize()));
  const enc = new G.GroupCipher(sender, name), dec = new G.GroupCipher(receiver, name);
  rows.group_100b = { ops_per_sec: await measure(async () => dec.decrypt(await enc.encrypt(plaintext))) };
}

process.stdout.write(JSON.stringify({
  generator: { libsignal: require('libsignal/package.json').version, baileys: require('baileys/package.json').version,
    node: process.version, seconds_per_row: seconds },
  rows,
}, null, 1) + '\n');
