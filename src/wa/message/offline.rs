//! The offline-queue handshake under `<ib>` (protocol/11-messages.md §9): the client's batch
//! request, the server's preview and end marker (both directions: builders for the simulator,
//! a parser for the client). Queued stanzas themselves are ordinary messages with `offline`.

use super::error::StanzaError;
use super::parse::{expect_tag, opt_u64};
use crate::wa::binary::Node;
use crate::wa::jid::Server;

/// The batch size Baileys asks for.
pub const OFFLINE_BATCH: u32 = 100;

/// What an `<ib>` from the server says about the offline queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IbEvent {
    /// `<offline_preview count message notification receipt …>`: the backlog's size; answer
    /// with [`offline_batch`].
    Preview {
        /// Total queued stanzas.
        count: u64,
        /// Queued messages.
        messages: u64,
        /// Queued receipts.
        receipts: u64,
        /// Queued notifications.
        notifications: u64,
    },
    /// `<offline count>`: the backlog is drained.
    OfflineEnd {
        /// How many stanzas were delivered.
        count: u64,
    },
    /// Another `<ib>` child (dirty, edge_routing, …), by tag.
    Other(String),
}

/// Client: `<ib><offline_batch count/></ib>`.
pub fn offline_batch(count: u32) -> Node {
    Node::new("ib").children([Node::new("offline_batch").attr("count", count.to_string())])
}

/// Server (simulator): the preview sent after the passive/active iq.
pub fn offline_preview(messages: u64, receipts: u64, notifications: u64, calls: u64) -> Node {
    let count = messages.saturating_add(receipts).saturating_add(notifications).saturating_add(calls);
    Node::new("ib").attr("from", Server::User.as_str()).children([Node::new("offline_preview")
        .attr("count", count.to_string())
        .attr("message", messages.to_string())
        .attr("receipt", receipts.to_string())
        .attr("notification", notifications.to_string())
        .attr("call", calls.to_string())])
}

/// Server (simulator): the end marker `<ib><offline count/></ib>`.
pub fn offline_end(count: u64) -> Node {
    Node::new("ib")
        .attr("from", Server::User.as_str())
        .children([Node::new("offline").attr("count", count.to_string())])
}

/// Parses an `<ib>` from the server into one event per child, in order.
pub fn parse_ib(node: &Node) -> Result<Vec<IbEvent>, StanzaError> {
    expect_tag(node, "ib")?;
    node.child_nodes()
        .iter()
        .map(|c| {
            let num =
                |attr: &'static str, tag: &'static str| opt_u64(c, tag, attr).map(Option::unwrap_or_default);
            Ok(match c.tag.as_str() {
                "offline_preview" => IbEvent::Preview {
                    count: num("count", "offline_preview")?,
                    messages: num("message", "offline_preview")?,
                    receipts: num("receipt", "offline_preview")?,
                    notifications: num("notification", "offline_preview")?,
                },
                "offline" => IbEvent::OfflineEnd { count: num("count", "offline")? },
                other => IbEvent::Other(super::error::cut(other, 32)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wa::message::fixtures::{arb_node, assert_shape, node};

    /// The batch request matches Baileys'; preview and end marker parse back.
    #[test]
    fn handshake_shapes() {
        assert_shape(
            r#"{"tag":"ib","attrs":{},"content":[{"tag":"offline_batch","attrs":{"count":"100"}}]}"#,
            &offline_batch(OFFLINE_BATCH),
        );
        assert_eq!(
            parse_ib(&offline_preview(1, 2, 3, 0)).unwrap(),
            vec![IbEvent::Preview { count: 6, messages: 1, receipts: 2, notifications: 3 }]
        );
        assert_shape(
            r#"{"tag":"ib","attrs":{"from":"s.whatsapp.net"},"content":[{"tag":"offline_preview","attrs":{"count":"1","message":"1","receipt":"0","notification":"0","call":"0"}}]}"#,
            &offline_preview(1, 0, 0, 0),
        );
        assert_shape(
            r#"{"tag":"ib","attrs":{"from":"s.whatsapp.net"},"content":[{"tag":"offline","attrs":{"count":"1"}}]}"#,
            &offline_end(1),
        );
        assert_eq!(parse_ib(&offline_end(0)).unwrap(), vec![IbEvent::OfflineEnd { count: 0 }]);
        let other = node(r#"{"tag":"ib","attrs":{},"content":[{"tag":"dirty","attrs":{}}]}"#);
        assert_eq!(parse_ib(&other).unwrap(), vec![IbEvent::Other("dirty".into())]);
    }

    /// Bad numbers and wrong tags give typed errors.
    #[test]
    fn malformed_is_typed() {
        let bad = node(r#"{"tag":"ib","attrs":{},"content":[{"tag":"offline","attrs":{"count":"x"}}]}"#);
        assert!(matches!(parse_ib(&bad), Err(StanzaError::InvalidAttr { attr: "count", .. })));
        assert!(matches!(parse_ib(&Node::new("iq")), Err(StanzaError::UnexpectedTag { .. })));
    }

    proptest! {
        /// An arbitrary node never panics the `<ib>` parser.
        #[test]
        fn arbitrary_node_never_panics(n in arb_node()) {
            let _ = parse_ib(&n);
        }
    }
}
