//! Handshake tests: Baileys golden vectors (unsigned and signed chains), in-memory round trips,
//! every typed failure, and "arbitrary bytes never panic" properties.

use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::wa::frame;
use crate::wa::noise::cert::{CertChainBuilder, CertError, CertRole};
use crate::wa::noise::keys::PrivateKey;
use crate::wa::noise::testing::SeededRng;
use crate::wa::noise::vectors::{arr32, bytes, key_pair, load};

/// Strips the 3-byte length prefix of one whole frame.
fn unframe(f: &[u8]) -> &[u8] {
    let len = usize::from(f[0]) << 16 | usize::from(f[1]) << 8 | usize::from(f[2]);
    assert_eq!(f.len(), len + 3);
    &f[3..]
}

fn client_hello_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = frame::intro_header(None).unwrap();
    frame::encode_frame(payload, &mut out).unwrap();
    out
}

/// Baileys golden vector (unsigned chain): our initiator reproduces client hello, client finish
/// and the first transport frame byte for byte; real verification rejects the all-zero
/// signatures with a typed error.
#[test]
fn baileys_vector_initiator() {
    let v = load("baileys.json");
    let n = &v["noise"];
    let (hs, hello) =
        ClientHandshake::start(key_pair(n, "client_static"), key_pair(n, "client_ephemeral"), &frame::INTRO);
    assert_eq!(hex::encode(client_hello_frame(&hello)), n["client_hello_frame_hex"]);
    let server_hello = bytes(n, "server_hello_frame_hex");
    let received = hs.handle(unframe(&server_hello)).unwrap();
    assert_eq!(received.server_static(), &arr32(&n["server_static"], "pub"));
    assert_eq!(received.cert_chain().encode_to_vec(), bytes(n, "cert_chain_hex"));

    // Real verification must fail on the zero signatures, whatever the anchor.
    let (hs2, _) =
        ClientHandshake::start(key_pair(n, "client_static"), key_pair(n, "client_ephemeral"), &frame::INTRO);
    let err =
        hs2.handle_and_verify(unframe(&server_hello), &TrustAnchor::whatsapp(), 1_800_000_000).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::Certificate { source: CertError::BadSignature { role: CertRole::Intermediate } }
    );

    let finished = received.accept_unverified_for_vectors().finish(&bytes(n, "client_payload_hex")).unwrap();
    assert_eq!(hex::encode(frame::frame(&finished.message).unwrap()), n["client_finish_frame_hex"]);
    let mut transport = finished.transport;
    let ping = hex::decode("00f80a19085511fa000304291657f801f80156").unwrap();
    let ct = transport.send.encrypt(&ping).unwrap();
    assert_eq!(hex::encode(frame::frame(&ct).unwrap()), n["first_transport_frame_hex"]);
}

/// Baileys golden vector (unsigned chain): our responder with the vector's keys reproduces the
/// server hello, accepts Baileys' client finish and decrypts its payload and first frame.
#[test]
fn baileys_vector_responder() {
    let v = load("baileys.json");
    let n = &v["noise"];
    let hs = ServerHandshake::start(
        key_pair(n, "server_static"),
        key_pair(n, "server_ephemeral"),
        bytes(n, "cert_chain_hex"),
        &frame::INTRO,
    );
    let hello = bytes(n, "client_hello_frame_hex");
    let (hs, server_hello) = hs.handle(unframe(&hello[4..])).unwrap();
    assert_eq!(hex::encode(frame::frame(&server_hello).unwrap()), n["server_hello_frame_hex"]);
    let done = hs.handle(unframe(&bytes(n, "client_finish_frame_hex"))).unwrap();
    assert_eq!(done.client_static, arr32(&n["client_static"], "pub"));
    assert_eq!(hex::encode(&done.client_payload), n["client_payload_hex"]);
    let mut transport = done.transport;
    let pt = transport.recv.decrypt(unframe(&bytes(n, "first_transport_frame_hex"))).unwrap();
    assert_eq!(hex::encode(pt), "00f80a19085511fa000304291657f801f80156");
}

