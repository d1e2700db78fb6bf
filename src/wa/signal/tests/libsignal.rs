//! libsignal-node vectors: tests/vectors/baileys.json `signal` (msg1 pkmsg, msg2 msg).

use super::support::{ScriptedRng, hex_of, load, parties};
use crate::wa::signal::testing;
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
    // Identity, then the session, then the prekey deletion, all in one batch.
    assert!(matches!(
        &d.deltas[..],
        [
            SignalDelta::IdentityPut { .. },
            SignalDelta::SessionPut { .. },
            SignalDelta::PreKeyConsumed { id: 1 }
        ]
    ));
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

/// tests/vectors/libsignal-signal.json: the parties there are the ones our Conversation uses.
#[test]
fn conversation_parties_match_vectors() {
    let v = load("libsignal-signal.json");
    let p = parties(&v["parties"]);
    let bundle = PreKeyBundle::from_local(&p.bob, &p.bob_signed, Some(&p.bob_pre_key));
    assert!(bundle.identity_key.verify(&bundle.signed_pre_key.to_wire(), &bundle.signed_pre_key_signature));
    let carol = super::support::pair(&v["parties"], "carol_identity");
    assert_eq!(carol.public(), crate::wa::signal::testing::seeded_key_pair("carol-identity").public());
}

/// libsignal-node's longer conversation (three pkmsgs delivered out of order, several ratchet
/// turns, late and reordered messages, a session without one-time prekey): replayed with our
/// code on every side, every ciphertext we produce equals libsignal's byte for byte, and every
/// libsignal ciphertext decrypts; records go through their storage bytes after each step.
#[test]
fn libsignal_conversation_replays_byte_for_byte() {
    let v = load("libsignal-signal.json");
    let events: Vec<testing::Event> = serde_json::from_value(v["events"].clone()).unwrap();
    assert!(events.len() > 40);
    let mut conv = testing::Conversation::new();
    for (i, ev) in events.iter().enumerate() {
        conv.step(ev).unwrap_or_else(|e| panic!("event {i} {ev:?}: {e}"));
    }
    assert_eq!(conv.keys_generated() as u64, v["ratchet_keys_generated"].as_u64().unwrap());
}

fn group_name(v: &serde_json::Value) -> SenderKeyName {
    SenderKeyName::new(v["group"]["group_id"].as_str().unwrap(), alice_addr())
}

/// Baileys' SKDM and SenderKeyMessages (iterations 0,2,4,6,8,10) decrypt in several orders;
/// a second delivery of any of them is rejected as a duplicate, and the record is unchanged.
#[test]
fn baileys_group_messages_decrypt_in_any_order() {
    let v = load("libsignal-signal.json");
    let g = &v["group"];
    let name = group_name(&v);
    let skdm = SenderKeyDistributionMessage::decode(&hex_of(g, "skdm_hex")).unwrap();
    assert_eq!((skdm.key_id(), skdm.iteration()), (g["key_id"].as_u64().unwrap() as u32, 0));
    assert_eq!(SenderKeyDistributionMessage::decode(&skdm.encode()).unwrap().encode(), hex_of(g, "skdm_hex"));
    let msgs = g["messages"].as_array().unwrap();
    for order in [vec![0, 1, 2, 3, 4, 5], vec![5, 3, 1, 0, 4, 2], vec![2, 0, 4, 1, 5, 3]] {
        let (mut record, _) = process_distribution_message(&name, None, &skdm);
        for &i in &order {
            let body = hex_of(&msgs[i], "body_hex");
            let out = group_decrypt(&name, &record, &body).unwrap();
            assert_eq!(out.bytes, msgs[i]["plaintext"].as_str().unwrap().as_bytes());
            assert!(matches!(&out.deltas[..], [SignalDelta::SenderKeyPut { .. }]));
            let stored = match &out.deltas[0] {
                SignalDelta::SenderKeyPut { record, .. } => SenderKeyRecord::decode(record).unwrap(),
                _ => unreachable!(),
            };
            let again = group_decrypt(&name, &stored, &body).unwrap_err();
            assert!(again.is_duplicate(), "{again}");
            record = stored;
        }
    }
}

/// A mid-chain SKDM (iteration 9) lets a new member read the next message (iteration 10) but
/// not earlier ones.
#[test]
fn baileys_mid_chain_distribution() {
    let v = load("libsignal-signal.json");
    let g = &v["group"];
    let name = group_name(&v);
    let skdm = SenderKeyDistributionMessage::decode(&hex_of(g, "skdm_mid_hex")).unwrap();
    assert_eq!(skdm.iteration(), 9);
    let (record, _) = process_distribution_message(&name, None, &skdm);
    let msgs = g["messages"].as_array().unwrap();
    let last = msgs.last().unwrap();
    assert_eq!(
        group_decrypt(&name, &record, &hex_of(last, "body_hex")).unwrap().bytes,
        last["plaintext"].as_str().unwrap().as_bytes()
    );
    assert!(group_decrypt(&name, &record, &hex_of(&msgs[0], "body_hex")).unwrap_err().is_duplicate());
}

/// A Baileys SenderKeyMessage with one flipped signature or ciphertext byte is rejected.
#[test]
fn baileys_group_tampering_rejected() {
    let v = load("libsignal-signal.json");
    let g = &v["group"];
    let name = group_name(&v);
    let skdm = SenderKeyDistributionMessage::decode(&hex_of(g, "skdm_hex")).unwrap();
    let (record, _) = process_distribution_message(&name, None, &skdm);
    let body = hex_of(&g["messages"][0], "body_hex");
    for pos in [body.len() - 1, body.len() - 70, 5] {
        let mut bad = body.clone();
        bad[pos] ^= 0x01;
        assert!(group_decrypt(&name, &record, &bad).is_err(), "flip at {pos}");
    }
    assert!(group_decrypt(&name, &record, &body).is_ok());
}
