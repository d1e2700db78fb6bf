// "libsignal decrypts ours": replays a conversation produced by staylinked's wa::signal
// (`cargo run --example signal_vectors`) with libsignal-node 6.0.0 on every side and Baileys'
// group cipher for sender keys. For each event:
//   init     libsignal runs SessionBuilder.initOutgoing with Bob's bundle (same fixed keys);
//   encrypt  libsignal encrypts the same plaintext and must produce our bytes exactly;
//   decrypt  libsignal decrypts OUR ciphertext and must get the plaintext.
// Group: Baileys processes our SKDM and decrypts our SenderKeyMessages out of order; a second
// receiver that only got our mid-chain SKDM decrypts the later ones. Exits non-zero on any failure.
// Usage: node check-signal.js <ours.json>
'use strict';
const fs = require('fs');
const libsignal = require('libsignal');

const { seededKeyPair, seedRatchetKeys, mkStore } = require('./signal-fixtures.js');
const ratchetCount = seedRatchetKeys();
const fail = msg => { console.error('check-signal: FAIL: ' + msg); process.exit(1); };

(async () => {
  const ours = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  await import('baileys');
  const G = await import('baileys/lib/Signal/Group/index.js');
  const kp = seededKeyPair;
  const alice = kp('alice-identity'), bob = kp('bob-identity'), carol = kp('carol-identity');
  const bobPre = kp('bob-prekey-1'), bobSigned = kp('bob-signed-prekey-1');
  const bobSig = libsignal.curve.calculateSignature(bob.privKey, bobSigned.pubKey);
  const reg = { alice: 1111, bob: 2222, carol: 3333 };
  const addr = { alice: new libsignal.ProtocolAddress('15550001111', 7), bob: new libsignal.ProtocolAddress('15550002222', 0),
    carol: new libsignal.ProtocolAddress('15550003333', 2) };
  const stores = { alice: mkStore(alice, reg.alice, {}, {}), bob: mkStore(bob, reg.bob, { 1: bobPre }, { 1: bobSigned }),
    carol: mkStore(carol, reg.carol, {}, {}) };
  const bodies = {};
  let decrypted = 0, matched = 0;
  for (const [i, ev] of ours.events.entries()) {
    const where = `event ${i} (${ev.op} ${ev.id || ''} by ${ev.actor})`;
    if (ev.op === 'init') {
      await new libsignal.SessionBuilder(stores[ev.actor], addr[ev.peer]).initOutgoing({ registrationId: reg.bob, identityKey: bob.pubKey,
        signedPreKey: { keyId: 1, publicKey: bobSigned.pubKey, signature: bobSig },
        preKey: ev.one_time_prekey ? { keyId: 1, publicKey: bobPre.pubKey } : undefined });
    } else if (ev.op === 'encrypt') {
      const m = await new libsignal.SessionCipher(stores[ev.actor], addr[ev.peer]).encrypt(Buffer.from(ev.plaintext));
      const body = Buffer.from(m.body, 'binary').toString('hex');
      if (m.type !== ev.type || body !== ev.body_hex) fail(`${where}: libsignal's ciphertext differs from ours`);
      matched++;
      bodies[ev.id] = { type: ev.type, body: Buffer.from(ev.body_hex, 'hex'), plaintext: ev.plaintext };
    } else if (ev.op === 'decrypt') {
      const b = bodies[ev.id];
      const c = new libsignal.SessionCipher(stores[ev.actor], addr[ev.peer]);
      let pt;
      try {
        pt = b.type === 3 ? await c.decryptPreKeyWhisperMessage(b.body) : await c.decryptWhisperMessage(b.body);
      } catch (e) { fail(`${where}: libsignal rejects our message: ${e.message}`); }
      if (pt.toString() !== b.plaintext) fail(`${where}: wrong plaintext`);
      decrypted++;
    } else fail(`${where}: unknown op`);
  }
  if (ratchetCount() !== ours.ratchet_keys_generated) fail(`libsignal generated ${ratchetCount()} ratchet keys, ours ${ours.ratchet_keys_generated}`);
  if (await stores.bob.loadPreKey(1) !== undefined) fail('one-time prekey 1 was not consumed');

  // Group: our SKDM + SenderKeyMessages through Baileys' GroupCipher.
  const g = ours.group;
  const name = new G.SenderKeyName(g.group_id, new libsignal.ProtocolAddress(g.sender.name, g.sender.device));
  const mkSk = () => { const m = {}; return { loadSenderKey: async n => m[n.toString()] || new G.SenderKeyRecord(),
    storeSenderKey: async (n, r) => { m[n.toString()] = r; } }; };
  const full = mkSk(), mid = mkSk();
  await new G.GroupSessionBuilder(full).process(name, new G.SenderKeyDistributionMessage(null, null, null, null, Buffer.from(g.skdm_hex, 'hex')));
  await new G.GroupSessionBuilder(mid).process(name, new G.SenderKeyDistributionMessage(null, null, null, null, Buffer.from(g.skdm_mid_hex, 'hex')));
  let groupOk = 0;
  for (const i of g.receive_order) {
    const m = g.messages[i];
    const body = Buffer.from(m.body_hex, 'hex');
    for (const [label, store] of [['full', full], ['mid', mid]]) {
      if (label === 'mid' && m.iteration < g.skdm_mid_iteration) continue;
      let pt;
      try { pt = await new G.GroupCipher(store, name).decrypt(body); } catch (e) { fail(`group ${label} message ${i}: ${e.message}`); }
      if (pt.toString() !== m.plaintext) fail(`group ${label} message ${i}: wrong plaintext`);
      groupOk++;
    }
  }
  // A tampered signature must be refused.
  const bad = Buffer.from(g.messages[0].body_hex, 'hex'); bad[bad.length - 3] ^= 1;
  const fresh = mkSk();
  await new G.GroupSessionBuilder(fresh).process(name, new G.SenderKeyDistributionMessage(null, null, null, null, Buffer.from(g.skdm_hex, 'hex')));
  let refused = false;
  try { await new G.GroupCipher(fresh, name).decrypt(bad); } catch { refused = true; }
  if (!refused) fail('Baileys accepted a tampered SenderKeyMessage');
  console.log(`check-signal: ok: libsignal reproduced ${matched} of our ciphertexts, decrypted ${decrypted} of ours; Baileys decrypted ${groupOk} of our group messages`);
})().catch(e => fail(e.stack || String(e)));
