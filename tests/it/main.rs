//! The single integration-test binary: topic modules run against the in-process simulator on
//! 127.0.0.1 (rustls-style layout).

mod sim_pairing;
