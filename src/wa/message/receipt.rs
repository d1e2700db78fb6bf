//! Receipts (protocol/11-messages.md §7.1, §7.3): builders for the delivery, read and retry
//! receipts a client sends after handling a `<message>`, and the parser for receipts the
//! server forwards (delivery, read, retry with optional keys). Pure; the retry counter and
//! the fresh prekey come from the caller.

use super::error::{StanzaError, cut};
use super::inbound::InboundMessage;
use super::parse::{attr_text, be_child, expect_tag, opt_jid, opt_u64, req_attr, req_child, req_jid};
use super::prekeys::{id3, parse_bundle};
use crate::wa::binary::Node;
use crate::wa::jid::Jid;
use crate::wa::signal::{KEY_TYPE_DJB, PreKeyBundle, PublicKey};

/// The receipt `type` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptType {
    /// No `type`: delivered.
    Delivery,
    /// `inactive`: delivered to a client not marked active.
    Inactive,
    /// `sender`: one of our own devices got our message.
    Sender,
    /// `peer_msg`: a peer (own-device protocol) message was handled.
    PeerMsg,
    /// `read`.
    Read,
    /// `read-self`: read with read receipts disabled.
    ReadSelf,
    /// `played` (voice notes, view-once).
    Played,
    /// `retry`: decryption failed, please resend.
    Retry,
    /// Any other type, verbatim (cut to 32 bytes).
    Other(String),
}

impl ReceiptType {
    /// The attribute value (`None` for [`ReceiptType::Delivery`]).
    pub fn as_attr(&self) -> Option<&str> {
        match self {
            Self::Delivery => None,
            Self::Inactive => Some("inactive"),
            Self::Sender => Some("sender"),
            Self::PeerMsg => Some("peer_msg"),
            Self::Read => Some("read"),
            Self::ReadSelf => Some("read-self"),
            Self::Played => Some("played"),
            Self::Retry => Some("retry"),
            Self::Other(s) => Some(s),
        }
    }

    /// Parses the attribute (absent or empty = delivery).
    pub fn from_attr(s: Option<&str>) -> Self {
        match s.unwrap_or("") {
            "" => Self::Delivery,
            "inactive" => Self::Inactive,
            "sender" => Self::Sender,
            "peer_msg" => Self::PeerMsg,
            "read" => Self::Read,
            "read-self" => Self::ReadSelf,
            "played" => Self::Played,
            "retry" => Self::Retry,
            other => Self::Other(cut(other, 32)),
        }
    }
}

/// Where a receipt for `msg` goes: `(to, participant, recipient)`.
fn target(msg: &InboundMessage) -> (Jid, Option<Jid>, Option<Jid>) {
    if msg.is_group_like() {
        (msg.from.clone(), msg.participant.clone(), None)
    } else {
        (msg.from.clone(), None, msg.recipient.clone())
    }
}

/// The delivery receipt for a decrypted message, as Baileys shapes it: `sender` when it came
/// from one of our own devices (same user as `own`), `peer_msg` for peer messages, otherwise no
/// type when `active` and `inactive` when not.
pub fn delivery_receipt(msg: &InboundMessage, own: &Jid, active: bool) -> Node {
    let (to, participant, recipient) = target(msg);
    let from_self = msg.sender().user == own.user && msg.sender().server == own.server;
    let kind = if msg.is_peer() {
        ReceiptType::PeerMsg
    } else if from_self {
        ReceiptType::Sender
    } else if active {
        ReceiptType::Delivery
    } else {
        ReceiptType::Inactive
    };
    let mut r = Node::new("receipt").attr("id", msg.id.as_str());
    if let Some(rc) = recipient.filter(|_| !msg.is_group_like()) {
        r.set_attr("recipient", rc);
    }
    r.set_attr("to", to);
    if let Some(p) = participant {
        r.set_attr("participant", p);
    }
    if let Some(t) = kind.as_attr() {
        r.set_attr("type", t);
    }
    r
}

/// A read (or `read-self`/`played`) receipt for message `id` and further `more_ids` (same
/// sender; sent in `<list><item>`) from `chat`, with `participant` = the sender device in
/// groups; `t` = now (unix seconds).
pub fn read_receipt(
    chat: &Jid,
    participant: Option<&Jid>,
    id: &str,
    more_ids: &[&str],
    t: u64,
    kind: ReceiptType,
) -> Node {
    let mut r = Node::new("receipt").attr("id", id).attr("to", chat.clone());
    if let Some(p) = participant {
        r.set_attr("participant", p.clone());
    }
    if let Some(k) = kind.as_attr() {
        r.set_attr("type", k);
    }
    r.set_attr("t", t.to_string());
    if !more_ids.is_empty() {
        let items = more_ids.iter().map(|id| Node::new("item").attr("id", *id));
        r = r.children([Node::new("list").children(items)]);
    }
    r
}

/// Our keys attached to a retry receipt (count ≥ 2): a fresh one-time prekey, the signed
/// prekey and our device identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryKeys {
    /// Our identity public key.
    pub identity: PublicKey,
    /// A freshly generated one-time prekey `(id, public)`.
    pub pre_key: (u32, PublicKey),
    /// The signed prekey id.
    pub signed_pre_key_id: u32,
    /// The signed prekey public key.
    pub signed_pre_key: PublicKey,
    /// Its signature.
    pub signed_pre_key_signature: [u8; 64],
    /// Our `ADVSignedDeviceIdentity` bytes.
    pub device_identity: Vec<u8>,
}

