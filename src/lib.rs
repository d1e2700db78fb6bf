//! staylinked: a hydrate-and-run WhatsApp Web multi-device gateway.
//!
//! Crate map (dependencies point one way: `api → host → {store, wa}`, `sim → wa`):
//! - [`wa`]: the sans-IO WhatsApp Web protocol core (frames, Noise, binary nodes, protobufs, JIDs).
//! - [`conn`]: the tokio/tokio-tungstenite driver of the sans-IO client (dial, pump, persist barrier, 515).
//! - [`sim`]: the WhatsApp server simulator (`staylinked sim`), sans-IO core + tokio/axum shell.
//! - [`store`]: the session store (Store trait, Firestore / redb / memory backends, encryption at rest).
//! - [`types`]: cross-layer newtypes (`TenantId`, `FencingToken`).
//! - `host`, `api`: arrive with their issues (hydrate-and-run host, HTTP API).

pub mod conn;
pub mod sim;
pub mod store;
pub mod types;
pub mod wa;
