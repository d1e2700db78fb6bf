//! Criterion benchmarks of `wa::signal`, row for row the same operations and inputs as
//! `scripts/bench-signal-libsignal.mjs` (libsignal-node 6.0.0 + Baileys' group cipher):
//! - `pairwise_100b`: Alice encrypts a 100-byte message on an established session and Bob
//!   decrypts it (same chain, no DH step), records threaded through each iteration;
//! - `pairwise_pingpong_100b`: the two sides alternate, so every decrypt performs a DH-ratchet
//!   step (two X25519 agreements + one key generation);
//! - `group_100b`: sender-key encrypt (XEdDSA-signed) + decrypt (signature verified).
//!
//! Each row counts one encrypt+decrypt as one element (messages/s). Our rows include encoding
//! the updated records for the store (the `SessionPut`/`SenderKeyPut` deltas); libsignal-node's
//! in-memory store keeps objects and serialises nothing.
//! Run: `cargo bench --bench signal` and `node scripts/bench-signal-libsignal.mjs`.

#![expect(clippy::expect_used, reason = "benchmark sessions are built from fixed inputs that always work")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use staylinked::wa::noise::testing::SeededRng;
use staylinked::wa::signal::{
    LocalIdentity, PreKeyBundle, PreKeySignalMessage, SenderKeyName, SessionRecord, SignalAddress,
    SignedPreKeyRecord, create_distribution_message, decrypt_message, decrypt_prekey_message, encrypt,
    generate_pre_keys, group_decrypt, group_encrypt, process_bundle, process_distribution_message,
};
use std::hint::black_box;

/// (Alice's record, Bob's record) after one pkmsg and one reply.
fn established(rng: &mut SeededRng) -> (SessionRecord, SessionRecord) {
    let (a, b) = (SignalAddress::new("alice", 1), SignalAddress::new("bob", 1));
    let bob = LocalIdentity::generate(rng);
    let signed = SignedPreKeyRecord::generate(&bob, 1, rng);
    let one_time = generate_pre_keys(1, 1, rng).remove(0);
    let alice = LocalIdentity::generate(rng);
    let bundle = PreKeyBundle::from_local(&bob, &signed, Some(&one_time));
    let (alice_rec, _) = process_bundle(&alice, &b, None, &bundle, rng).expect("bundle");
    let first = encrypt(&b, &alice_rec, b"hello").expect("encrypt");
    let pk = PreKeySignalMessage::decode(&first.ciphertext).expect("pkmsg");
    let d = decrypt_prekey_message(&bob, &a, None, &pk, Some(&signed), Some(&one_time), rng).expect("pkmsg");
    let reply = encrypt(&a, &d.record, b"hi").expect("reply");
    let alice_rec = decrypt_message(&b, &first.record, &reply.ciphertext, rng).expect("reply").record;
    (alice_rec, reply.record)
}

fn signal(c: &mut Criterion) {
    let mut g = c.benchmark_group("signal");
    g.throughput(Throughput::Elements(1));
    let plaintext = [0x61u8; 100];
    let (a, b) = (SignalAddress::new("alice", 1), SignalAddress::new("bob", 1));

    let mut rng = SeededRng::new(b"bench pairwise");
    let (mut alice, mut bob) = established(&mut rng);
    g.bench_function("pairwise_100b", |bench| {
        bench.iter(|| {
            let e = encrypt(&b, &alice, black_box(&plaintext)).expect("encrypt");
            let d = decrypt_message(&a, &bob, black_box(&e.ciphertext), &mut rng).expect("decrypt");
            alice = e.record;
            bob = d.record;
            d.plaintext
        })
    });

    let mut rng = SeededRng::new(b"bench pingpong");
    let (alice, bob) = established(&mut rng);
    let mut sides = [(alice, b.clone()), (bob, a.clone())];
    let mut turn = 0usize;
    g.bench_function("pairwise_pingpong_100b", |bench| {
        bench.iter(|| {
            let (s, r) = (turn & 1, 1 - (turn & 1));
            let e = encrypt(&sides[s].1, &sides[s].0, black_box(&plaintext)).expect("encrypt");
            let d = decrypt_message(&sides[r].1, &sides[r].0, black_box(&e.ciphertext), &mut rng)
                .expect("decrypt");
            sides[s].0 = e.record;
            sides[r].0 = d.record;
            turn += 1;
            d.plaintext
        })
    });

    let mut rng = SeededRng::new(b"bench group");
    let name = SenderKeyName::new("120363025246125486@g.us", a.clone());
    let (skdm, mut own, _) = create_distribution_message(&name, None, &mut rng);
    let (mut theirs, _) = process_distribution_message(&name, None, &skdm);
    g.bench_function("group_100b", |bench| {
        bench.iter(|| {
            let e = group_encrypt(&name, &own, black_box(&plaintext), &mut rng).expect("encrypt");
            let d = group_decrypt(&name, &theirs, black_box(&e.bytes)).expect("decrypt");
            own = e.record;
            theirs = d.record;
            d.bytes
        })
    });
    g.finish();
}

criterion_group!(benches, signal);
criterion_main!(benches);
