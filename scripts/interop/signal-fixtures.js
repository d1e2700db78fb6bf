// Shared fixtures of the libsignal scripts (vectors-signal.js, check-signal.js): deterministic key
// pairs, seeded ratchet keys and a minimal in-memory libsignal store. CommonJS.
'use strict';
const crypto = require('crypto');
const libsignal = require('libsignal');

const PRIV_DER = Buffer.from('302e020100300506032b656e04220420', 'hex');

// X25519 key pair from a text seed: priv = clamp(sha256(seed)); pub in libsignal's 0x05-prefixed form.
function seededKeyPair(seed) {
  const priv = crypto.createHash('sha256').update(seed).digest();
  priv[0] &= 248; priv[31] &= 127; priv[31] |= 64;
  const k = crypto.createPrivateKey({ key: Buffer.concat([PRIV_DER, priv]), format: 'der', type: 'pkcs8' });
  const pub = crypto.createPublicKey(k).export({ format: 'der', type: 'spki' }).subarray(12);
  return { pubKey: Buffer.concat([Buffer.from([5]), pub]), privKey: priv };
}

// Makes every key pair libsignal generates deterministic: seededKeyPair('ratchet-N'), N = 0, 1, ...
// Returns a function giving how many ratchet keys were generated so far.
function seedRatchetKeys() {
  let ctr = 0;
  libsignal.curve.generateKeyPair = () => seededKeyPair('ratchet-' + (ctr++));
  return () => ctr;
}

function mkStore(ident, regId, preKeys, signed) {
  const sessions = {};
  return {
    getOurIdentity: async () => ident, getOurRegistrationId: async () => regId, isTrustedIdentity: async () => true,
    loadSession: async a => sessions[a], storeSession: async (a, r) => { sessions[a] = r; },
    loadPreKey: async id => preKeys[id], removePreKey: async id => { delete preKeys[id]; },
    loadSignedPreKey: async id => signed[id], saveIdentity: async () => false,
  };
}

module.exports = { seededKeyPair, seedRatchetKeys, mkStore };
