//! The `<enc>` node: its `type` ([`EncType`]: pkmsg, msg, skmsg) and the builder for
//! `<enc v="2" type=…>ciphertext</enc>`. Shared by the outbound builders and the inbound parser.

use std::fmt;

use crate::wa::binary::Node;
use crate::wa::signal::MessageKind;

/// The `<enc>` version WA uses for Signal-encrypted, padded protobuf plaintexts.
pub const ENC_VERSION: &str = "2";

/// The kind of ciphertext in an `<enc>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncType {
    /// `pkmsg`: a PreKeySignalMessage (session set-up).
    Pkmsg,
    /// `msg`: a SignalMessage on an established session.
    Msg,
    /// `skmsg`: a SenderKeyMessage (group body).
    Skmsg,
}

impl EncType {
    /// The `type` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pkmsg => "pkmsg",
            Self::Msg => "msg",
            Self::Skmsg => "skmsg",
        }
    }

    /// Parses the `type` attribute; `None` for unknown kinds.
    pub fn from_attr(s: &str) -> Option<Self> {
        match s {
            "pkmsg" => Some(Self::Pkmsg),
            "msg" => Some(Self::Msg),
            "skmsg" => Some(Self::Skmsg),
            _ => None,
        }
    }
}

impl From<MessageKind> for EncType {
    fn from(k: MessageKind) -> Self {
        match k {
            MessageKind::PreKey => Self::Pkmsg,
            MessageKind::Whisper => Self::Msg,
        }
    }
}

impl fmt::Display for EncType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `<enc v="2" type=…>ciphertext</enc>` (no other attributes, as Baileys sends plain text).
pub fn enc_node(kind: EncType, ciphertext: &[u8]) -> Node {
    Node::new("enc").attr("v", ENC_VERSION).attr("type", kind.as_str()).bytes(ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute names round-trip and Signal's kinds map to the wire names.
    #[test]
    fn names_round_trip() {
        for k in [EncType::Pkmsg, EncType::Msg, EncType::Skmsg] {
            assert_eq!(EncType::from_attr(k.as_str()), Some(k));
        }
        assert_eq!(EncType::from_attr("frskmsg"), None);
        assert_eq!(EncType::from(MessageKind::PreKey), EncType::Pkmsg);
        assert_eq!(EncType::from(MessageKind::Whisper).to_string(), "msg");
        let n = enc_node(EncType::Skmsg, &[1, 2]);
        assert_eq!(
            (n.attr_str("v"), n.attr_str("type"), n.content_bytes()),
            (Some("2"), Some("skmsg"), Some(&[1u8, 2][..]))
        );
    }
}
