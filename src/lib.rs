//! staylinked: a hydrate-and-run WhatsApp Web multi-device gateway.
//!
//! Crate map (dependencies point one way: `api → host → {store, wa}`, `sim → wa`):
//! - [`wa`]: the sans-IO WhatsApp Web protocol core (frames, Noise, binary nodes, protobufs, JIDs).
//! - [`conn`]: the tokio/tokio-tungstenite driver of the sans-IO client (dial, pump, persist barrier, 515).
//! - [`sim`]: the WhatsApp server simulator (`staylinked sim`), sans-IO core + tokio/axum shell.
//! - [`store`]: the session store (Store trait, Firestore / redb / memory backends, encryption at rest).
//! - [`types`]: cross-layer newtypes (`TenantId`, `FencingToken`).
//! - [`host`]: the hydrate-and-run host (supervisor, tenant actors, leases, policy, shutdown).
//! - [`api`]: the HTTP API (axum) over the host's registry.
//! - [`demo`]: `staylinked demo` and the link helpers tests share.
//! - [`config`]: process configuration (env first, flags mirror it).
//! - [`chaos`]: `staylinked chaos`, the sleep/wake/deploy-overlap chaos run against real processes.
//! - [`bench`]: `staylinked bench scale` (the gateway binary at N tenants vs Baileys).

pub mod api;
pub mod bench;
pub mod chaos;
pub mod config;
pub mod conn;
pub mod demo;
pub mod host;
pub mod sim;
pub mod store;
pub mod types;
pub mod wa;
