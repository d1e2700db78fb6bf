//! WhatsApp JIDs as a typed value: `user[:device]@server`, plus the server-only form
//! `@server`. Owns parsing ([`FromStr`]) and the canonical text form ([`fmt::Display`]); it
//! does not know the binary wire forms (those live in `wa::binary`).
//!
//! Canonical text: device 0 is not printed (`u:0@s.whatsapp.net` parses and prints as
//! `u@s.whatsapp.net`, as Baileys does), and a server-only JID prints as `@server`, the form
//! that goes out as `JID_PAIR` with an empty user (protocol/02-binary-node.md §5).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The server (domain) part of a JID. Known servers are variants; anything else is kept
/// verbatim in [`Server::Other`] (build servers with [`Server::from_name`] so a known name
/// never ends up in `Other`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Server {
    /// `s.whatsapp.net`: phone-number users and their devices.
    User,
    /// `lid`: hidden (LID) users and their devices.
    Lid,
    /// `g.us`: groups.
    Group,
    /// `broadcast`: broadcast lists and `status@broadcast`.
    Broadcast,
    /// `newsletter`: channels.
    Newsletter,
    /// `hosted`: hosted (cloud API) devices.
    Hosted,
    /// `hosted.lid`: hosted devices in LID space.
    HostedLid,
    /// `msgr`: Messenger users.
    Msgr,
    /// `interop`: interoperability (third-party) users.
    Interop,
    /// `c.us`: the legacy user server.
    Legacy,
    /// `bot`: Meta AI bots.
    Bot,
    /// Any other server name, kept verbatim (never empty when produced by this crate).
    Other(String),
}

impl Server {
    /// Maps a server name to its variant; unknown names become [`Server::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "s.whatsapp.net" => Self::User,
            "lid" => Self::Lid,
            "g.us" => Self::Group,
            "broadcast" => Self::Broadcast,
            "newsletter" => Self::Newsletter,
            "hosted" => Self::Hosted,
            "hosted.lid" => Self::HostedLid,
            "msgr" => Self::Msgr,
            "interop" => Self::Interop,
            "c.us" => Self::Legacy,
            "bot" => Self::Bot,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The server name as written on the wire and in text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::User => "s.whatsapp.net",
            Self::Lid => "lid",
            Self::Group => "g.us",
            Self::Broadcast => "broadcast",
            Self::Newsletter => "newsletter",
            Self::Hosted => "hosted",
            Self::HostedLid => "hosted.lid",
            Self::Msgr => "msgr",
            Self::Interop => "interop",
            Self::Legacy => "c.us",
            Self::Bot => "bot",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WhatsApp address: a user (phone number, LID, group id, ... possibly empty), a device
/// number (0 = the primary device / no device part) and a server.
///
/// `Jid::from_str(&jid.to_string()) == Ok(jid)` holds whenever `user` contains neither `@`
/// nor `:` and the server name is not empty (always true for parsed JIDs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    /// The user part; empty for a server-only JID such as `@s.whatsapp.net`.
    pub user: String,
    /// The device number; 0 means "no device part" (the primary device).
    pub device: u16,
    /// The server part.
    pub server: Server,
}

/// Why a string is not a JID.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JidError {
    /// Caller or peer error: no `@`, and the string is not a known server name either.
    #[error("jid has no '@' and is not a known server name")]
    MissingAt,
    /// Caller or peer error: nothing follows the `@`.
    #[error("jid has an empty server")]
    EmptyServer,
    /// Caller or peer error: the text after `:` is not a device number 0–65535.
    #[error("jid device {device:?} is not a number in 0..=65535")]
    InvalidDevice {
        /// The device text that failed to parse.
        device: String,
    },
}

impl Jid {
    /// A JID without a device part.
    pub fn new(user: impl Into<String>, server: Server) -> Self {
        Self { user: user.into(), device: 0, server }
    }

    /// The server-only JID (empty user), e.g. `@s.whatsapp.net`, the `to` of client iqs.
    pub fn server_jid(server: Server) -> Self {
        Self::new(String::new(), server)
    }

    /// `status@broadcast`, the address of status updates.
    pub fn status_broadcast() -> Self {
        Self::new("status", Server::Broadcast)
    }

    /// The same address on device `device` (0 removes the device part).
    #[must_use]
    pub fn with_device(mut self, device: u16) -> Self {
        self.device = device;
        self
    }

    /// The user's JID without a device part (the "non-AD" form).
    #[must_use]
    pub fn to_non_ad(&self) -> Self {
        Self { user: self.user.clone(), device: 0, server: self.server.clone() }
    }

    /// True for a group (`g.us`).
    pub fn is_group(&self) -> bool {
        self.server == Server::Group
    }

    /// True for a LID user or device (`lid`).
    pub fn is_lid(&self) -> bool {
        self.server == Server::Lid
    }

    /// True for `status@broadcast`.
    pub fn is_status_broadcast(&self) -> bool {
        self.server == Server::Broadcast && self.user == "status"
    }

    /// True for a broadcast list or status (`broadcast`).
    pub fn is_broadcast(&self) -> bool {
        self.server == Server::Broadcast
    }

    /// True for a server-only JID (empty user).
    pub fn is_server_jid(&self) -> bool {
        self.user.is_empty()
    }

    /// True when a device part is present (device > 0).
    pub fn has_device(&self) -> bool {
        self.device != 0
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.user)?;
        if self.device != 0 {
            write!(f, ":{}", self.device)?;
        }
        write!(f, "@{}", self.server)
    }
}

