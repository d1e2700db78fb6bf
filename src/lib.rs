//! staylinked: a hydrate-and-run WhatsApp Web multi-device gateway.
//!
//! Crate map (dependencies point one way: `api → host → {store, wa}`, `sim → wa`):
//! - [`wa`]: the sans-IO WhatsApp Web protocol core (frames, Noise, binary nodes, protobufs, JIDs).
//! - `store`, `host`, `api`, `sim`: arrive with their issues (session store, host, API, simulator).

pub mod wa;
