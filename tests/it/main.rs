//! The single integration-test binary (rustls style): one topic module per area.

mod store_conformance;
mod store_wrappers;