/// Signed-chain vector: with full verification against the vector's root, our initiator
/// reproduces every Baileys frame and decrypts the server's first transport frame.
#[test]
fn signed_vector_initiator_verifies() {
    let v = load("baileys-signed.json");
    let n = &v["noise"];
    let anchor = TrustAnchor { root_public: arr32(&n["root"], "pub"), root_serial: 0 };
    let now = n["not_before"].as_u64().unwrap() + 1000;
    let (hs, hello) =
        ClientHandshake::start(key_pair(n, "client_static"), key_pair(n, "client_ephemeral"), &frame::INTRO);
    assert_eq!(hex::encode(client_hello_frame(&hello)), n["client_hello_frame_hex"]);
    let send = hs.handle_and_verify(unframe(&bytes(n, "server_hello_frame_hex")), &anchor, now).unwrap();
    let chain = *send.verified_chain().unwrap();
    assert_eq!(chain.leaf.key, arr32(&n["server_static"], "pub"));
    assert_eq!(chain.intermediate.key, arr32(&n["intermediate"], "pub"));
    assert_eq!((chain.intermediate.serial, chain.leaf.serial, chain.leaf.issuer_serial), (1, 2, 1));
    assert_eq!(chain.leaf.not_after, n["not_after"].as_u64().unwrap());
    let finished = send.finish(&bytes(n, "client_payload_hex")).unwrap();
    assert_eq!(hex::encode(frame::frame(&finished.message).unwrap()), n["client_finish_frame_hex"]);
    let mut t = finished.transport;
    let ct = t.send.encrypt(&bytes(n, "transport_plaintext_hex")).unwrap();
    assert_eq!(hex::encode(frame::frame(&ct).unwrap()), n["first_transport_frame_hex"]);
    let pt = t.recv.decrypt(unframe(&bytes(n, "server_transport_frame_hex"))).unwrap();
    assert_eq!(pt, bytes(n, "server_transport_plaintext_hex"));

    // The same transcript outside the validity window is refused.
    let (hs, _) =
        ClientHandshake::start(key_pair(n, "client_static"), key_pair(n, "client_ephemeral"), &frame::INTRO);
    let late = n["not_after"].as_u64().unwrap() + 1;
    let err = hs.handle_and_verify(unframe(&bytes(n, "server_hello_frame_hex")), &anchor, late).unwrap_err();
    assert!(matches!(
        err,
        HandshakeError::Certificate { source: CertError::Expired { role: CertRole::Intermediate, .. } }
    ));
}

/// Signed-chain vector: our responder, fed Baileys' client frames, reproduces the server hello,
/// completes, decrypts the ClientPayload and the first transport frame, and its first server
/// frame is the one Baileys decoded.
#[test]
fn signed_vector_responder() {
    let v = load("baileys-signed.json");
    let n = &v["noise"];
    let hs = ServerHandshake::start(
        key_pair(n, "server_static"),
        key_pair(n, "server_ephemeral"),
        bytes(n, "cert_chain_hex"),
        &frame::INTRO,
    );
    let mut dec = frame::FrameDecoder::server(frame::DEFAULT_MAX_FRAME);
    dec.push(&bytes(n, "client_hello_frame_hex"));
    let hello = dec.next_frame().unwrap().unwrap();
    let (hs, server_hello) = hs.handle(&hello).unwrap();
    assert_eq!(hex::encode(frame::frame(&server_hello).unwrap()), n["server_hello_frame_hex"]);
    let done = hs.handle(unframe(&bytes(n, "client_finish_frame_hex"))).unwrap();
    assert_eq!(done.client_static, arr32(&n["client_static"], "pub"));
    assert_eq!(done.client_payload, bytes(n, "client_payload_hex"));
    let payload = crate::wa::proto::ClientPayload::decode(done.client_payload.as_slice()).unwrap();
    assert_eq!(payload.username, Some(15_550_001_111));
    assert_eq!(payload.shards, vec![1, 300]);
    let mut t = done.transport;
    let pt = t.recv.decrypt(unframe(&bytes(n, "first_transport_frame_hex"))).unwrap();
    assert_eq!(pt, bytes(n, "transport_plaintext_hex"));
    let ct = t.send.encrypt(&bytes(n, "server_transport_plaintext_hex")).unwrap();
    assert_eq!(hex::encode(frame::frame(&ct).unwrap()), n["server_transport_frame_hex"]);
}

/// Our builder, signing deterministically with the vector's root and intermediate keys,
/// reproduces the libsignal-signed chain byte for byte.
#[test]
fn builder_reproduces_signed_chain() {
    let v = load("baileys-signed.json");
    let n = &v["noise"];
    let root = PrivateKey::from_bytes(arr32(&n["root"], "priv"));
    let nb = n["not_before"].as_u64().unwrap();
    let na = n["not_after"].as_u64().unwrap();
    let chain = CertChainBuilder::new().validity(nb, na).build_deterministic(
        &root,
        &key_pair(n, "intermediate"),
        &arr32(&n["server_static"], "pub"),
    );
    assert_eq!(hex::encode(chain.encode_to_vec()), n["cert_chain_hex"]);
}

