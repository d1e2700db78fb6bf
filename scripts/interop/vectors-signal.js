// libsignal-node (Baileys' dependency) Signal conversation vectors for wa::signal.
// Usage: node vectors-signal.js > ../../tests/vectors/libsignal-signal.json   (deterministic output)
//
// Every key libsignal generates is replaced by seededKeyPair("ratchet-N"), N = 0,1,2,... in global
// generation order (as in vectors.js), so a Rust replay that draws keys in the same order can check
// byte equality. Output: { generator, parties, events:[...], group:{...} }, bytes as lowercase hex.
//   events: {op:"init", actor, peer, one_time_prekey}            actor runs SessionBuilder.initOutgoing
//           {op:"encrypt", actor, peer, id, plaintext, type, body_hex}
//           {op:"decrypt", actor, peer, id}                       actor decrypts the body of message `id`
//   group:  Baileys' GroupSessionBuilder/GroupCipher (libsignal-node has no group cipher): an SKDM,
//           SenderKeyMessages (Baileys skips one iteration per message after the first), a mid-chain SKDM.
'use strict';
const crypto = require('crypto');
const libsignal = require('libsignal');

const hex = b => Buffer.from(b).toString('hex');
const { seededKeyPair, seedRatchetKeys, mkStore } = require('./signal-fixtures.js');
const ratchetCount = seedRatchetKeys();

