// Deterministic vectors for a Noise handshake whose server certificate chain is *properly signed*
// (libsignal curve.calculateSignature under a seeded root key), with Baileys' makeNoiseHandler as
// the client, plus XEdDSA signing vectors. Written for staylinked.
// Usage: cd scripts/interop && node vectors-signed.js > ../../tests/vectors/baileys-signed.json
// Output: one JSON object, all bytes as lowercase hex; two runs are byte-identical.
'use strict';
const crypto = require('crypto');
const libsignal = require('libsignal');
const curveJs = require('curve25519-js');

const hex = b => Buffer.from(b).toString('hex');
// deterministic X25519 key pair from a text seed: priv = clamp(sha256(seed)), pub = X25519(priv, 9)
const PRIV_DER = Buffer.from('302e020100300506032b656e04220420', 'hex');
function seededKeyPair(seed) {
  const priv = crypto.createHash('sha256').update(seed).digest();
  priv[0] &= 248; priv[31] &= 127; priv[31] |= 64;
  const k = crypto.createPrivateKey({ key: Buffer.concat([PRIV_DER, priv]), format: 'der', type: 'pkcs8' });
  const pub = crypto.createPublicKey(k).export({ format: 'der', type: 'spki' }).subarray(12);
  return { private: priv, public: Buffer.from(pub) };
}
const prefixed = pub => Buffer.concat([Buffer.from([5]), pub]);
const sha = b => crypto.createHash('sha256').update(b).digest();
const hk = (salt, ikm) => { const o = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, Buffer.alloc(0), 64)); return [o.subarray(0, 32), o.subarray(32)]; };
const iv = n => { const b = Buffer.alloc(12); b.writeUInt32BE(n, 8); return b; };
const seal = (k, n, pt, ad) => { const c = crypto.createCipheriv('aes-256-gcm', k, iv(n)); c.setAAD(ad); return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]); };
const dh = (priv, pub) => Buffer.from(libsignal.curve.calculateAgreement(prefixed(pub), priv));
const frame = b => Buffer.concat([Buffer.from([b.length >> 16, (b.length >> 8) & 255, b.length & 255]), b]);

