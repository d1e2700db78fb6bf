//! The single integration-test binary (rustls style): one topic module per area, run against the
//! in-process simulator and the stores on 127.0.0.1.

// clippy.toml allows unwrap/expect/print inside #[test] fns only; the fixture helpers of this
// test binary need them too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod acks;
mod api_messages;
mod api_routes;
mod bench_scale;
mod chaos;
mod deploy_files;
mod durability;
mod host_lifecycle;
mod host_limits;
mod host_process;
mod host_tenant_state;
mod host_util;
mod key_rotation;
mod messaging;
mod messaging_crash;
mod messaging_fidelity;
mod protocol_fidelity;
mod security_api;
mod security_process;
mod sim_lifecycle;
mod sim_pairing;
mod store_conformance;
mod store_fault;
mod store_wrappers;
mod support;
mod tenant_config;