/// The retry receipt for a message we failed to decrypt: `<retry count id t v="1"/>`,
/// `<registration>` and, when given, `<keys>`.
pub fn retry_receipt(
    msg: &InboundMessage,
    count: u32,
    registration_id: u32,
    keys: Option<&RetryKeys>,
) -> Node {
    let (to, participant, recipient) = target(msg);
    let mut r = Node::new("receipt").attr("id", msg.id.as_str()).attr("type", "retry").attr("to", to);
    if let Some(p) = participant {
        r.set_attr("participant", p);
    }
    if let Some(rc) = recipient {
        r.set_attr("recipient", rc);
    }
    if msg.is_peer() {
        r.set_attr("category", "peer");
    }
    let mut kids = vec![
        Node::new("retry")
            .attr("count", count.to_string())
            .attr("id", msg.id.as_str())
            .attr("t", msg.t.to_string())
            .attr("v", "1"),
        Node::new("registration").bytes(registration_id.to_be_bytes()),
    ];
    if let Some(k) = keys {
        kids.push(retry_keys_node(k));
    }
    r.children(kids)
}

/// The `<keys>` child of a retry receipt (count ≥ 2): what the sender builds a fresh session
/// from.
pub fn retry_keys_node(k: &RetryKeys) -> Node {
    {
        Node::new("keys").children([
            Node::new("type").bytes([KEY_TYPE_DJB]),
            Node::new("identity").bytes(k.identity.raw().to_vec()),
            Node::new("key").children([
                Node::new("id").bytes(id3(k.pre_key.0)),
                Node::new("value").bytes(k.pre_key.1.raw().to_vec()),
            ]),
            Node::new("skey").children([
                Node::new("id").bytes(id3(k.signed_pre_key_id)),
                Node::new("value").bytes(k.signed_pre_key.raw().to_vec()),
                Node::new("signature").bytes(k.signed_pre_key_signature.to_vec()),
            ]),
            Node::new("device-identity").bytes(k.device_identity.clone()),
        ])
    }
}

/// The `<retry>` part of an inbound retry receipt.
#[derive(Debug, Clone)]
pub struct RetryRequest {
    /// The receiver's retry count (1 = first retry).
    pub count: u32,
    /// The original message's `t`, if given.
    pub t: Option<u64>,
    /// The receiver's registration id (to detect a reinstalled device).
    pub registration_id: u32,
    /// The receiver's keys, when it sent `<keys>`: build a fresh session from them.
    pub bundle: Option<PreKeyBundle>,
}

/// A receipt forwarded by the server.
#[derive(Debug, Clone)]
pub struct InboundReceipt {
    /// The first message id.
    pub id: String,
    /// Further ids from `<list><item id>` (same sender), in order.
    pub more_ids: Vec<String>,
    /// `from`: the receipting device (1:1) or the group.
    pub from: Jid,
    /// `participant`: the receipting device in groups.
    pub participant: Option<Jid>,
    /// `recipient`: the chat, on receipts from our own devices.
    pub recipient: Option<Jid>,
    /// `t`, if present.
    pub t: Option<u64>,
    /// The type.
    pub kind: ReceiptType,
    /// The retry request, for `type="retry"`.
    pub retry: Option<RetryRequest>,
}

impl InboundReceipt {
    /// The device that sent the receipt (`participant` if present, else `from`).
    pub fn sender(&self) -> &Jid {
        self.participant.as_ref().unwrap_or(&self.from)
    }
}

/// Parses a `<receipt>` from the server. A retry receipt must carry `<retry count>` and
/// `<registration>`; `<keys>` are parsed into a [`PreKeyBundle`].
pub fn parse_receipt(node: &Node) -> Result<InboundReceipt, StanzaError> {
    expect_tag(node, "receipt")?;
    let kind = ReceiptType::from_attr(attr_text(node, "type").as_deref());
    let retry = if kind == ReceiptType::Retry {
        let r = req_child(node, "receipt", "retry")?;
        let count =
            opt_u64(r, "retry", "count")?.ok_or(StanzaError::MissingAttr { tag: "retry", attr: "count" })?;
        let count = u32::try_from(count).map_err(|_| StanzaError::InvalidAttr {
            tag: "retry",
            attr: "count",
            value: count.to_string(),
        })?;
        let bundle = match node.child("keys") {
            Some(keys) => Some(parse_bundle(node, keys)?),
            None => None,
        };
        Some(RetryRequest {
            count,
            t: opt_u64(r, "retry", "t")?,
            registration_id: be_child::<4>(node, "receipt", "registration")?,
            bundle,
        })
    } else {
        None
    };
    let more_ids = match node.child("list") {
        Some(l) => {
            l.children_with_tag("item").map(|i| req_attr(i, "item", "id")).collect::<Result<_, _>>()?
        }
        None => Vec::new(),
    };
    Ok(InboundReceipt {
        id: req_attr(node, "receipt", "id")?,
        more_ids,
        from: req_jid(node, "receipt", "from")?,
        participant: opt_jid(node, "receipt", "participant")?,
        recipient: opt_jid(node, "receipt", "recipient")?,
        t: opt_u64(node, "receipt", "t")?,
        kind,
        retry,
    })
}

#[cfg(test)]
mod tests;
