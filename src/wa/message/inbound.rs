//! The inbound `<message>` parser (protocol/11-messages.md §6): turns a server stanza into an
//! [`InboundMessage`] with its `<enc>` children in stanza order. It decrypts nothing and
//! decides nothing about acks; see `receipt` for the answers.

use super::enc::EncType;
use super::error::{StanzaError, cut};
use super::parse::{attr_text, bytes_of, expect_tag, opt_jid, opt_u64, req_attr, req_jid};
use crate::wa::binary::Node;
use crate::wa::jid::Jid;

/// One `<enc>` child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enc {
    /// pkmsg, msg or skmsg.
    pub kind: EncType,
    /// The `v` attribute (2 = padded protobuf; 3 = Messenger transport, unsupported).
    pub version: u8,
    /// The ciphertext.
    pub ciphertext: Vec<u8>,
    /// The sender's retry count (`count`), present on some resends.
    pub count: Option<u32>,
    /// `mediatype`, when the sender set it.
    pub media_type: Option<String>,
    /// `decrypt-fail="hide"`: do not show a placeholder if decryption fails.
    pub hide_on_fail: bool,
}

/// A parsed inbound `<message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The message id.
    pub id: String,
    /// `from`: the sending device (1:1) or the group / broadcast.
    pub from: Jid,
    /// `participant`: the sending device in groups and broadcasts.
    pub participant: Option<Jid>,
    /// `recipient`: the chat, on copies of our own messages sent from another of our devices.
    pub recipient: Option<Jid>,
    /// `t`: server time (unix seconds); retry receipts copy it.
    pub t: u64,
    /// `type` (`text`, `media`, …).
    pub msg_type: String,
    /// `category` (`peer` for own-device protocol messages).
    pub category: Option<String>,
    /// `notify`: the sender's push name.
    pub notify: Option<String>,
    /// `addressing_mode` (`pn` / `lid`), groups.
    pub addressing_mode: Option<String>,
    /// True when delivered from the offline queue (`offline` present and non-empty).
    pub offline: bool,
    /// The `<enc>` children, in stanza order (pairwise SKDM before `skmsg`).
    pub encs: Vec<Enc>,
    /// `<device-identity>` bytes (accompanies a pkmsg).
    pub device_identity: Option<Vec<u8>>,
    /// `<unavailable type>`: the server could not deliver the content to this device.
    pub unavailable: Option<String>,
}

impl InboundMessage {
    /// The device that sent it (`participant` if present, else `from`): the Signal address
    /// for pkmsg/msg, and the sender-key sender for skmsg.
    pub fn sender(&self) -> &Jid {
        self.participant.as_ref().unwrap_or(&self.from)
    }

    /// True for group and broadcast stanzas (`participant` names the sender).
    pub fn is_group_like(&self) -> bool {
        self.from.is_group() || self.from.is_broadcast()
    }

    /// True for a peer (own-device protocol) message.
    pub fn is_peer(&self) -> bool {
        self.category.as_deref() == Some("peer")
    }
}

/// Parses one `<enc>` child.
pub(crate) fn parse_enc(n: &Node) -> Result<Enc, StanzaError> {
    let kind_s = req_attr(n, "enc", "type")?;
    let kind = EncType::from_attr(&kind_s).ok_or_else(|| StanzaError::InvalidAttr {
        tag: "enc",
        attr: "type",
        value: cut(&kind_s, 64),
    })?;
    let version = match attr_text(n, "v") {
        None => 2,
        Some(v) => {
            v.parse().map_err(|_| StanzaError::InvalidAttr { tag: "enc", attr: "v", value: cut(&v, 64) })?
        }
    };
    let count = match opt_u64(n, "enc", "count")? {
        None => None,
        Some(c) => Some(u32::try_from(c).map_err(|_| StanzaError::InvalidAttr {
            tag: "enc",
            attr: "count",
            value: c.to_string(),
        })?),
    };
    Ok(Enc {
        kind,
        version,
        ciphertext: bytes_of(n, "enc")?.to_vec(),
        count,
        media_type: attr_text(n, "mediatype"),
        hide_on_fail: attr_text(n, "decrypt-fail").as_deref() == Some("hide"),
    })
}

