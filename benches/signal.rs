//! Signal bench (placeholder until written).
fn main() {}
