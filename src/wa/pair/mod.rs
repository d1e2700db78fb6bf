//! Linking a companion device: the QR string ([`qr`]), the ADV identity checks of
//! pair-success ([`adv`]) and phone-number pair codes ([`code`]).
//!
//! Pure functions; the connection state machine (`wa::client`) drives them. No IO here.

pub mod adv;
pub mod code;
pub mod qr;
