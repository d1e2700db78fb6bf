//! Failure handling: state untouched after a failed decrypt, bounds enforced, decoders of
//! untrusted bytes (wire messages and stored records) never panic.

use proptest::prelude::*;
use prost::Message as _;

use crate::wa::noise::testing::SeededRng;
use crate::wa::signal::*;

struct Pair {
    alice: SessionRecord,
    bob: SessionRecord,
    bob_identity: LocalIdentity,
    signed: SignedPreKeyRecord,
    one_time: PreKeyRecord,
    rng: SeededRng,
}

fn a() -> SignalAddress {
    SignalAddress::new("alice", 1)
}
fn b() -> SignalAddress {
    SignalAddress::new("bob", 1)
}

/// Alice and Bob with an established session (one pkmsg and one reply exchanged).
fn established() -> Pair {
    let mut rng = SeededRng::new(b"robust");
    let bob_identity = LocalIdentity::generate(&mut rng);
    let signed = SignedPreKeyRecord::generate(&bob_identity, 1, &mut rng);
    let one_time = generate_pre_keys(1, 1, &mut rng).remove(0);
    let alice_id = LocalIdentity::generate(&mut rng);
    let bundle = PreKeyBundle::from_local(&bob_identity, &signed, Some(&one_time));
    let (alice, _) = process_bundle(&alice_id, &b(), None, &bundle, &mut rng).unwrap();
    let e = encrypt(&b(), &alice, b"hi").unwrap();
    let pk = PreKeySignalMessage::decode(&e.ciphertext).unwrap();
    let d = decrypt_prekey_message(&bob_identity, &a(), None, &pk, Some(&signed), Some(&one_time), &mut rng)
        .unwrap();
    let r = encrypt(&a(), &d.record, b"hello").unwrap();
    let alice = decrypt_message(&b(), &e.record, &r.ciphertext, &mut rng).unwrap().record;
    Pair { alice, bob: r.record, bob_identity, signed, one_time, rng }
}

/// A message with a flipped MAC (or ciphertext) byte fails with BadMac and consumes nothing:
/// the untampered message still decrypts afterwards with the same record.
#[test]
fn tampered_mac_leaves_state_untouched() {
    let mut p = established();
    let e = encrypt(&a(), &p.alice, b"payload").unwrap();
    let before = p.bob.encode();
    for pos in [e.ciphertext.len() - 1, e.ciphertext.len() - 12] {
        let mut bad = e.ciphertext.clone();
        bad[pos] ^= 0x40;
        let err = decrypt_message(&a(), &p.bob, &bad, &mut p.rng).unwrap_err();
        assert!(
            matches!(&err, SignalError::NoMatchingSession { source, .. } if matches!(**source, SignalError::BadMac)),
            "{err}"
        );
    }
    assert_eq!(p.bob.encode(), before);
    assert_eq!(decrypt_message(&a(), &p.bob, &e.ciphertext, &mut p.rng).unwrap().plaintext, b"payload");
}

/// A tampered first pkmsg yields no deltas, so the one-time prekey is still there, and the
/// genuine pkmsg then builds the session and consumes it.
#[test]
fn tampered_pkmsg_consumes_no_prekey() {
    let mut rng = SeededRng::new(b"pk");
    let bob = LocalIdentity::generate(&mut rng);
    let signed = SignedPreKeyRecord::generate(&bob, 1, &mut rng);
    let one_time = generate_pre_keys(9, 1, &mut rng).remove(0);
    let alice = LocalIdentity::generate(&mut rng);
    let bundle = PreKeyBundle::from_local(&bob, &signed, Some(&one_time));
    let (rec, _) = process_bundle(&alice, &b(), None, &bundle, &mut rng).unwrap();
    let e = encrypt(&b(), &rec, b"first").unwrap();
    let mut bad = e.ciphertext.clone();
    let last = bad.len() - 20; // inside the inner SignalMessage's MAC region
    bad[last] ^= 1;
    if let Ok(pk) = PreKeySignalMessage::decode(&bad) {
        assert!(
            decrypt_prekey_message(&bob, &a(), None, &pk, Some(&signed), Some(&one_time), &mut rng).is_err()
        );
    }
    let pk = PreKeySignalMessage::decode(&e.ciphertext).unwrap();
    let missing = decrypt_prekey_message(&bob, &a(), None, &pk, Some(&signed), None, &mut rng).unwrap_err();
    assert!(matches!(missing, SignalError::PreKeyMissing { id: 9 }));
    let d = decrypt_prekey_message(&bob, &a(), None, &pk, Some(&signed), Some(&one_time), &mut rng).unwrap();
    assert_eq!(d.plaintext, b"first");
    assert!(d.deltas.contains(&SignalDelta::PreKeyConsumed { id: 9 }));
}

