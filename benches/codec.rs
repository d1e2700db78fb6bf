//! Criterion benchmarks of the wire codecs (filled in as the codecs land).
fn main() {}
