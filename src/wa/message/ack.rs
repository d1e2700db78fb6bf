//! `<ack>` stanzas (protocol/11-messages.md §2.5, §7.2): the acks a client sends for server
//! receipts, notifications and messages (with `error` set: a nack), and the parser for the server's ack of a
//! message we sent. Attribute order follows Baileys 6.7.21 (`id, to, class, [error],
//! [participant], [recipient], [type]`). Pure.

use super::error::StanzaError;
use super::parse::{attr_text, expect_tag, opt_jid, opt_u64, req_attr};
use crate::wa::binary::Node;
use crate::wa::jid::Jid;

/// Nack code: the stanza could not be parsed (Baileys' only message nack, for "key used
/// already or never filled").
pub const NACK_PARSING_ERROR: u16 = 487;
/// Nack code: the protobuf is invalid.
pub const NACK_INVALID_PROTOBUF: u16 = 491;

/// The ack for a received `<receipt>`, `<notification>` or `<call>`: `class` = its tag,
/// `to` = its `from`, `participant`/`recipient`/`type` copied when present.
pub fn ack_for(stanza: &Node) -> Result<Node, StanzaError> {
    let id = req_attr(stanza, "stanza", "id")?;
    let from = stanza.attr_value("from").ok_or(StanzaError::MissingAttr { tag: "stanza", attr: "from" })?;
    let mut ack = Node::new("ack").attr("id", id).attr("to", from.clone()).attr("class", stanza.tag.as_str());
    for key in ["participant", "recipient"] {
        if let Some(v) = stanza.attr_value(key) {
            ack.set_attr(key, v.clone());
        }
    }
    if let Some(v) = stanza.attr_value("type").filter(|_| stanza.tag != "message") {
        ack.set_attr("type", v.clone());
    }
    Ok(ack)
}

/// An `<ack>` from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAck {
    /// `class` (`message`, `receipt`, …).
    pub class: String,
    /// The acked stanza's id.
    pub id: String,
    /// `from`, if present.
    pub from: Option<Jid>,
    /// `t`, if present.
    pub t: Option<u64>,
    /// `error`: the server rejected the stanza.
    pub error: Option<String>,
    /// `phash` of the device list the server used (a mismatch means our list is stale).
    pub phash: Option<String>,
    /// `server_id`, if present.
    pub server_id: Option<String>,
    /// `type`, if present.
    pub kind: Option<String>,
}

/// Parses a server `<ack>`; `id` and `class` are required.
pub fn parse_ack(node: &Node) -> Result<ServerAck, StanzaError> {
    expect_tag(node, "ack")?;
    Ok(ServerAck {
        class: req_attr(node, "ack", "class")?,
        id: req_attr(node, "ack", "id")?,
        from: opt_jid(node, "ack", "from")?,
        t: opt_u64(node, "ack", "t")?,
        error: attr_text(node, "error"),
        phash: attr_text(node, "phash"),
        server_id: attr_text(node, "server_id"),
        kind: attr_text(node, "type"),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wa::message::fixtures::{arb_node, assert_shape, node};

    /// Receipt acks match Baileys' (recipient+type, participant+type, type-less receipt).
    #[test]
    fn receipt_acks_match_transcript() {
        let r = node(
            r#"{"tag": "receipt", "attrs": {"from": "15550000001:2@s.whatsapp.net", "recipient": "15550000002@s.whatsapp.net", "type": "sender", "id": "3EB0CA77CE5D0FA9DA0A18", "t": "1795436576"}}"#,
        );
        let a = ack_for(&r).unwrap();
        assert_shape(
            r#"{"tag": "ack", "attrs": {"id": "3EB0CA77CE5D0FA9DA0A18", "to": "15550000001:2@s.whatsapp.net", "class": "receipt", "recipient": "15550000002@s.whatsapp.net", "type": "sender"}}"#,
            &a,
        );
        let order: Vec<&str> = a.attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(order, ["id", "to", "class", "recipient", "type"]);
        let g = node(
            r#"{"tag": "receipt", "attrs": {"from": "120363000000000001@g.us", "participant": "15550000003:1@s.whatsapp.net", "type": "retry", "id": "3EB050459619C06BD9D490", "t": "1795436587"}}"#,
        );
        assert_shape(
            r#"{"tag": "ack", "attrs": {"id": "3EB050459619C06BD9D490", "to": "120363000000000001@g.us", "class": "receipt", "participant": "15550000003:1@s.whatsapp.net", "type": "retry"}}"#,
            &ack_for(&g).unwrap(),
        );
        let d = node(
            r#"{"tag": "receipt", "attrs": {"from": "15550000002:1@s.whatsapp.net", "id": "3EB0CA77CE5D0FA9DA0A18", "t": "1795436576"}}"#,
        );
        assert_shape(
            r#"{"tag": "ack", "attrs": {"id": "3EB0CA77CE5D0FA9DA0A18", "to": "15550000002:1@s.whatsapp.net", "class": "receipt"}}"#,
            &ack_for(&d).unwrap(),
        );
        assert_eq!(
            ack_for(&Node::new("receipt")),
            Err(StanzaError::MissingAttr { tag: "stanza", attr: "id" })
        );
    }

    /// The server's message ack from the transcript parses; a missing class is typed.
    #[test]
    fn parses_server_ack() {
        let a = parse_ack(&node(
            r#"{"tag": "ack", "attrs": {"class": "message", "id": "3EB0CA77CE5D0FA9DA0A18", "from": "15550000002@s.whatsapp.net", "t": "1795436576"}}"#,
        ))
        .unwrap();
        assert_eq!((a.class.as_str(), a.t, a.error), ("message", Some(1_795_436_576), None));
        assert_eq!(a.from, Some("15550000002@s.whatsapp.net".parse().unwrap()));
        let bad = node(r#"{"tag":"ack","attrs":{"id":"1"}}"#);
        assert_eq!(parse_ack(&bad), Err(StanzaError::MissingAttr { tag: "ack", attr: "class" }));
    }

    proptest! {
        /// An arbitrary node never panics the ack parser or the ack builder.
        #[test]
        fn arbitrary_node_never_panics(n in arb_node()) {
            let _ = parse_ack(&n);
            let _ = ack_for(&n);
        }
    }
}