/// A counter more than MAX_FORWARD_JUMP ahead is refused; one exactly at the bound decrypts.
#[test]
fn forward_jump_bound() {
    let mut p = established();
    let mut rec = p.alice.clone();
    let (mut at_bound, mut too_far) = (Vec::new(), Vec::new());
    for i in 0..=(MAX_FORWARD_JUMP + 1) {
        let e = encrypt(&a(), &rec, format!("{i}").as_bytes()).unwrap();
        rec = e.record;
        if i == MAX_FORWARD_JUMP {
            at_bound = e.ciphertext;
        } else if i == MAX_FORWARD_JUMP + 1 {
            too_far = e.ciphertext;
        }
    }
    let err = decrypt_message(&a(), &p.bob, &too_far, &mut p.rng).unwrap_err();
    assert!(
        matches!(&err, SignalError::NoMatchingSession { source, .. } if matches!(**source, SignalError::TooFarAhead { .. })),
        "{err}"
    );
    let d = decrypt_message(&a(), &p.bob, &at_bound, &mut p.rng).unwrap();
    assert_eq!(d.plaintext, MAX_FORWARD_JUMP.to_string().as_bytes());
}

/// A new pkmsg from the same peer (a fresh session) archives the old session, which still
/// decrypts its late messages; archives are bounded.
#[test]
fn previous_sessions_kept_and_bounded() {
    let mut p = established();
    let late = encrypt(&a(), &p.alice, b"late").unwrap();
    let alice_id = LocalIdentity::generate(&mut p.rng);
    let bundle = PreKeyBundle::from_local(&p.bob_identity, &p.signed, None);
    let mut bob = p.bob.clone();
    for round in 0..(MAX_PREVIOUS_SESSIONS + 3) {
        let (rec, _) = process_bundle(&alice_id, &b(), None, &bundle, &mut p.rng).unwrap();
        let e = encrypt(&b(), &rec, b"new").unwrap();
        let pk = PreKeySignalMessage::decode(&e.ciphertext).unwrap();
        let d =
            decrypt_prekey_message(&p.bob_identity, &a(), Some(&bob), &pk, Some(&p.signed), None, &mut p.rng)
                .unwrap();
        assert!(!d.deltas.iter().any(|x| matches!(x, SignalDelta::PreKeyConsumed { .. })));
        bob = d.record;
        if round == 0 {
            assert_eq!(decrypt_message(&a(), &bob, &late.ciphertext, &mut p.rng).unwrap().plaintext, b"late");
        }
    }
    assert_eq!(bob.previous_session_count(), MAX_PREVIOUS_SESSIONS);
    let _ = &p.one_time;
}

/// A message decrypted by a session that has since been archived (the peer started a new
/// session) is reported as a duplicate when it is redelivered, not as a failure: the receiver
/// must not ask for a retry of a message it already has (seen with SIGKILL before the receipt).
#[test]
fn redelivery_decrypted_by_an_archived_session_is_a_duplicate() {
    let mut p = established();
    let m = encrypt(&b(), &p.alice, b"once").unwrap();
    let bob = decrypt_message(&a(), &p.bob, &m.ciphertext, &mut p.rng).unwrap().record;
    // Alice reinstalls: a new session replaces the current one at Bob.
    let alice_id = LocalIdentity::generate(&mut p.rng);
    let bundle = PreKeyBundle::from_local(&p.bob_identity, &p.signed, None);
    let (rec, _) = process_bundle(&alice_id, &b(), None, &bundle, &mut p.rng).unwrap();
    let e = encrypt(&b(), &rec, b"new").unwrap();
    let pk = PreKeySignalMessage::decode(&e.ciphertext).unwrap();
    let bob =
        decrypt_prekey_message(&p.bob_identity, &a(), Some(&bob), &pk, Some(&p.signed), None, &mut p.rng)
            .unwrap()
            .record;
    let err = decrypt_message(&a(), &bob, &m.ciphertext, &mut p.rng).unwrap_err();
    assert!(err.is_duplicate(), "{err:?}");
}