(async () => {
  const B = await import('baileys');
  const { encodeBinaryNode, makeNoiseHandler, proto, NOISE_WA_HEADER } = B;
  const out = { generator: { script: 'scripts/interop/vectors-signed.js', baileys: require('baileys/package.json').version,
    libsignal: require('libsignal/package.json').version, node: process.version } };

  // ---------- 1. XEdDSA vectors ----------
  const signer = seededKeyPair('xeddsa-signer');
  const messages = ['', 'hello', 'WhatsApp certificate details', 'x'.repeat(200)].map(s => Buffer.from(s));
  out.xeddsa = { signer: { priv: hex(signer.private), pub: hex(signer.public) },
    note: 'deterministic = libsignal curve.calculateSignature (r = SHA512(a||M)); randomized = curve25519-js sign(sk, msg, random64) (r = SHA512(0xFE 0xFF*31 || a || M || random))',
    cases: messages.map((m, i) => {
      const det = libsignal.curve.calculateSignature(signer.private, m);
      const det2 = libsignal.curve.calculateSignature(signer.private, m);
      const random = crypto.createHash('sha512').update('xeddsa-random-' + i).digest();
      const rnd = Buffer.from(curveJs.sign(new Uint8Array(signer.private), new Uint8Array(m), new Uint8Array(random)));
      return { message_hex: hex(m), deterministic_sig: hex(det), deterministic_repeatable: det.equals(det2),
        random_hex: hex(random), randomized_sig: hex(rnd),
        libsignal_verifies_deterministic: curveJs.verify(new Uint8Array(signer.public), new Uint8Array(m), new Uint8Array(det)),
        libsignal_verifies_randomized: curveJs.verify(new Uint8Array(signer.public), new Uint8Array(m), new Uint8Array(rnd)) };
    }) };

  // ---------- 2. signed certificate chain ----------
  const root = seededKeyPair('signed-root'), inter = seededKeyPair('signed-intermediate');
  const cE = seededKeyPair('signed-client-ephemeral'), cS = seededKeyPair('signed-client-noise-static');
  const sE = seededKeyPair('signed-server-ephemeral'), sS = seededKeyPair('signed-server-static');
  const notBefore = 1700000000, notAfter = 1900000000;
  const D = proto.CertChain.NoiseCertificate.Details;
  const interDetails = Buffer.from(D.encode({ serial: 1, issuerSerial: 0, key: inter.public, notBefore, notAfter }).finish());
  const leafDetails = Buffer.from(D.encode({ serial: 2, issuerSerial: 1, key: sS.public, notBefore, notAfter }).finish());
  const interSig = libsignal.curve.calculateSignature(root.private, interDetails);
  const leafSig = libsignal.curve.calculateSignature(inter.private, leafDetails);
  const cert = Buffer.from(proto.CertChain.encode({ intermediate: { details: interDetails, signature: interSig },
    leaf: { details: leafDetails, signature: leafSig } }).finish());

  // ---------- 3. handshake: independent minimal server, Baileys client ----------
  const silent = { child() { return this; }, trace() {}, debug() {}, info() {}, warn() {}, error() {} };
  const cli = makeNoiseHandler({ keyPair: cE, NOISE_HEADER: NOISE_WA_HEADER, logger: silent });
  const clientHelloFrame = cli.encodeFrame(proto.HandshakeMessage.encode({ clientHello: { ephemeral: cE.public } }).finish());
  let h = Buffer.from('Noise_XX_25519_AESGCM_SHA256\0\0\0\0'), ck = h, k;
  const mh = d => { h = sha(Buffer.concat([h, d])); };
  mh(NOISE_WA_HEADER); mh(cE.public); mh(sE.public); [ck, k] = hk(ck, dh(sE.private, cE.public));
  const encStatic = seal(k, 0, sS.public, h); mh(encStatic); [ck, k] = hk(ck, dh(sS.private, cE.public));
  const encPayload = seal(k, 0, cert, h); mh(encPayload);
  const serverHello = Buffer.from(proto.HandshakeMessage.encode({ serverHello: { ephemeral: sE.public, static: encStatic, payload: encPayload } }).finish());
  const keyEnc = await cli.processHandshake(proto.HandshakeMessage.decode(serverHello), cS);
  const clientPayload = Buffer.from(proto.ClientPayload.encode({ username: 15550001111, device: 7, passive: false, pull: true,
    userAgent: { platform: 14, appVersion: { primary: 2, secondary: 3000, tertiary: 1023223821 }, mcc: '000', mnc: '000' },
    webInfo: { webSubPlatform: 0 }, connectType: 1, connectReason: 1, shards: [1, 300] }).finish());
  const payloadEnc = cli.encrypt(clientPayload);
  const clientFinishFrame = cli.encodeFrame(proto.HandshakeMessage.encode({ clientFinish: { static: keyEnc, payload: payloadEnc } }).finish());
  await cli.finishInit();
  const ping = encodeBinaryNode({ tag: 'iq', attrs: { id: '1', to: '@s.whatsapp.net', type: 'get', xmlns: 'w:p' }, content: [{ tag: 'ping', attrs: {} }] });
  const firstTransport = cli.encodeFrame(ping);
  // server side of split: mirror image (server write = k2); Baileys must decode it
  [ck, k] = hk(ck, dh(sE.private, cS.public)); // "se", as the server does after reading clientFinish.static
  const [k1, k2] = hk(ck, Buffer.alloc(0));
  const success = encodeBinaryNode({ tag: 'success', attrs: { t: '1700000001' } });
  const serverTransport = frame(seal(k2, 0, success, Buffer.alloc(0)));
  let decodedByBaileys = null;
  await cli.decodeFrame(serverTransport, f => { decodedByBaileys = f; });
  if (!decodedByBaileys || decodedByBaileys.tag !== 'success') throw new Error('Baileys did not decode the server transport frame');
  const ckIsConsistent = seal(k1, 0, ping, Buffer.alloc(0)).equals(firstTransport.subarray(3));
  if (!ckIsConsistent) throw new Error('server-side split disagrees with Baileys');

  out.noise = { prologue_hex: hex(NOISE_WA_HEADER),
    root: { priv: hex(root.private), pub: hex(root.public), serial: 0 }, intermediate: { priv: hex(inter.private), pub: hex(inter.public) },
    not_before: notBefore, not_after: notAfter,
    client_ephemeral: { priv: hex(cE.private), pub: hex(cE.public) }, client_static: { priv: hex(cS.private), pub: hex(cS.public) },
    server_ephemeral: { priv: hex(sE.private), pub: hex(sE.public) }, server_static: { priv: hex(sS.private), pub: hex(sS.public) },
    intermediate_details_hex: hex(interDetails), leaf_details_hex: hex(leafDetails), cert_chain_hex: hex(cert),
    client_payload_hex: hex(clientPayload), transport_plaintext_hex: hex(ping), server_transport_plaintext_hex: hex(success),
    client_hello_frame_hex: hex(clientHelloFrame), server_hello_frame_hex: hex(frame(serverHello)),
    client_finish_frame_hex: hex(clientFinishFrame), first_transport_frame_hex: hex(firstTransport),
    server_transport_frame_hex: hex(serverTransport),
    note: 'client = Baileys makeNoiseHandler; server hello built by this script; chain signed with libsignal curve.calculateSignature; server_transport_frame (server write key = split k2, counter 0) was decoded by Baileys' };

  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
})().catch(e => { console.error(e); process.exit(1); });
