//! Server side of the outbound `<message>` (simulator): parses what a client sends (1:1
//! fan-out, group, retry resend, peer message) into per-device `<enc>` entries and the shared
//! `skmsg`, so the simulator can route each device its own copy. Pure parsing, no routing.

use super::error::StanzaError;
use super::inbound::{Enc, parse_enc};
use super::parse::{attr_text, bytes_of, expect_tag, opt_jid, req_attr, req_jid};
use crate::wa::binary::Node;
use crate::wa::jid::Jid;

/// A client's outbound `<message>` as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMessage {
    /// The message id.
    pub id: String,
    /// `to`: peer user, group, own user (peer message) or one device (1:1 retry).
    pub to: Jid,
    /// `participant`: the one target device of a group retry resend.
    pub participant: Option<Jid>,
    /// `type`.
    pub msg_type: String,
    /// `category` (`peer`).
    pub category: Option<String>,
    /// `addressing_mode` (groups).
    pub addressing_mode: Option<String>,
    /// `device_fanout="false"` on 1:1 retry resends.
    pub no_fanout: bool,
    /// `phash`, if the client sent one.
    pub phash: Option<String>,
    /// `<enc>` children directly under `<message>` (the group `skmsg`, or a peer message's
    /// single pairwise enc), in order.
    pub direct: Vec<Enc>,
    /// `<participants><to jid><enc>` entries, in order.
    pub targets: Vec<(Jid, Enc)>,
    /// `<device-identity>` bytes.
    pub device_identity: Option<Vec<u8>>,
}

impl RelayMessage {
    /// The shared `skmsg`, if any.
    pub fn skmsg(&self) -> Option<&Enc> {
        self.direct.iter().find(|e| e.kind == super::enc::EncType::Skmsg)
    }
}

/// Parses a client's outbound `<message>`; each `<to>` needs a `jid` and one `<enc>`.
pub fn parse_relay(node: &Node) -> Result<RelayMessage, StanzaError> {
    expect_tag(node, "message")?;
    let direct = node.children_with_tag("enc").map(parse_enc).collect::<Result<Vec<_>, _>>()?;
    let mut targets = Vec::new();
    if let Some(p) = node.child("participants") {
        for to in p.children_with_tag("to") {
            let jid = req_jid(to, "to", "jid")?;
            let enc = to.child("enc").ok_or(StanzaError::MissingChild { parent: "to", child: "enc" })?;
            targets.push((jid, parse_enc(enc)?));
        }
    }
    if direct.is_empty() && targets.is_empty() {
        return Err(StanzaError::MissingChild { parent: "message", child: "enc" });
    }
    let device_identity = match node.child("device-identity") {
        Some(d) => Some(bytes_of(d, "device-identity")?.to_vec()),
        None => None,
    };
    Ok(RelayMessage {
        id: req_attr(node, "message", "id")?,
        to: req_jid(node, "message", "to")?,
        participant: opt_jid(node, "message", "participant")?,
        msg_type: attr_text(node, "type").unwrap_or_default(),
        category: attr_text(node, "category"),
        addressing_mode: attr_text(node, "addressing_mode"),
        no_fanout: attr_text(node, "device_fanout").as_deref() == Some("false"),
        phash: attr_text(node, "phash"),
        direct,
        targets,
        device_identity,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wa::message::enc::EncType;
    use crate::wa::message::fixtures::{
        DM_OUT, DM_RETRY_OUT, GROUP_OUT, GROUP_RETRY_OUT, PEER_OUT, arb_node, node,
    };

    /// Every client stanza of the transcript parses into the right targets and shared encs.
    #[test]
    fn parses_transcript_client_stanzas() {
        let dm = parse_relay(&node(DM_OUT)).unwrap();
        assert_eq!(dm.targets.len(), 4);
        assert_eq!(dm.targets[1].0, "15550000001:2@s.whatsapp.net".parse().unwrap());
        assert!(dm.direct.is_empty() && dm.device_identity.is_some() && !dm.no_fanout);
        let g = parse_relay(&node(GROUP_OUT)).unwrap();
        assert_eq!(g.skmsg().map(|e| e.ciphertext.len()), Some(122));
        assert_eq!(
            g.targets.iter().map(|(_, e)| e.kind).collect::<Vec<_>>(),
            [EncType::Pkmsg, EncType::Msg, EncType::Pkmsg]
        );
        assert_eq!(g.addressing_mode.as_deref(), Some("pn"));
        let r = parse_relay(&node(DM_RETRY_OUT)).unwrap();
        assert!(r.no_fanout);
        let gr = parse_relay(&node(GROUP_RETRY_OUT)).unwrap();
        assert_eq!(gr.participant, Some("15550000003:1@s.whatsapp.net".parse().unwrap()));
        let p = parse_relay(&node(PEER_OUT)).unwrap();
        assert_eq!((p.category.as_deref(), p.direct.len(), p.skmsg().is_none()), (Some("peer"), 1, true));
    }

    /// Malformed client stanzas give typed errors.
    #[test]
    fn malformed_is_typed() {
        let no_enc = node(
            r#"{"tag":"message","attrs":{"id":"1","to":"1@s.whatsapp.net"},"content":[{"tag":"participants","attrs":{},"content":[{"tag":"to","attrs":{"jid":"1@s.whatsapp.net"}}]}]}"#,
        );
        assert_eq!(parse_relay(&no_enc), Err(StanzaError::MissingChild { parent: "to", child: "enc" }));
        let empty = node(r#"{"tag":"message","attrs":{"id":"1","to":"1@s.whatsapp.net"}}"#);
        assert_eq!(parse_relay(&empty), Err(StanzaError::MissingChild { parent: "message", child: "enc" }));
    }

    proptest! {
        /// An arbitrary node never panics the relay parser.
        #[test]
        fn arbitrary_node_never_panics(n in arb_node()) {
            let _ = parse_relay(&n);
        }
    }
}