/// Decrypting with no session, or encrypting without one, are typed errors.
#[test]
fn no_session_errors() {
    let mut rng = SeededRng::new(b"x");
    assert!(matches!(encrypt(&a(), &SessionRecord::default(), b"x"), Err(SignalError::NoSession)));
    let p = established();
    let e = encrypt(&a(), &p.alice, b"x").unwrap();
    assert!(matches!(
        decrypt_message(&a(), &SessionRecord::default(), &e.ciphertext, &mut rng),
        Err(SignalError::NoSession)
    ));
}

/// Stored records round-trip, and Debug output never shows key material.
#[test]
fn records_round_trip_and_redact() {
    let p = established();
    let bytes = p.bob.encode();
    assert_eq!(SessionRecord::decode(&bytes).unwrap().encode(), bytes);
    assert!(format!("{:?}", p.bob).contains("redacted"));
    assert!(matches!(SessionRecord::decode(&[9, 1, 2]), Err(SignalError::RecordFormat { byte: 9, .. })));
    assert!(matches!(SessionRecord::decode(&[]), Err(SignalError::RecordFormat { byte: 0, .. })));
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(pos, val) in edits {
        if !bytes.is_empty() {
            let i = pos % bytes.len();
            bytes[i] = val;
        }
    }
    let keep = bytes.len().saturating_sub(cut % 4);
    bytes.truncate(keep);
    bytes
}

proptest! {
    /// Arbitrary bytes never panic any decoder of wire messages or stored records.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = PreKeySignalMessage::decode(&bytes);
        let _ = SenderKeyDistributionMessage::decode(&bytes);
        let _ = SessionRecord::decode(&bytes);
        let _ = SenderKeyRecord::decode(&bytes);
        let _ = PreKeyRecord::decode(&bytes);
        let _ = SignedPreKeyRecord::decode(&bytes);
        let mut with_version = vec![VERSION_BYTE];
        with_version.extend_from_slice(&bytes);
        let _ = PreKeySignalMessage::decode(&with_version);
        let _ = SenderKeyDistributionMessage::decode(&with_version);
        let mut rng = SeededRng::new(&bytes);
        let _ = decrypt_message(&a(), &SessionRecord::default(), &with_version, &mut rng);
        let name = SenderKeyName::new("g", a());
        let _ = group_decrypt(&name, &SenderKeyRecord::default(), &with_version);
    }

}

proptest! {
    // Each case builds a session and a sender key (slow curve math in debug builds): fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Mutated valid messages and records never panic (decrypt on an established session,
    /// group decrypt, record decode) and mutated ciphertexts never decrypt to something else.
    #[test]
    fn mutated_inputs_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4), cut in any::<usize>()) {
        let mut p = established();
        let e = encrypt(&a(), &p.alice, b"genuine").unwrap();
        let bad = mutate(e.ciphertext.clone(), &edits, cut);
        if let Ok(d) = decrypt_message(&a(), &p.bob, &bad, &mut p.rng) {
            prop_assert_eq!(d.plaintext, b"genuine".to_vec());
        }
        let _ = SessionRecord::decode(&mutate(p.bob.encode(), &edits, cut));
        let name = SenderKeyName::new("g", a());
        let (skdm, own, _) = create_distribution_message(&name, None, &mut p.rng);
        let msg = group_encrypt(&name, &own, b"group", &mut p.rng).unwrap().bytes;
        let (rec, _) = process_distribution_message(&name, None, &skdm);
        if let Ok(out) = group_decrypt(&name, &rec, &mutate(msg, &edits, cut)) {
            prop_assert_eq!(out.bytes, b"group".to_vec());
        }
        let _ = SenderKeyRecord::decode(&mutate(own.encode(), &edits, cut));
        let _ = SenderKeyDistributionMessage::decode(&mutate(skdm.encode(), &edits, cut));
        let _ = PreKeySignalMessage::decode(&mutate(encrypt(&b(), &p.alice, b"x").unwrap().ciphertext, &edits, cut));
    }
}