/// A simulated server: root, intermediate and server keys plus a chain minted by `builder`.
struct Sim {
    anchor: TrustAnchor,
    server_static: KeyPair,
    chain: Vec<u8>,
}

fn sim(rng: &mut SeededRng, builder: CertChainBuilder) -> Sim {
    let root = KeyPair::generate(rng);
    let intermediate = KeyPair::generate(rng);
    let server_static = KeyPair::generate(rng);
    let chain = builder.build(root.private(), &intermediate, server_static.public(), rng).encode_to_vec();
    Sim { anchor: TrustAnchor { root_public: *root.public(), root_serial: 0 }, server_static, chain }
}

/// Runs client and server up to the server hello; returns the client state and the hello bytes.
fn to_server_hello(rng: &mut SeededRng, s: &Sim) -> (ExpectServerHello, ExpectClientFinish, Vec<u8>) {
    let (client, hello) = ClientHandshake::start_with_rng(KeyPair::generate(rng), &frame::INTRO, rng);
    let server =
        ServerHandshake::start_with_rng(s.server_static.clone(), s.chain.clone(), &frame::INTRO, rng);
    let (server, server_hello) = server.handle(&hello).unwrap();
    (client, server, server_hello)
}

/// Round trip with random keys: both sides finish, agree on the client's static key and
/// payload, and transport frames flow both ways in order.
#[test]
fn round_trip_random_keys() {
    for seed in 0..8u8 {
        let mut rng = SeededRng::new(&[seed]);
        let s = sim(&mut rng, CertChainBuilder::new().validity(100, 200));
        let client_static = KeyPair::generate(&mut rng);
        let (client, hello) = ClientHandshake::start_with_rng(client_static.clone(), &frame::INTRO, &mut rng);
        let server = ServerHandshake::start_with_rng(
            s.server_static.clone(),
            s.chain.clone(),
            &frame::INTRO,
            &mut rng,
        );
        let (server, server_hello) = server.handle(&hello).unwrap();
        let client = client.handle_and_verify(&server_hello, &s.anchor, 150).unwrap();
        let client = client.finish(b"client payload").unwrap();
        let server = server.handle(&client.message).unwrap();
        assert_eq!(&server.client_static, client_static.public());
        assert_eq!(server.client_payload, b"client payload");
        let (mut c, mut sv) = (client.transport, server.transport);
        for i in 0..3u8 {
            assert_eq!(sv.recv.decrypt(&c.send.encrypt(&[i; 5]).unwrap()).unwrap(), [i; 5]);
            assert_eq!(c.recv.decrypt(&sv.send.encrypt(&[i; 7]).unwrap()).unwrap(), [i; 7]);
        }
    }
}

fn cert_err(builder: CertChainBuilder, anchor_override: Option<TrustAnchor>, now: u64) -> HandshakeError {
    let mut rng = SeededRng::new(b"cert-errors");
    let s = sim(&mut rng, builder);
    let (client, _, server_hello) = to_server_hello(&mut rng, &s);
    client.handle_and_verify(&server_hello, &anchor_override.unwrap_or(s.anchor), now).unwrap_err()
}

/// Wrong root, expired / not-yet-valid certificates, leaf issuer mismatch and intermediate
/// issuer mismatch each surface as their typed certificate error.
#[test]
fn certificate_failures_are_typed() {
    let cert = |e: HandshakeError| match e {
        HandshakeError::Certificate { source } => source,
        other => panic!("expected a certificate error, got {other:?}"),
    };
    let wrong_root =
        TrustAnchor { root_public: *KeyPair::from_private_bytes([9; 32]).public(), root_serial: 0 };
    assert_eq!(
        cert(cert_err(CertChainBuilder::new(), Some(wrong_root), 0)),
        CertError::BadSignature { role: CertRole::Intermediate }
    );
    assert_eq!(
        cert(cert_err(CertChainBuilder::new().validity(10, 20), None, 21)),
        CertError::Expired { role: CertRole::Intermediate, not_after: 20, now: 21 }
    );
    assert_eq!(
        cert(cert_err(CertChainBuilder::new().leaf_validity(10, 20), None, 21)),
        CertError::Expired { role: CertRole::Leaf, not_after: 20, now: 21 }
    );
    assert_eq!(
        cert(cert_err(CertChainBuilder::new().leaf_validity(30, 40), None, 21)),
        CertError::NotYetValid { role: CertRole::Leaf, not_before: 30, now: 21 }
    );
    assert_eq!(
        cert(cert_err(CertChainBuilder::new().leaf_issuer_serial(7), None, 0)),
        CertError::LeafIssuerSerial { expected: 1, actual: 7 }
    );
    assert_eq!(
        cert(cert_err(CertChainBuilder::new().root_serial(3), None, 0)),
        CertError::IntermediateIssuerSerial { expected: 0, actual: 3 }
    );
}

