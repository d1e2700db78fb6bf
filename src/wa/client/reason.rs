//! Why a connection ended: one typed [`DisconnectReason`] for every `<failure>`, `<stream:error>`,
//! stream end, socket close and local cause listed in protocol/05-stream-errors.md.
//!
//! Classification only: no IO, and nothing here decides *when* to reconnect (that is the host's
//! policy); the predicates say *whether* a reason allows it.

use std::fmt;
use std::time::Duration;

/// Why the connection ended (or was refused). Produced by [`crate::wa::client::Client`] as
/// `Output::Close` and mapped to a policy by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// `<stream:error code="515"/>`: the server asks for a new connection, always right after
    /// pairing. Reconnect at once (as a login after pairing).
    RestartRequired,
    /// The device is unlinked: `<failure reason="401|403|406">`, `<stream:error code="401">`
    /// (with or without `<conflict type="device_removed"/>`) or `code="516"`. Credentials are
    /// dead: wipe them and wait for a new link request.
    LoggedOut {
        /// The numeric code the server sent (401, 403, 406 or 516).
        code: u16,
        /// True when it came as a `<failure>` at login rather than on a live stream.
        on_connect: bool,
    },
    /// Another connection logged in with the same device: `<conflict type="replaced"/>`,
    /// `code="440"` or `code="409"` on a stream. Never reconnect automatically.
    Replaced,
    /// `<failure reason="402">`: temporary ban. Do not reconnect before `expire`.
    TempBanned {
        /// Ban reason code (`code` attribute; 101–106 are known).
        code: Option<u16>,
        /// How long the ban lasts (`expire` attribute, seconds).
        expire: Option<Duration>,
    },
    /// `<failure reason="405">`: the client version is too old. No reconnect.
    ClientOutdated,
    /// Another `<failure>` code (400, 409, 413, 414, 415, 418, 501, ...) or none: login was
    /// refused for a reason that a retry will not fix.
    LoginRefused {
        /// The `reason` attribute, if it was a number.
        reason: Option<u16>,
    },
    /// Server trouble: `<failure reason="500|503">` or `<stream:error code="503|500">`.
    /// Reconnect with backoff.
    ServiceUnavailable {
        /// The numeric code the server sent.
        code: u16,
    },
    /// `<stream:error code="429">`: rate limited; reconnect with a larger backoff.
    RateLimited,
    /// Any other `<stream:error>`: `<ack/>`, `<xml-not-well-formed/>`, no child, or an unknown
    /// code. Reconnect with backoff.
    StreamError {
        /// The numeric `code` attribute, if present.
        code: Option<u16>,
        /// The first child's tag, if any (`ack`, `xml-not-well-formed`, ...).
        child: Option<String>,
    },
    /// `<xmlstreamend/>` without a preceding stream error: the server recycled the stream.
    StreamEnd,
    /// The socket closed without any stanza saying why.
    ConnectionClosed,
    /// Keepalive detected a dead socket: nothing was received for too long.
    ConnectionLost,
    /// No server hello (or no answer to the login) in time.
    ConnectTimeout,
    /// Every QR ref expired without a scan.
    QrTimeout,
    /// `<ib><downgrade_webclient/></ib>`: the phone does not support multi-device (BL 411).
    MultideviceMismatch,
    /// The server sent bytes that break the protocol (bad frame, decrypt failure, undecodable
    /// node, bad certificate, bad pairing data). The detail says which.
    Protocol(ProtocolError),
    /// The application asked to log out (`remove-companion-device`); creds are dead.
    LocalLogout,
    /// The application closed the connection.
    LocalClose,
}

/// What part of the protocol the server broke.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Framing failed (bad length, oversized frame).
    Frame(String),
    /// The Noise handshake failed (bad server hello, decrypt, certificate chain).
    Handshake(String),
    /// A transport frame did not decrypt.
    Decrypt,
    /// A decrypted frame is not a valid binary node.
    Decode(String),
    /// The pair-success stanza failed verification (HMAC, signature, shape).
    Pairing(String),
    /// A stanza arrived that is not valid in the current state.
    Unexpected(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(d) => write!(f, "bad frame: {d}"),
            Self::Handshake(d) => write!(f, "handshake failed: {d}"),
            Self::Decrypt => f.write_str("transport frame did not decrypt"),
            Self::Decode(d) => write!(f, "undecodable node: {d}"),
            Self::Pairing(d) => write!(f, "pairing verification failed: {d}"),
            Self::Unexpected(d) => write!(f, "unexpected stanza: {d}"),
        }
    }
}

fn parse_code(s: Option<&str>) -> Option<u16> {
    s.and_then(|v| v.trim().parse::<u16>().ok())
}