/// Skipped message keys are capped per chain: after two maximal jumps the oldest keys are
/// evicted (their messages fail as already-used), the newest kept keys still decrypt.
#[test]
fn skipped_keys_bounded() {
    let mut p = established();
    let mut rec = p.alice.clone();
    let mut sent = Vec::new();
    for i in 0..=4000u32 {
        let e = encrypt(&a(), &rec, format!("{i}").as_bytes()).unwrap();
        rec = e.record;
        sent.push(e.ciphertext);
    }
    let mut bob = p.bob.clone();
    for i in [2000usize, 4000] {
        bob = decrypt_message(&a(), &bob, &sent[i], &mut p.rng).unwrap().record;
    }
    // Kept: the newest MAX_SKIPPED_KEYS of 0..4000 minus the two decrypted, i.e. 1999 and 2001..3999.
    assert_eq!(MAX_SKIPPED_KEYS, 2000);
    assert!(decrypt_message(&a(), &bob, &sent[1998], &mut p.rng).unwrap_err().is_duplicate());
    assert!(decrypt_message(&a(), &bob, &sent[0], &mut p.rng).unwrap_err().is_duplicate());
    for i in [1999usize, 2001, 3999] {
        let d = decrypt_message(&a(), &bob, &sent[i], &mut p.rng).unwrap();
        assert_eq!(d.plaintext, i.to_string().as_bytes());
    }
}

/// A pkmsg naming an unknown signed prekey, or a first pkmsg without registration id, is a
/// typed error; a pkmsg from a new identity for a known address replaces the session
/// (trust on first use) and reports the new identity.
#[test]
fn prekey_message_edge_cases() {
    let mut p = established();
    let other = LocalIdentity::generate(&mut p.rng);
    let bundle = PreKeyBundle::from_local(&p.bob_identity, &p.signed, None);
    let (rec, _) = process_bundle(&other, &b(), None, &bundle, &mut p.rng).unwrap();
    let e = encrypt(&b(), &rec, b"from a new identity").unwrap();
    let pk = PreKeySignalMessage::decode(&e.ciphertext).unwrap();
    let wrong_spk = SignedPreKeyRecord::generate(&p.bob_identity, 2, &mut p.rng);
    let err =
        decrypt_prekey_message(&p.bob_identity, &a(), Some(&p.bob), &pk, Some(&wrong_spk), None, &mut p.rng)
            .unwrap_err();
    assert!(matches!(err, SignalError::SignedPreKeyMissing { id: 1 }));
    let d =
        decrypt_prekey_message(&p.bob_identity, &a(), Some(&p.bob), &pk, Some(&p.signed), None, &mut p.rng)
            .unwrap();
    assert_eq!(d.plaintext, b"from a new identity");
    assert!(d.deltas.contains(&SignalDelta::IdentityPut { address: a(), key: other.public_key() }));
    assert_eq!(d.record.remote_identity(), Some(other.public_key()));
    assert_eq!(d.record.previous_session_count(), 1);
    // Strip the registration id: refused when there is no record yet.
    let mut m = crate::wa::proto::PreKeySignalMessage::decode(&e.ciphertext[1..]).unwrap();
    m.registration_id = None;
    let mut bytes = vec![VERSION_BYTE];
    bytes.extend(prost::Message::encode_to_vec(&m));
    let pk = PreKeySignalMessage::decode(&bytes).unwrap();
    let err = decrypt_prekey_message(&p.bob_identity, &a(), None, &pk, Some(&p.signed), None, &mut p.rng)
        .unwrap_err();
    assert!(matches!(err, SignalError::MissingField { field: "registration_id", .. }));
}
