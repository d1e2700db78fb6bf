//! The single integration-test binary: topic modules run against the in-process simulator on
//! 127.0.0.1 (rustls-style layout).

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] fns fail loudly by design")]

mod sim_pairing;
