//! The WhatsApp server simulator (`staylinked sim`): a Noise XX responder with its own root
//! key, accounts with a simulated primary phone, QR and pair-code linking, 515, login, ping,
//! the device limit, replacement (440), removal (401) and fault injection, message routing
//! (per-device offline queues, usync, prekey bundles, groups; phones are full Signal peers),
//! plus the JSON admin API. Used by tests, the demo and the Baileys interop check.
//!
//! `core` is sans-IO (one state machine for the whole server); `server` is the tokio/axum
//! shell. Never used in production paths.

mod account;
#[cfg(test)]
mod acks_e2e;
mod admin;
pub mod core;
pub mod faults;
mod group;
mod phone;
mod prekeys;
mod queue;
mod server;
pub mod settings;
#[doc(hidden)]
pub mod testing;

pub use self::core::provision::{CompanionKeys, Provisioned};
pub use self::core::{AdminError, ConnId, ConnOutput, DeviceInfo, Sim, SimConfig};
pub use account::MAX_COMPANIONS;
pub use faults::{Fault, Stats};
pub use phone::{DeliveryState, InboxEntry, SentEntry};
pub use server::{Server, SimStopped, StartError};
pub use settings::Settings;
