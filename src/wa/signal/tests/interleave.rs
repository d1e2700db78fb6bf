//! Property tests over random send/receive interleavings with drops, reordering and duplicates,
//! pairwise and in groups.

use proptest::prelude::*;

use crate::wa::noise::testing::SeededRng;
use crate::wa::signal::wire::SignalMessage;
use crate::wa::signal::*;

#[derive(Clone)]
struct Flight {
    kind: MessageKind,
    body: Vec<u8>,
    plaintext: Vec<u8>,
    /// Index of the sender's ratchet key among the keys it has sent with.
    generation: usize,
}

struct Side {
    identity: LocalIdentity,
    record: Option<SessionRecord>,
    /// Distinct ratchet keys this side sent with, in order of first use.
    ratchet_keys: Vec<[u8; 32]>,
    inbox: Vec<Flight>,
    delivered: Vec<Flight>,
}

fn ratchet_key_of(f: &Flight) -> [u8; 32] {
    let inner = match f.kind {
        MessageKind::PreKey => PreKeySignalMessage::decode(&f.body).unwrap().message,
        _ => SignalMessage::decode(&f.body).unwrap(),
    };
    *inner.ratchet_key.raw()
}

/// Runs `ops` between Alice (initiator) and Bob; panics on any violated expectation.
fn run(ops: &[(u8, u8)], seed: u64) {
    let mut rng = SeededRng::new(&seed.to_le_bytes());
    let bob_id = LocalIdentity::generate(&mut rng);
    let signed = SignedPreKeyRecord::generate(&bob_id, 1, &mut rng);
    let mut one_time = Some(generate_pre_keys(7, 1, &mut rng).remove(0));
    let bundle = PreKeyBundle::from_local(&bob_id, &signed, one_time.as_ref());
    let alice_id = LocalIdentity::generate(&mut rng);
    let (alice_record, _) =
        process_bundle(&alice_id, &SignalAddress::new("b", 1), None, &bundle, &mut rng).unwrap();
    let mut sides = [
        Side {
            identity: alice_id,
            record: Some(alice_record),
            ratchet_keys: vec![],
            inbox: vec![],
            delivered: vec![],
        },
        Side { identity: bob_id, record: None, ratchet_keys: vec![], inbox: vec![], delivered: vec![] },
    ];
    let addr = [SignalAddress::new("b", 1), SignalAddress::new("a", 1)]; // peer of side i
    let mut counter = 0u32;
    for &(op, sel) in ops {
        let who = (op & 1) as usize;
        let other = 1 - who;
        match op >> 1 {
            // send
            0 | 1 => {
                let Some(record) = &sides[who].record else { continue };
                let plaintext = format!("m{counter} from {who}").into_bytes();
                counter += 1;
                let e = match encrypt(&addr[who], record, &plaintext) {
                    Ok(e) => e,
                    Err(SignalError::NoSendingChain) => continue,
                    Err(e) => panic!("encrypt: {e}"),
                };
                sides[who].record = Some(e.record);
                let mut f = Flight { kind: e.kind, body: e.ciphertext, plaintext, generation: 0 };
                let key = ratchet_key_of(&f);
                let keys = &mut sides[who].ratchet_keys;
                f.generation = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                    keys.push(key);
                    keys.len() - 1
                });
                sides[other].inbox.push(f);
            }
            // deliver one in-flight message to `who` (any order)
            2 | 3 => {
                if sides[who].inbox.is_empty() {
                    continue;
                }
                let i = sel as usize % sides[who].inbox.len();
                let f = sides[who].inbox.remove(i);
                let newer = sides[other].ratchet_keys.len() - 1 - f.generation;
                let result = deliver(&sides[who], &addr[who], &f, &signed, one_time.as_ref(), &mut rng);
                match result {
                    Ok(d) => {
                        assert_eq!(d.plaintext, f.plaintext);
                        if d.deltas.iter().any(|x| matches!(x, SignalDelta::PreKeyConsumed { .. })) {
                            one_time = None;
                        }
                        // Persist through bytes, like a host.
                        let bytes = d.deltas.iter().find_map(|x| match x {
                            SignalDelta::SessionPut { record, .. } => Some(record.clone()),
                            _ => None,
                        });
                        sides[who].record = Some(SessionRecord::decode(&bytes.unwrap()).unwrap());
                        sides[who].delivered.push(f);
                    }
                    // A receiving chain older than the last MAX_RECEIVING_CHAINS may be evicted.
                    Err(e) => assert!(
                        newer >= MAX_RECEIVING_CHAINS - 1,
                        "fresh message failed: {e} (newer {newer})"
                    ),
                }
            }
            // redeliver an already-delivered message: must be rejected
            4 => {
                if sides[who].delivered.is_empty() {
                    continue;
                }
                let f = sides[who].delivered[sel as usize % sides[who].delivered.len()].clone();
                let before = sides[who].record.as_ref().map(SessionRecord::encode);
                let err = deliver(&sides[who], &addr[who], &f, &signed, one_time.as_ref(), &mut rng)
                    .expect_err("duplicate accepted");
                let newer = sides[other].ratchet_keys.len() - 1 - f.generation;
                assert!(err.is_duplicate() || newer >= MAX_RECEIVING_CHAINS - 1, "duplicate gave {err}");
                assert_eq!(sides[who].record.as_ref().map(SessionRecord::encode), before);
            }
            // drop an in-flight message
            _ => {
                if !sides[who].inbox.is_empty() {
                    let i = sel as usize % sides[who].inbox.len();
                    sides[who].inbox.remove(i);
                }
            }
        }
    }
}

