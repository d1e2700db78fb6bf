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

/// Server side: the stanza the server delivers to `device` for a relayed message from
/// `sender` (the sending device), as protocol/11-messages.md §6 requires: `from` = sender
/// device (1:1) or group with `participant`; `recipient` = the chat on copies for the sender's
/// own other devices; the device's own `<enc>` first, then the shared `skmsg`, then
/// `<device-identity>` when its own enc is a pkmsg; `offline="1"` from the offline queue.
/// `None` when the stanza has nothing for that device.
pub fn delivery_for(relay: &RelayMessage, sender: &Jid, device: &Jid, t: u64, offline: bool) -> Option<Node> {
    let own = relay.targets.iter().find(|(jid, _)| jid == device).map(|(_, e)| e);
    let direct_pairwise = relay.direct.iter().find(|e| e.kind != super::enc::EncType::Skmsg);
    let own = own.or(direct_pairwise);
    let skmsg = relay.skmsg();
    if own.is_none() && skmsg.is_none() {
        return None;
    }
    let grouped = relay.to.is_group() || relay.to.is_broadcast();
    let mut m = Node::new("message");
    if grouped {
        m.set_attr("from", relay.to.clone());
        m.set_attr("participant", sender.clone());
    } else {
        m.set_attr("from", sender.clone());
        if device.user == sender.user && device.server == sender.server && relay.category.is_none() {
            m.set_attr("recipient", relay.to.to_non_ad());
        }
    }
    m.set_attr("id", relay.id.as_str());
    m.set_attr("t", t.to_string());
    m.set_attr("type", relay.msg_type.as_str());
    if let Some(c) = &relay.category {
        m.set_attr("category", c.as_str());
    }
    if let Some(a) = &relay.addressing_mode {
        m.set_attr("addressing_mode", a.as_str());
    }
    if offline {
        m.set_attr("offline", "1");
    }
    let mut kids = Vec::new();
    kids.extend(own.map(enc_to_node));
    kids.extend(skmsg.map(enc_to_node));
    if own.is_some_and(|e| e.kind == super::enc::EncType::Pkmsg) {
        kids.extend(relay.device_identity.as_ref().map(|d| Node::new("device-identity").bytes(d.clone())));
    }
    Some(m.children(kids))
}

fn enc_to_node(e: &Enc) -> Node {
    let mut n = Node::new("enc").attr("v", e.version.to_string()).attr("type", e.kind.as_str());
    if let Some(c) = e.count {
        n.set_attr("count", c.to_string());
    }
    if let Some(m) = &e.media_type {
        n.set_attr("mediatype", m.as_str());
    }
    if e.hide_on_fail {
        n.set_attr("decrypt-fail", "hide");
    }
    n.bytes(e.ciphertext.clone())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wa::message::enc::EncType;
    use crate::wa::message::fixtures::{
        DM_IN_DSM, DM_OUT, DM_RETRY_OUT, GROUP_OUT, GROUP_RETRY_OUT, PEER_OUT, arb_node, assert_shape, node,
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

    /// The server-side delivery of the transcript's group and 1:1 sends reproduces what the
    /// fake server delivered (own enc first, skmsg, device-identity; recipient on DSM copies).
    #[test]
    fn delivery_matches_transcript() {
        let a1: Jid = "15550000001:1@s.whatsapp.net".parse().unwrap();
        let g = parse_relay(&node(GROUP_OUT)).unwrap();
        let to_a2 =
            delivery_for(&g, &a1, &"15550000001:2@s.whatsapp.net".parse().unwrap(), 1_795_436_577, false);
        assert_shape(
            r#"{"tag": "message", "attrs": {"from": "120363000000000001@g.us", "participant": "15550000001:1@s.whatsapp.net", "id": "3EB0E12BE09DBB33E5FB4F", "t": "1795436577", "type": "text", "addressing_mode": "pn"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "33080112210509dacf19681264cf2691", "len": 260}}, {"tag": "enc", "attrs": {"v": "2", "type": "skmsg"}, "content": {"hex_prefix": "3308ba89972310001a3040cb44b35700", "len": 122}}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0801109fe090d806180112205902", "len": 178}}]}"#,
            &to_a2.unwrap(),
        );
        let phone =
            delivery_for(&g, &a1, &"15550000002@s.whatsapp.net".parse().unwrap(), 1_795_436_577, false);
        assert_eq!(phone.unwrap().child_nodes().len(), 1, "skmsg only for devices without a <to>");
        let dm = parse_relay(&node(DM_OUT)).unwrap();
        let dsm =
            delivery_for(&dm, &a1, &"15550000001:2@s.whatsapp.net".parse().unwrap(), 1_795_436_576, false)
                .unwrap();
        assert_shape(DM_IN_DSM, &dsm);
        let unknown = delivery_for(&dm, &a1, &"15550000009:1@s.whatsapp.net".parse().unwrap(), 1, true);
        assert!(unknown.is_none());
        let off = delivery_for(&dm, &a1, &"15550000002:1@s.whatsapp.net".parse().unwrap(), 1, true).unwrap();
        assert_eq!((off.attr_str("offline"), off.attr_value("recipient")), (Some("1"), None));
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
