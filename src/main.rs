//! The `staylinked` command line.
fn main() {}
