//! Criterion benchmarks of the wire codecs, row for row the same operations and inputs as
//! `scripts/bench-codec-baileys.mjs` (Baileys 6.7.21 on the same machine):
//! - `message_stanza`: marshal + unmarshal of a typical 1:1 message stanza;
//! - `prekey_upload`: marshal + unmarshal of a 30-prekey upload iq;
//! - `noise_encrypt_1k` / `noise_decrypt_1k`: transport encrypt (+ frame) / decrypt of 1 KiB.
//!
//! Run: `cargo bench --bench codec`; `scripts/bench-codec.sh` runs both sides and writes the table.

#![expect(clippy::expect_used, reason = "benchmark inputs are fixed samples that always encode")]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use staylinked::wa::binary::{marshal, samples, unmarshal};
use staylinked::wa::frame;
use staylinked::wa::noise::testing::transport_pair;
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    for (name, node) in
        [("message_stanza", samples::message_stanza()), ("prekey_upload", samples::prekey_upload_iq())]
    {
        g.bench_function(name, |b| {
            b.iter(|| {
                let bytes = marshal(black_box(&node)).expect("sample encodes");
                unmarshal(black_box(&bytes)).expect("sample decodes")
            })
        });
    }
    let payload = vec![0x42u8; 1024];
    let (mut client, _) = transport_pair();
    g.bench_function("noise_encrypt_1k", |b| {
        b.iter(|| {
            let ct = client.send.encrypt(black_box(&payload)).expect("counter far from exhaustion");
            frame::frame(&ct).expect("1 KiB fits a frame")
        })
    });
    let sealed = transport_pair().0.send.encrypt(&payload).expect("fresh cipher");
    g.bench_function("noise_decrypt_1k", |b| {
        // Each iteration decrypts the frame sealed at counter 0 with a fresh receiver (built
        // outside the timed region), like the Baileys row decrypts one sealed frame repeatedly.
        b.iter_batched(
            || transport_pair().1.recv,
            |mut recv| recv.decrypt(black_box(&sealed)).expect("authentic frame"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
