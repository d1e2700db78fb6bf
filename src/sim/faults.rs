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
        for n in ["drop", "conflict", "logout", "ban", "unavailable", "mute_pongs", "corrupt_frame"] {
            assert!(Fault::parse(n).is_some(), "{n}");
        }
        assert_eq!(Fault::parse("nope"), None);
    }
}
