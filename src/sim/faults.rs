//! Faults the admin API can inject into a device's live connection, and the simulator's
//! counters (`GET /admin/stats`).
//!
//! Data only; the connection logic in `sim::core` acts on them.

use std::collections::BTreeMap;

use serde::Serialize;

/// A fault injected into one device's live connection (`POST /admin/faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Close the socket abruptly, nothing sent.
    Drop,
    /// `<stream:error><conflict type="replaced"/></stream:error>` (440), then close.
    Conflict,
    /// Unlink the device: `<stream:error code="401"><conflict type="device_removed"/>`.
    Logout,
    /// Ban the account: `<failure reason="403"/>` now and at every later login.
    Ban,
    /// `<stream:error code="503"/>`, `<xmlstreamend/>`, close.
    Unavailable,
    /// Stop answering keepalive pings on this connection.
    MutePongs,
    /// Send one frame that does not decrypt.
    CorruptFrame,
    /// Flip one byte of the last `<enc>` of the next message routed to this device (it need
    /// not be online), so its decryption fails and it asks for a retry.
    CorruptNextMessage,
    /// Like [`Fault::CorruptNextMessage`], but every resend of that message to this device is
    /// spoilt too, so it never decrypts (the device must give up and ack it).
    UndecryptableNextMessage,
}

impl Fault {
    /// Parses the wire name used by the admin API.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "drop" => Self::Drop,
            "conflict" => Self::Conflict,
            "logout" => Self::Logout,
            "ban" => Self::Ban,
            "unavailable" => Self::Unavailable,
            "mute_pongs" => Self::MutePongs,
            "corrupt_frame" => Self::CorruptFrame,
            "corrupt_next_message" => Self::CorruptNextMessage,
            "undecryptable_next_message" => Self::UndecryptableNextMessage,
            _ => return None,
        })
    }
}

/// Cumulative counters since the simulator started.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// Connections open right now.
    pub open_connections: u64,
    /// Noise handshakes completed.
    pub handshakes: u64,
    /// Pairings completed (verified `pair-device-sign`).
    pub pairings: u64,
    /// Logins answered with `<success>`.
    pub logins: u64,
    /// Connections replaced by a newer one for the same device (440).
    pub replaced: u64,
    /// Stream errors and failures sent, by code (`"515"`, `"440"`, `"401"`, ...).
    pub stream_errors: BTreeMap<String, u64>,
    /// Client `<message>` stanzas accepted and routed (phones' sends included).
    pub messages_routed: u64,
    /// Per-device copies handed to companions (live or queued).
    pub messages_to_devices: u64,
    /// Copies that found their device offline (or not yet active) and stayed queued.
    pub messages_queued: u64,
    /// Copies the device answered (receipt or nack) and that left its queue.
    pub messages_delivered: u64,
    /// Stanzas redelivered from a queue with `offline="1"`.
    pub offline_redelivered: u64,
    /// Receipts forwarded to the sender's devices (retry receipts included).
    pub receipts_forwarded: u64,
    /// Retry receipts forwarded.
    pub retry_receipts: u64,
    /// Messages decrypted by simulated phones.
    pub phone_decrypted: u64,
    /// Messages simulated phones could not decrypt.
    pub phone_decrypt_failures: u64,
    /// Messages sent by simulated phones (admin API).
    pub phone_sent: u64,
    /// Message copies whose ciphertext a `corrupt_next_message` / `undecryptable_next_message`
    /// fault altered.
    pub corrupted: u64,
    /// Messages decrypted by accounts' hosted (Cloud API) devices.
    pub hosted_decrypted: u64,
    /// Group message copies a client addressed to a hosted device (should stay 0).
    pub hosted_group_copies: u64,
    /// Calls placed by simulated phones (admin API).
    pub calls: u64,
    /// Stanzas pushed to companions and not answered yet (all device queues, now).
    pub unacked: u64,
    /// Streams ended with `<stream:error><ack/>` because a device did not answer a stanza
    /// within the ack timeout.
    pub ack_stream_errors: u64,
}

impl Stats {
    /// Counts one stream error / failure with this code.
    pub(crate) fn count_error(&mut self, code: &str) {
        *self.stream_errors.entry(code.to_owned()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fault name of the admin contract parses, and nothing else does.
    #[test]
    fn fault_names() {
        for n in [
            "drop",
            "conflict",
            "logout",
            "ban",
            "unavailable",
            "mute_pongs",
            "corrupt_frame",
            "corrupt_next_message",
            "undecryptable_next_message",
        ] {
            assert!(Fault::parse(n).is_some(), "{n}");
        }
        assert_eq!(Fault::parse("nope"), None);
    }
}
