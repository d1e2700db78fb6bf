//! The client's connection state machine (sans-IO).

pub mod reason;
pub use reason::{DisconnectReason, ProtocolError};
