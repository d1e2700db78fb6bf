//! staylinked: a hydrate-and-run WhatsApp Web multi-device gateway.
//!
//! Crate map (dependencies point one way: `api → host → {store, wa}`, `sim → wa`):
//! - [`wa`]: the sans-IO WhatsApp Web protocol core (frames, Noise, binary nodes, protobufs, JIDs).
//! - [`store`]: the session store (Store trait, Firestore / redb / memory backends, encryption at rest).
//! - [`types`]: cross-layer newtypes (`TenantId`, `FencingToken`).
//! - `host`, `api`, `sim`: arrive with their issues (host, API, simulator).

pub mod store;
pub mod types;
pub mod wa;