impl DisconnectReason {
    /// Classifies a `<failure reason=… code=… expire=…/>` node by its attributes.
    pub fn from_failure(reason: Option<&str>, code: Option<&str>, expire: Option<&str>) -> Self {
        match parse_code(reason) {
            Some(c @ (401 | 403 | 406)) => Self::LoggedOut { code: c, on_connect: true },
            Some(402) => Self::TempBanned {
                code: parse_code(code),
                expire: expire.and_then(|e| e.trim().parse::<u64>().ok()).map(Duration::from_secs),
            },
            Some(405) => Self::ClientOutdated,
            Some(c @ (500 | 503)) => Self::ServiceUnavailable { code: c },
            other => Self::LoginRefused { reason: other },
        }
    }

    /// Classifies a `<stream:error [code=…]>` by its code and its first child (`tag`,
    /// `type` attribute).
    pub fn from_stream_error(code: Option<&str>, child: Option<(&str, Option<&str>)>) -> Self {
        let code = parse_code(code);
        let child_tag = child.map(|(t, _)| t);
        match (code, child) {
            (Some(515), _) => Self::RestartRequired,
            (Some(c @ (401 | 516)), _) => Self::LoggedOut { code: c, on_connect: false },
            // Real servers send device_removed with code 401; accept it without too.
            (None, Some(("conflict", Some("device_removed")))) => {
                Self::LoggedOut { code: 401, on_connect: false }
            }
            (None, Some(("conflict", _))) | (Some(409 | 440), _) => Self::Replaced,
            (Some(429), _) => Self::RateLimited,
            (Some(c @ (500 | 503)), _) => Self::ServiceUnavailable { code: c },
            (code, _) => Self::StreamError { code, child: child_tag.map(str::to_owned) },
        }
    }

    /// True when the credentials are dead (wipe them; only an explicit link request may pair
    /// again).
    pub fn is_logged_out(&self) -> bool {
        matches!(self, Self::LoggedOut { .. } | Self::LocalLogout)
    }

    /// True when reconnecting may succeed (immediately for [`Self::RestartRequired`], with
    /// backoff otherwise). False for logout, replacement, bans and refusals.
    pub fn should_reconnect(&self) -> bool {
        matches!(
            self,
            Self::RestartRequired
                | Self::ServiceUnavailable { .. }
                | Self::RateLimited
                | Self::StreamError { .. }
                | Self::StreamEnd
                | Self::ConnectionClosed
                | Self::ConnectionLost
                | Self::ConnectTimeout
                | Self::Protocol(_)
        )
    }

    /// True only for the 515 restart, which must be followed by an immediate reconnect.
    pub fn is_restart(&self) -> bool {
        matches!(self, Self::RestartRequired)
    }