(async () => {
  await import('baileys'); // Baileys' group modules need the package index loaded first (circular import)
  const G = await import('baileys/lib/Signal/Group/index.js');
  const kp = s => seededKeyPair(s);
  const alice = kp('alice-identity'), bob = kp('bob-identity'), carol = kp('carol-identity');
  const bobPre = kp('bob-prekey-1'), bobSigned = kp('bob-signed-prekey-1');
  const bobSig = libsignal.curve.calculateSignature(bob.privKey, bobSigned.pubKey);
  const reg = { alice: 1111, bob: 2222, carol: 3333 };
  const addr = { alice: new libsignal.ProtocolAddress('15550001111', 7), bob: new libsignal.ProtocolAddress('15550002222', 0),
    carol: new libsignal.ProtocolAddress('15550003333', 2) };
  const stores = { alice: mkStore(alice, reg.alice, {}, {}), bob: mkStore(bob, reg.bob, { 1: bobPre }, { 1: bobSigned }),
    carol: mkStore(carol, reg.carol, {}, {}) };
  const bodies = {}, events = [];

  const init = async (actor, peer, oneTime) => {
    await new libsignal.SessionBuilder(stores[actor], addr[peer]).initOutgoing({ registrationId: reg.bob, identityKey: bob.pubKey,
      signedPreKey: { keyId: 1, publicKey: bobSigned.pubKey, signature: bobSig }, preKey: oneTime ? { keyId: 1, publicKey: bobPre.pubKey } : undefined });
    events.push({ op: 'init', actor, peer, one_time_prekey: oneTime });
  };
  const enc = async (actor, peer, id) => {
    const plaintext = `${id}: message from ${actor} to ${peer}`;
    const m = await new libsignal.SessionCipher(stores[actor], addr[peer]).encrypt(Buffer.from(plaintext));
    bodies[id] = { type: m.type, body: Buffer.from(m.body, 'binary'), plaintext };
    events.push({ op: 'encrypt', actor, peer, id, plaintext, type: m.type, body_hex: hex(bodies[id].body) });
  };
  const dec = async (actor, peer, id) => {
    const c = new libsignal.SessionCipher(stores[actor], addr[peer]);
    const b = bodies[id];
    const pt = b.type === 3 ? await c.decryptPreKeyWhisperMessage(b.body) : await c.decryptWhisperMessage(b.body);
    if (pt.toString() !== b.plaintext) throw new Error(`decrypt ${id}: got ${pt}`);
    events.push({ op: 'decrypt', actor, peer, id });
  };

  // Alice -> Bob with one-time prekey 1: three pkmsgs delivered 1,3,2; several ratchet turns with
  // out-of-order delivery and one message delivered late across a ratchet step.
  await init('alice', 'bob', true);
  await enc('alice', 'bob', 'a1'); await enc('alice', 'bob', 'a2'); await enc('alice', 'bob', 'a3');
  await dec('bob', 'alice', 'a1'); await dec('bob', 'alice', 'a3'); await dec('bob', 'alice', 'a2');
  await enc('bob', 'alice', 'b1'); await enc('bob', 'alice', 'b2'); await enc('bob', 'alice', 'b3');
  await dec('alice', 'bob', 'b2'); await dec('alice', 'bob', 'b1');
  await enc('alice', 'bob', 'a4'); await enc('alice', 'bob', 'a5');
  await dec('bob', 'alice', 'a5'); await dec('bob', 'alice', 'a4');
  await dec('alice', 'bob', 'b3');
  await enc('bob', 'alice', 'b4'); await enc('bob', 'alice', 'b5'); await enc('bob', 'alice', 'b6');
  await dec('alice', 'bob', 'b6');
  await enc('alice', 'bob', 'a6');
  await dec('bob', 'alice', 'a6');
  await dec('alice', 'bob', 'b4');
  await enc('bob', 'alice', 'b7');
  await dec('alice', 'bob', 'b7'); await dec('alice', 'bob', 'b5');
  for (let i = 7; i <= 12; i++) await enc('alice', 'bob', 'a' + i);
  for (const i of [12, 8, 7, 11, 9, 10]) await dec('bob', 'alice', 'a' + i);
  // Carol -> Bob without a one-time prekey (4-DH secret, preKeyId absent).
  await init('carol', 'bob', false);
  await enc('carol', 'bob', 'c1');
  await dec('bob', 'carol', 'c1');
  await enc('bob', 'carol', 'd1');
  await dec('carol', 'bob', 'd1');
  await enc('carol', 'bob', 'c2');
  await dec('bob', 'carol', 'c2');

  // ---------- group: Alice's sender key, Baileys' group cipher ----------
  const groupId = '120363025246125486@g.us';
  const senderKeys = {};
  const skStore = { loadSenderKey: async n => senderKeys[n.toString()] || new G.SenderKeyRecord(),
    storeSenderKey: async (n, r) => { senderKeys[n.toString()] = r; } };
  const name = new G.SenderKeyName(groupId, addr.alice);
  const signing = kp('group-signing-key');
  const chainKey = crypto.createHash('sha256').update('group-chain-key').digest();
  const keyId = 1234567;
  const rec = new G.SenderKeyRecord();
  rec.setSenderKeyState(keyId, 0, chainKey, { public: signing.pubKey, private: signing.privKey });
  await skStore.storeSenderKey(name, rec);
  const builder = new G.GroupSessionBuilder(skStore);
  const skdm = await builder.create(name);
  const cipher = new G.GroupCipher(skStore, name);
  const gmsgs = [];
  const groupEnc = async i => {
    const plaintext = `group message ${i}`;
    const body = await cipher.encrypt(Buffer.from(plaintext));
    const iteration = new G.SenderKeyMessage(null, null, null, null, body).getIteration();
    gmsgs.push({ iteration, plaintext, body_hex: hex(body) });
  };
  for (let i = 0; i < 5; i++) await groupEnc(i);
  const skdmMid = await builder.create(name);
  await groupEnc(5); // the first message a receiver that only got skdm_mid can read
  // Self-check with a second Baileys receiver: out-of-order decrypt works.
  const rStore = { loadSenderKey: async n => senderKeys['r:' + n.toString()] || new G.SenderKeyRecord(),
    storeSenderKey: async (n, r) => { senderKeys['r:' + n.toString()] = r; } };
  await new G.GroupSessionBuilder(rStore).process(name, new G.SenderKeyDistributionMessage(null, null, null, null, skdm.serialize()));
  const order = [2, 0, 4, 1, 3];
  for (const i of order) {
    const pt = await new G.GroupCipher(rStore, name).decrypt(Buffer.from(gmsgs[i].body_hex, 'hex'));
    if (pt.toString() !== gmsgs[i].plaintext) throw new Error('group self-check');
  }

  const pair = k => ({ priv: hex(k.privKey), pub: hex(k.pubKey) });
  const out = {
    generator: { baileys: require('baileys/package.json').version, libsignal: require('libsignal/package.json').version, node: process.version },
    ratchet_key_seeds: 'seededKeyPair("ratchet-N"), N = 0,1,2,... in global generation order across all parties',
    parties: { alice_identity: pair(alice), alice_registration_id: reg.alice, bob_identity: pair(bob), bob_registration_id: reg.bob,
      carol_identity: pair(carol), carol_registration_id: reg.carol, bob_prekey_1: pair(bobPre),
      bob_signed_prekey_1: { ...pair(bobSigned), signature: hex(bobSig) },
      addresses: Object.fromEntries(Object.entries(addr).map(([k, a]) => [k, { name: a.id, device: a.deviceId }])) },
    events,
    ratchet_keys_generated: ratchetCount(),
    group: { group_id: groupId, sender: 'alice', key_id: keyId, chain_key: hex(chainKey), signing_key: pair(signing),
      skdm_hex: hex(skdm.serialize()), messages: gmsgs, skdm_mid_hex: hex(skdmMid.serialize()), skdm_mid_iteration: skdmMid.getIteration(), baileys_receive_order: order,
      note: 'Baileys encrypts at iteration 0, then current+1 (skipping one); SKDM mid-chain hands over the current chain' },
  };
  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
})().catch(e => { console.error(e); process.exit(1); });
