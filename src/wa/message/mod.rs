//! End-to-end message stanzas, sans-IO: message ids, plaintext padding and decoding, phash,
//! usync device queries, prekey bundle fetches, outbound fan-out stanzas (1:1, own devices,
//! groups, retry resends), the inbound `<message>` parser, receipts and acks.
//! Pure builders and parsers only: no Signal state, no store, no clock, no OS RNG (time and
//! randomness are arguments). Wiring (which devices, which sessions) belongs to the client.

pub mod ack;
pub mod content;
pub mod enc;
pub mod error;
pub mod id;
pub mod inbound;
pub mod outbound;
pub mod padding;
pub mod phash;
pub mod prekeys;
pub mod receipt;
pub mod relay;
pub mod usync;

mod parse;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

pub use error::{PlaintextError, StanzaError};