    /// The status code Baileys would report for the same end (`DisconnectReason` numbers),
    /// for status documents and logs.
    pub fn code(&self) -> u16 {
        match self {
            Self::RestartRequired => 515,
            Self::LoggedOut { code, .. } => *code,
            Self::Replaced => 440,
            Self::TempBanned { .. } => 402,
            Self::ClientOutdated => 405,
            Self::LoginRefused { reason } => reason.unwrap_or(500),
            Self::ServiceUnavailable { code } => *code,
            Self::RateLimited => 429,
            Self::StreamError { code, .. } => code.unwrap_or(500),
            Self::StreamEnd | Self::ConnectionClosed | Self::LocalClose => 428,
            Self::ConnectionLost | Self::ConnectTimeout | Self::QrTimeout => 408,
            Self::MultideviceMismatch => 411,
            Self::Protocol(_) => 500,
            Self::LocalLogout => 401,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RestartRequired => f.write_str("restart required (515)"),
            Self::LoggedOut { code, on_connect } => {
                write!(f, "logged out ({code}{})", if *on_connect { ", at login" } else { "" })
            }
            Self::Replaced => f.write_str("replaced by another connection (440)"),
            Self::TempBanned { code, expire } => {
                write!(f, "temporarily banned (code {code:?}, expire {expire:?})")
            }
            Self::ClientOutdated => f.write_str("client outdated (405)"),
            Self::LoginRefused { reason } => write!(f, "login refused (reason {reason:?})"),
            Self::ServiceUnavailable { code } => write!(f, "service unavailable ({code})"),
            Self::RateLimited => f.write_str("rate limited (429)"),
            Self::StreamError { code, child } => write!(f, "stream error (code {code:?}, child {child:?})"),
            Self::StreamEnd => f.write_str("stream ended by server"),
            Self::ConnectionClosed => f.write_str("connection closed"),
            Self::ConnectionLost => f.write_str("connection lost (keepalive)"),
            Self::ConnectTimeout => f.write_str("connect timed out"),
            Self::QrTimeout => f.write_str("qr refs expired"),
            Self::MultideviceMismatch => f.write_str("phone does not support multi-device (411)"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::LocalLogout => f.write_str("logged out locally"),
            Self::LocalClose => f.write_str("closed locally"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every failure code of protocol/05 §1 maps to the documented class.
    #[test]
    fn failure_table() {
        let cases: &[(Option<&str>, DisconnectReason)] = &[
            (Some("401"), DisconnectReason::LoggedOut { code: 401, on_connect: true }),
            (Some("403"), DisconnectReason::LoggedOut { code: 403, on_connect: true }),
            (Some("406"), DisconnectReason::LoggedOut { code: 406, on_connect: true }),
            (Some("405"), DisconnectReason::ClientOutdated),
            (Some("500"), DisconnectReason::ServiceUnavailable { code: 500 }),
            (Some("503"), DisconnectReason::ServiceUnavailable { code: 503 }),
            (Some("400"), DisconnectReason::LoginRefused { reason: Some(400) }),
            (Some("409"), DisconnectReason::LoginRefused { reason: Some(409) }),
            (Some("413"), DisconnectReason::LoginRefused { reason: Some(413) }),
            (Some("414"), DisconnectReason::LoginRefused { reason: Some(414) }),
            (Some("415"), DisconnectReason::LoginRefused { reason: Some(415) }),
            (Some("418"), DisconnectReason::LoginRefused { reason: Some(418) }),
            (Some("501"), DisconnectReason::LoginRefused { reason: Some(501) }),
            (None, DisconnectReason::LoginRefused { reason: None }),
            (Some("abc"), DisconnectReason::LoginRefused { reason: None }),
        ];
        for (reason, want) in cases {
            assert_eq!(&DisconnectReason::from_failure(*reason, None, None), want, "reason {reason:?}");
        }
        let ban = DisconnectReason::from_failure(Some("402"), Some("101"), Some("3600"));
        assert_eq!(
            ban,
            DisconnectReason::TempBanned { code: Some(101), expire: Some(Duration::from_secs(3600)) }
        );
        assert!(!ban.should_reconnect());
    }

    /// Every stream:error shape of protocol/05 §2 maps to the documented class.
    #[test]
    fn stream_error_table() {
        use DisconnectReason as R;
        type Case<'a> = (Option<&'a str>, Option<(&'a str, Option<&'a str>)>, R);
        let cases: &[Case<'_>] = &[
            (Some("515"), None, R::RestartRequired),
            (
                Some("401"),
                Some(("conflict", Some("device_removed"))),
                R::LoggedOut { code: 401, on_connect: false },
            ),
            (None, Some(("conflict", Some("device_removed"))), R::LoggedOut { code: 401, on_connect: false }),
            (None, Some(("conflict", Some("replaced"))), R::Replaced),
            (Some("440"), None, R::Replaced),
            (Some("401"), None, R::LoggedOut { code: 401, on_connect: false }),
            (Some("409"), None, R::Replaced),
            (Some("516"), None, R::LoggedOut { code: 516, on_connect: false }),
            (Some("429"), None, R::RateLimited),
            (Some("503"), None, R::ServiceUnavailable { code: 503 }),
            (Some("500"), None, R::ServiceUnavailable { code: 500 }),
            (Some("413"), None, R::StreamError { code: Some(413), child: None }),
            (None, Some(("ack", None)), R::StreamError { code: None, child: Some("ack".into()) }),
            (
                None,
                Some(("xml-not-well-formed", None)),
                R::StreamError { code: None, child: Some("xml-not-well-formed".into()) },
            ),
            (None, None, R::StreamError { code: None, child: None }),
        ];
        for (code, child, want) in cases {
            assert_eq!(&R::from_stream_error(*code, *child), want, "code {code:?} child {child:?}");
        }
    }

    /// The predicates follow the recommended policy: logout and replace never reconnect,
    /// 515 reconnects immediately, transient ends reconnect.
    #[test]
    fn predicates() {
        use DisconnectReason as R;
        assert!(R::LoggedOut { code: 401, on_connect: false }.is_logged_out());
        assert!(R::LocalLogout.is_logged_out());
        assert!(!R::Replaced.is_logged_out());
        assert!(!R::Replaced.should_reconnect());
        assert!(!R::LoggedOut { code: 401, on_connect: true }.should_reconnect());
        assert!(R::RestartRequired.should_reconnect() && R::RestartRequired.is_restart());
        assert!(R::ConnectionLost.should_reconnect());
        assert!(R::Protocol(ProtocolError::Decrypt).should_reconnect());
        assert_eq!(R::Replaced.code(), 440);
        assert_eq!(R::ConnectionLost.code(), 408);
        assert_eq!(R::StreamEnd.code(), 428);
    }
}