/// Parses an inbound `<message>`. `id`, `from` and `t` are required; a message needs at least
/// one `<enc>` or an `<unavailable>`; malformed `<enc>` children are errors.
pub fn parse_message(node: &Node) -> Result<InboundMessage, StanzaError> {
    expect_tag(node, "message")?;
    let t = opt_u64(node, "message", "t")?.ok_or(StanzaError::MissingAttr { tag: "message", attr: "t" })?;
    let encs = node.children_with_tag("enc").map(parse_enc).collect::<Result<Vec<_>, _>>()?;
    let unavailable = node.child("unavailable").map(|u| attr_text(u, "type").unwrap_or_default());
    if encs.is_empty() && unavailable.is_none() {
        return Err(StanzaError::MissingChild { parent: "message", child: "enc" });
    }
    let device_identity = match node.child("device-identity") {
        Some(d) => Some(bytes_of(d, "device-identity")?.to_vec()),
        None => None,
    };
    Ok(InboundMessage {
        id: req_attr(node, "message", "id")?,
        from: req_jid(node, "message", "from")?,
        participant: opt_jid(node, "message", "participant")?,
        recipient: opt_jid(node, "message", "recipient")?,
        t,
        msg_type: attr_text(node, "type").unwrap_or_default(),
        category: attr_text(node, "category"),
        notify: attr_text(node, "notify"),
        addressing_mode: attr_text(node, "addressing_mode"),
        offline: attr_text(node, "offline").is_some_and(|o| !o.is_empty()),
        encs,
        device_identity,
        unavailable,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wa::message::fixtures::{DM_IN, DM_IN_DSM, DM_IN_OFFLINE, GROUP_IN, arb_node, node};

    fn j(s: &str) -> Jid {
        s.parse().unwrap()
    }

    /// A plain 1:1 msg from the transcript parses; the sender is the `from` device.
    #[test]
    fn parses_dm() {
        let m = parse_message(&node(DM_IN)).unwrap();
        assert_eq!(m.id, "3EB0A1F2587FA88E512B81");
        assert_eq!(*m.sender(), j("15550000002:1@s.whatsapp.net"));
        assert_eq!(
            (m.t, m.msg_type.as_str(), m.offline, m.is_group_like()),
            (1_795_436_576, "text", false, false)
        );
        assert_eq!(m.encs.len(), 1);
        assert_eq!((m.encs[0].kind, m.encs[0].version, m.encs[0].ciphertext.len()), (EncType::Msg, 2, 82));
        assert!(m.device_identity.is_none());
    }

    /// The DSM copy carries `recipient` and a device identity; the offline copy is flagged.
    #[test]
    fn parses_dsm_and_offline() {
        let m = parse_message(&node(DM_IN_DSM)).unwrap();
        assert_eq!(m.recipient, Some(j("15550000002@s.whatsapp.net")));
        assert_eq!(m.encs[0].kind, EncType::Pkmsg);
        assert_eq!(m.device_identity.as_ref().map(Vec::len), Some(178));
        let o = parse_message(&node(DM_IN_OFFLINE)).unwrap();
        assert!(o.offline);
    }

    /// A group stanza keeps enc order (SKDM pkmsg, then skmsg) and names the participant.
    #[test]
    fn parses_group() {
        let m = parse_message(&node(GROUP_IN)).unwrap();
        assert!(m.is_group_like());
        assert_eq!(*m.sender(), j("15550000002:1@s.whatsapp.net"));
        let kinds: Vec<EncType> = m.encs.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EncType::Pkmsg, EncType::Skmsg]);
        assert_eq!(m.addressing_mode.as_deref(), Some("pn"));
    }

    /// Malformed stanzas give typed errors.
    #[test]
    fn malformed_is_typed() {
        let no_t = DM_IN.replace("\"t\": \"1795436576\", ", "");
        assert_eq!(parse_message(&node(&no_t)), Err(StanzaError::MissingAttr { tag: "message", attr: "t" }));
        let bad_type = DM_IN.replace("\"type\": \"msg\"", "\"type\": \"frskmsg\"");
        assert!(matches!(
            parse_message(&node(&bad_type)),
            Err(StanzaError::InvalidAttr { attr: "type", .. })
        ));
        let no_enc = node(r#"{"tag":"message","attrs":{"id":"1","from":"1@s.whatsapp.net","t":"1"}}"#);
        assert_eq!(
            parse_message(&no_enc),
            Err(StanzaError::MissingChild { parent: "message", child: "enc" })
        );
        let unavailable = node(
            r#"{"tag":"message","attrs":{"id":"1","from":"1@s.whatsapp.net","t":"1"},"content":[{"tag":"unavailable","attrs":{"type":"view_once"}}]}"#,
        );
        assert_eq!(parse_message(&unavailable).unwrap().unavailable.as_deref(), Some("view_once"));
        let bad_from = DM_IN.replace("15550000002:1@s.whatsapp.net", "nope");
        assert!(matches!(
            parse_message(&node(&bad_from)),
            Err(StanzaError::InvalidAttr { attr: "from", .. })
        ));
        assert!(matches!(parse_message(&Node::new("receipt")), Err(StanzaError::UnexpectedTag { .. })));
    }

    proptest! {
        /// An arbitrary node never panics the message parser.
        #[test]
        fn arbitrary_node_never_panics(n in arb_node()) {
            let _ = parse_message(&n);
        }
    }
}
