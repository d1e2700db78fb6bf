//! The single integration-test binary (rustls style): one topic module per area.

// clippy.toml allows unwrap/expect/print inside #[test] fns only; the fixture helpers of this
// test binary need them too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod store_conformance;
mod store_wrappers;
