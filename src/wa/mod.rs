//! The sans-IO WhatsApp Web protocol core: bytes, `now` and commands in; frames, events,
//! deltas and deadlines out. Nothing here opens a socket, reads a clock or the OS RNG.

pub mod binary;
pub mod client;
pub mod frame;
pub mod jid;
pub mod message;
pub mod noise;
pub mod pair;
pub mod proto;
pub mod signal;
pub mod version;