/// A valid chain for another key than the server's static key gives LeafKeyMismatch.
#[test]
fn leaf_key_mismatch() {
    let mut rng = SeededRng::new(b"mismatch");
    let mut s = sim(&mut rng, CertChainBuilder::new());
    s.server_static = KeyPair::generate(&mut rng); // chain still certifies the old key
    let (client, _, server_hello) = to_server_hello(&mut rng, &s);
    let err = client.handle_and_verify(&server_hello, &s.anchor, 0).unwrap_err();
    assert_eq!(err, HandshakeError::Certificate { source: CertError::LeafKeyMismatch });
}

/// Tampering with any encrypted part of the server hello fails decryption of that field.
#[test]
fn tampered_server_hello() {
    let mut rng = SeededRng::new(b"tamper");
    let s = sim(&mut rng, CertChainBuilder::new());
    for (field, name) in [(2u8, "server_hello.static"), (3, "server_hello.payload")] {
        let (client, _, server_hello) = to_server_hello(&mut rng, &s);
        let mut msg = HandshakeMessage::decode(server_hello.as_slice()).unwrap();
        let sh = msg.server_hello.as_mut().unwrap();
        let target = if field == 2 { sh.r#static.as_mut() } else { sh.payload.as_mut() };
        target.unwrap()[5] ^= 0x01;
        let err = client.handle(&msg.encode_to_vec()).unwrap_err();
        assert!(
            matches!(err, HandshakeError::Decrypt { field, source: CipherError::BadTag { .. } } if field == name)
        );
    }
    // A different ephemeral changes every derived key: static no longer decrypts.
    let (client, _, server_hello) = to_server_hello(&mut rng, &s);
    let mut msg = HandshakeMessage::decode(server_hello.as_slice()).unwrap();
    msg.server_hello.as_mut().unwrap().ephemeral = Some(KeyPair::generate(&mut rng).public().to_vec());
    assert!(matches!(
        client.handle(&msg.encode_to_vec()).unwrap_err(),
        HandshakeError::Decrypt { field: "server_hello.static", .. }
    ));
}

/// Edits a server hello in place.
type Mutation = Box<dyn Fn(&mut ServerHello)>;

/// Malformed server hellos give typed structural errors.
#[test]
fn malformed_server_hello() {
    let mut rng = SeededRng::new(b"malformed");
    let s = sim(&mut rng, CertChainBuilder::new());
    let cases: Vec<(Mutation, HandshakeError)> = vec![
        (Box::new(|h| h.ephemeral = None), HandshakeError::MissingField { field: "server_hello.ephemeral" }),
        (
            Box::new(|h| h.ephemeral = Some(vec![1; 31])),
            HandshakeError::BadLength { field: "server_hello.ephemeral", expected: 32, actual: 31 },
        ),
        (Box::new(|h| h.r#static = None), HandshakeError::MissingField { field: "server_hello.static" }),
        (Box::new(|h| h.payload = None), HandshakeError::MissingField { field: "server_hello.payload" }),
        (
            Box::new(|h| h.ephemeral = Some(vec![0; 32])),
            HandshakeError::LowOrderKey { field: "server_hello.ephemeral" },
        ),
    ];
    for (mutate, want) in cases {
        let (client, _, server_hello) = to_server_hello(&mut rng, &s);
        let mut msg = HandshakeMessage::decode(server_hello.as_slice()).unwrap();
        mutate(msg.server_hello.as_mut().unwrap());
        assert_eq!(client.handle(&msg.encode_to_vec()).unwrap_err(), want);
    }
    let (client, _, _) = to_server_hello(&mut rng, &s);
    assert_eq!(
        client.handle(&HandshakeMessage::default().encode_to_vec()).unwrap_err(),
        HandshakeError::MissingField { field: "server_hello" }
    );
}

/// The responder requires a 32-byte client ephemeral and rejects a tampered client finish.
#[test]
fn responder_failures() {
    let mut rng = SeededRng::new(b"responder");
    let s = sim(&mut rng, CertChainBuilder::new());
    let server = || {
        ServerHandshake::start(
            s.server_static.clone(),
            KeyPair::from_private_bytes([3; 32]),
            s.chain.clone(),
            &frame::INTRO,
        )
    };
    let hello = |e: Option<Vec<u8>>| {
        HandshakeMessage {
            client_hello: Some(ClientHello { ephemeral: e, ..Default::default() }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    assert_eq!(
        server().handle(&hello(Some(vec![5; 33]))).unwrap_err(),
        HandshakeError::BadLength { field: "client_hello.ephemeral", expected: 32, actual: 33 }
    );
    assert_eq!(
        server().handle(&hello(None)).unwrap_err(),
        HandshakeError::MissingField { field: "client_hello.ephemeral" }
    );
    assert_eq!(
        server().handle(&[0xff, 0xff]).unwrap_err(),
        HandshakeError::Decode {
            message: "client hello",
            source: HandshakeMessage::decode(&[0xffu8, 0xff][..]).unwrap_err()
        }
    );

    // Tampered client finish: static, then payload.
    for which in 0..2 {
        let (client, server_state, server_hello) = to_server_hello(&mut rng, &s);
        let fin = client.handle_and_verify(&server_hello, &s.anchor, 0).unwrap().finish(b"p").unwrap();
        let mut msg = HandshakeMessage::decode(fin.message.as_slice()).unwrap();
        let cf = msg.client_finish.as_mut().unwrap();
        let target = if which == 0 { cf.r#static.as_mut() } else { cf.payload.as_mut() };
        target.unwrap()[0] ^= 0x40;
        let want = if which == 0 { "client_finish.static" } else { "client_finish.payload" };
        assert!(
            matches!(server_state.handle(&msg.encode_to_vec()).unwrap_err(), HandshakeError::Decrypt { field, .. } if field == want)
        );
    }
}

/// Debug output of handshake states and results shows no key material.
#[test]
fn debug_is_redacted() {
    let kp = KeyPair::from_private_bytes([0x42; 32]);
    let (hs, _) = ClientHandshake::start(kp.clone(), kp, &frame::INTRO);
    let dbg = format!("{hs:?}");
    assert!(!dbg.contains("4242"), "{dbg}");
}

fn fixed_client() -> ExpectServerHello {
    ClientHandshake::start(
        KeyPair::from_private_bytes([1; 32]),
        KeyPair::from_private_bytes([2; 32]),
        &frame::INTRO,
    )
    .0
}

fn fixed_server() -> ExpectClientHello {
    ServerHandshake::start(
        KeyPair::from_private_bytes([3; 32]),
        KeyPair::from_private_bytes([4; 32]),
        vec![1, 2, 3],
        &frame::INTRO,
    )
}

proptest! {
    /// Arbitrary bytes as a server hello never panic (they return an error or, astronomically
    /// unlikely, a state).
    #[test]
    fn server_hello_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = fixed_client().handle(&data);
    }

    /// A structurally valid server hello with arbitrary field contents never panics.
    #[test]
    fn server_hello_arbitrary_fields(e in proptest::collection::vec(any::<u8>(), 0..40),
                                     s in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
                                     p in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))) {
        let msg = HandshakeMessage { server_hello: Some(ServerHello { ephemeral: Some(e), r#static: s, payload: p, ..Default::default() }), ..Default::default() };
        prop_assert!(fixed_client().handle(&msg.encode_to_vec()).is_err());
    }

    /// Arbitrary bytes as a client hello, then as a client finish, never panic in the responder.
    #[test]
    fn responder_arbitrary_bytes(hello in proptest::collection::vec(any::<u8>(), 0..256),
                                 finish in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = fixed_server().handle(&hello);
        let real_hello = HandshakeMessage { client_hello: Some(ClientHello { ephemeral: Some(vec![9; 32]), ..Default::default() }), ..Default::default() };
        let (state, _) = fixed_server().handle(&real_hello.encode_to_vec()).unwrap();
        prop_assert!(state.handle(&finish).is_err());
    }

    /// Arbitrary bytes never panic the prost decoder of HandshakeMessage.
    #[test]
    fn handshake_message_decode(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = HandshakeMessage::decode(data.as_slice());
    }
}
