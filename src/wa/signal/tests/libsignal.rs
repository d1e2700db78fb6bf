//! libsignal-node vectors: tests/vectors/baileys.json `signal` (msg1 pkmsg, msg2 msg).

use super::support::{ScriptedRng, hex_of, load, parties};
use crate::wa::signal::*;

fn alice_addr() -> SignalAddress {
    SignalAddress::new("15550001111", 7)
}
fn bob_addr() -> SignalAddress {
    SignalAddress::new("15550002222", 0)
}

/// Our Bob decrypts libsignal's msg1 (pkmsg, one-time prekey 1) to "hello bob", consumes the
/// prekey in the same delta batch as the session, and, drawing libsignal's ratchet-2 key,
/// reproduces libsignal's msg2 byte for byte.
#[test]
fn bob_decrypts_msg1_and_reproduces_msg2() {
    let s = &load("baileys.json")["signal"];
    let p = parties(s);
    let msg1 = hex_of(&s["msg1"], "body_hex");
    let pk = PreKeySignalMessage::decode(&msg1).unwrap();
    assert_eq!((pk.pre_key_id(), pk.signed_pre_key_id(), pk.registration_id()), (Some(1), 1, Some(1111)));
    let mut rng = ScriptedRng::ratchets(2, 1);
    let d = decrypt_prekey_message(
        &p.bob,
        &alice_addr(),
        None,
        &pk,
        Some(&p.bob_signed),
        Some(&p.bob_pre_key),
        &mut rng,
    )
    .unwrap();
    assert_eq!(d.plaintext, b"hello bob");
    assert_eq!(rng.remaining(), 0);
    assert!(d.deltas.contains(&SignalDelta::PreKeyConsumed { id: 1 }));
    assert!(d.deltas.iter().any(|x| matches!(x, SignalDelta::SessionPut { .. })));
    let e = encrypt(&alice_addr(), &d.record, b"hello alice").unwrap();
    assert_eq!(e.kind, MessageKind::Whisper);
    assert_eq!(hex::encode(&e.ciphertext), s["msg2"]["body_hex"].as_str().unwrap());
}

/// With libsignal's seeded keys (base key ratchet-0, first ratchet key ratchet-1) our Alice
/// reproduces msg1 byte for byte, then decrypts libsignal's msg2 to "hello alice".
#[test]
fn alice_reproduces_msg1_and_decrypts_msg2() {
    let s = &load("baileys.json")["signal"];
    let p = parties(s);
    let bundle = PreKeyBundle::from_local(&p.bob, &p.bob_signed, Some(&p.bob_pre_key));
    let mut rng = ScriptedRng::ratchets(0, 2);
    let (record, deltas) = process_bundle(&p.alice, &bob_addr(), None, &bundle, &mut rng).unwrap();
    assert!(deltas.iter().any(|d| matches!(d, SignalDelta::IdentityPut { .. })));
    let e = encrypt(&bob_addr(), &record, b"hello bob").unwrap();
    assert_eq!(e.kind, MessageKind::PreKey);
    assert_eq!(hex::encode(&e.ciphertext), s["msg1"]["body_hex"].as_str().unwrap());
    let mut rng = ScriptedRng::ratchets(3, 1);
    let d = decrypt_message(&bob_addr(), &e.record, &hex_of(&s["msg2"], "body_hex"), &mut rng).unwrap();
    assert_eq!(d.plaintext, b"hello alice");
    // The reply cleared the pending prekey: Alice now sends plain `msg`.
    assert_eq!(encrypt(&bob_addr(), &d.record, b"x").unwrap().kind, MessageKind::Whisper);
}

/// A bundle whose signed-prekey signature does not verify is refused (libsignal-node skips this
/// check; we do not).
#[test]
fn bad_signed_prekey_signature_refused() {
    let s = &load("baileys.json")["signal"];
    let p = parties(s);
    let mut bundle = PreKeyBundle::from_local(&p.bob, &p.bob_signed, None);
    bundle.signed_pre_key_signature[5] ^= 1;
    let mut rng = ScriptedRng::ratchets(0, 2);
    let err = process_bundle(&p.alice, &bob_addr(), None, &bundle, &mut rng).unwrap_err();
    assert!(matches!(err, SignalError::BadSignature { .. }));
}
