//! End-to-end message stanzas, sans-IO: message ids, plaintext padding and decoding, phash,
//! usync device queries, prekey bundle fetches, the offline-queue `<ib>` handshake, outbound fan-out stanzas (1:1, own devices,
//! groups, retry resends), the inbound `<message>` parser, receipts and acks.
//! Pure builders and parsers only: no Signal state, no store, no clock, no OS RNG (time and
//! randomness are arguments). Wiring (which devices, which sessions) belongs to the client.

pub mod ack;
pub mod content;
pub mod enc;
pub mod error;
pub mod id;
pub mod inbound;
pub mod offline;
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

pub use ack::{ServerAck, ack_for, parse_ack};
pub use content::{
    DecodedMessage, MessageContent, content_of, decode_plaintext, device_sent, encode_plaintext,
    skdm_message, text_message,
};
pub use enc::{EncType, enc_node};
pub use error::{PlaintextError, StanzaError};
pub use id::new_message_id;
pub use inbound::{Enc, InboundMessage, parse_message};
pub use offline::{IbEvent, offline_batch, offline_end, offline_preview, parse_ib};
pub use outbound::{
    DeviceCiphertext, GroupSend, dm_retry_stanza, dm_stanza, group_retry_stanza, group_stanza, peer_stanza,
};
pub use padding::{pad, unpad};
pub use phash::participant_hash;
pub use prekeys::{parse_prekey_fetch, parse_prekey_result, prekey_fetch, prekey_result};
pub use receipt::{
    InboundReceipt, ReceiptType, RetryKeys, RetryRequest, delivery_receipt, parse_receipt, read_receipt,
    retry_keys_node, retry_receipt,
};
pub use relay::{RelayMessage, delivery_for, parse_relay};
pub use usync::{UserDevices, device_query, device_result, parse_device_query, parse_device_result};