fn deliver(
    side: &Side,
    peer: &SignalAddress,
    f: &Flight,
    signed: &SignedPreKeyRecord,
    one_time: Option<&PreKeyRecord>,
    rng: &mut SeededRng,
) -> Result<Decrypted, SignalError> {
    match f.kind {
        MessageKind::PreKey => {
            let pk = PreKeySignalMessage::decode(&f.body)?;
            decrypt_prekey_message(
                &side.identity,
                peer,
                side.record.as_ref(),
                &pk,
                Some(signed),
                one_time,
                rng,
            )
        }
        _ => decrypt_message(peer, side.record.as_ref().ok_or(SignalError::NoSession)?, &f.body, rng),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random sends, out-of-order deliveries, drops and redeliveries between two parties
    /// (counters stay far below the 2000 skip bound): every delivered message decrypts exactly
    /// once to its plaintext (unless its chain is older than the kept receiving chains),
    /// and every redelivery is rejected as a duplicate without changing state.
    #[test]
    fn pairwise_interleavings(ops in proptest::collection::vec((0u8..12, any::<u8>()), 1..120), seed in any::<u64>()) {
        run(&ops, seed);
    }

}

proptest! {
    // Each case signs and verifies ~50 XEdDSA signatures (slow in debug builds): fewer cases.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Group messages delivered in a random order with duplicates and drops: each decrypts
    /// exactly once, repeats are duplicates.
    #[test]
    fn group_interleavings(order in proptest::collection::vec(0usize..24, 1..48), seed in any::<u64>()) {
        let mut rng = SeededRng::new(&seed.to_le_bytes());
        let name = SenderKeyName::new("g@g.us", SignalAddress::new("s", 1));
        let (skdm, mut own, _) = create_distribution_message(&name, None, &mut rng);
        let mut sent = Vec::new();
        for i in 0..24 {
            let out = group_encrypt(&name, &own, format!("g{i}").as_bytes(), &mut rng).unwrap();
            own = out.record;
            sent.push(out.bytes);
        }
        let (mut record, _) = process_distribution_message(&name, None, &SenderKeyDistributionMessage::decode(&skdm.encode()).unwrap());
        let mut seen = std::collections::HashSet::new();
        for i in order {
            match group_decrypt(&name, &record, &sent[i]) {
                Ok(out) => {
                    prop_assert!(seen.insert(i), "message {} decrypted twice", i);
                    prop_assert_eq!(out.bytes, format!("g{i}").into_bytes());
                    record = out.record;
                }
                Err(e) => prop_assert!(seen.contains(&i) && e.is_duplicate(), "message {}: {}", i, e),
            }
        }
    }
}