impl FromStr for Jid {
    type Err = JidError;

    /// Parses `user[:device]@server` (split at the first `@` and the first `:`), `@server`, or
    /// a bare known server name such as `s.whatsapp.net` (a server-only JID).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((user_part, server)) = s.split_once('@') else {
            return match Server::from_name(s) {
                Server::Other(_) => Err(JidError::MissingAt),
                known => Ok(Self::server_jid(known)),
            };
        };
        if server.is_empty() {
            return Err(JidError::EmptyServer);
        }
        let (user, device) = match user_part.split_once(':') {
            None => (user_part, 0),
            Some((user, dev)) => (user, parse_device(dev)?),
        };
        Ok(Self { user: user.to_owned(), device, server: Server::from_name(server) })
    }
}

/// A device number: 1–5 ASCII digits, at most 65535 (no sign, no spaces).
fn parse_device(dev: &str) -> Result<u16, JidError> {
    let invalid = || JidError::InvalidDevice { device: dev.to_owned() };
    if dev.is_empty() || !dev.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    dev.parse::<u16>().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Known textual forms parse into the expected parts and print back canonically.
    #[test]
    fn parse_known_forms() {
        let j: Jid = "15551234567:12@s.whatsapp.net".parse().unwrap();
        assert_eq!(j, Jid { user: "15551234567".into(), device: 12, server: Server::User });
        assert_eq!(j.to_string(), "15551234567:12@s.whatsapp.net");
        assert_eq!(j.to_non_ad().to_string(), "15551234567@s.whatsapp.net");

        let g: Jid = "120363025246125486@g.us".parse().unwrap();
        assert!(g.is_group() && !g.has_device());

        let s: Jid = "status@broadcast".parse().unwrap();
        assert!(s.is_status_broadcast() && s.is_broadcast());
        assert_eq!(s, Jid::status_broadcast());

        let l: Jid = "987654321:3@lid".parse().unwrap();
        assert!(l.is_lid());
        assert_eq!(l.device, 3);

        let server: Jid = "@s.whatsapp.net".parse().unwrap();
        assert_eq!(server, Jid::server_jid(Server::User));
        assert!(server.is_server_jid());
        assert_eq!(server.to_string(), "@s.whatsapp.net");
        assert_eq!("s.whatsapp.net".parse::<Jid>().unwrap(), server);
        assert_eq!("g.us".parse::<Jid>().unwrap(), Jid::server_jid(Server::Group));

        let other: Jid = "a@example.com".parse().unwrap();
        assert_eq!(other.server, Server::Other("example.com".into()));
        assert_eq!(Jid::new("1", Server::Hosted).with_device(2).to_string(), "1:2@hosted");
    }

    /// Device 0 is the primary device and prints without `:0`, like Baileys' decoder.
    #[test]
    fn device_zero_is_normalised() {
        let j: Jid = "u:0@s.whatsapp.net".parse().unwrap();
        assert_eq!(j.device, 0);
        assert_eq!(j.to_string(), "u@s.whatsapp.net");
    }

    /// Malformed strings give the matching typed error.
    #[test]
    fn parse_errors() {
        assert_eq!("hello".parse::<Jid>(), Err(JidError::MissingAt));
        assert_eq!("".parse::<Jid>(), Err(JidError::MissingAt));
        assert_eq!("u@".parse::<Jid>(), Err(JidError::EmptyServer));
        for bad in ["u:@s.whatsapp.net", "u:x@lid", "u:65536@lid", "u:+1@lid", "u:1:2@lid", "u: 1@lid"] {
            assert!(matches!(bad.parse::<Jid>(), Err(JidError::InvalidDevice { .. })), "{bad}");
        }
    }

    fn server_strategy() -> impl Strategy<Value = Server> {
        prop_oneof![
            Just(Server::User),
            Just(Server::Lid),
            Just(Server::Group),
            Just(Server::Broadcast),
            Just(Server::Newsletter),
            Just(Server::Hosted),
            Just(Server::HostedLid),
            Just(Server::Msgr),
            Just(Server::Interop),
            Just(Server::Legacy),
            Just(Server::Bot),
            // Through from_name, so a generated name that happens to be known is not `Other`.
            "[a-z][a-z0-9.-]{0,12}".prop_map(|s| Server::from_name(&s)),
        ]
    }

    proptest! {
        /// parse(display(jid)) == jid for every JID whose user has no `@` or `:`.
        #[test]
        fn display_parse_round_trip(user in "[0-9a-zA-Z._-]{0,24}", device: u16, server in server_strategy()) {
            let jid = Jid { user, device, server };
            let text = jid.to_string();
            prop_assert_eq!(text.parse::<Jid>(), Ok(jid));
        }

        /// display(parse(s)) == s for canonical strings (no `:0`, user without `:`).
        #[test]
        fn canonical_text_round_trip(user in "[0-9a-z._-]{0,24}", device in 1u16.., server in "[a-z][a-z0-9.@-]{0,12}") {
            let text = format!("{user}:{device}@{server}");
            prop_assert_eq!(text.parse::<Jid>().map(|j| j.to_string()), Ok(text));
        }

        /// Arbitrary text never panics the parser, and whatever parses prints back to a string
        /// that parses to the same JID.
        #[test]
        fn arbitrary_text_never_panics(s in prop_oneof![any::<String>(), "[0-9a-z:@._-]{0,30}"]) {
            if let Ok(jid) = s.parse::<Jid>() {
                prop_assert_eq!(jid.to_string().parse::<Jid>(), Ok(jid));
            }
        }
    }
}
