//! The in-memory stanza model: [`Node`] with ordered attributes and typed [`Content`], builder
//! helpers, getters, and a short XML-like [`fmt::Display`] for debug logs. No wire format here
//! (see `encode`/`decode`), and Display never dumps whole binary payloads.

use std::fmt;

use super::MAX_DEPTH;
use crate::wa::jid::Jid;

/// An attribute value: text, or a typed JID. On the wire both are "string-ish"; the decoder
/// returns JID wire forms as [`AttrValue::Jid`] and everything else as [`AttrValue::Str`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// Text. Encoded like Baileys 6.7.21 encodes strings: token, packed, JID if it contains
    /// `@`, else raw UTF-8.
    Str(String),
    /// A JID, encoded as `AD_JID` when it has a device, else `JID_PAIR`.
    Jid(Jid),
}

impl AttrValue {
    /// The text, if this is a [`AttrValue::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            Self::Jid(_) => None,
        }
    }

    /// The JID, if this is a [`AttrValue::Jid`].
    pub fn as_jid(&self) -> Option<&Jid> {
        match self {
            Self::Jid(j) => Some(j),
            Self::Str(_) => None,
        }
    }

    /// The value as a JID: a typed JID as is, or text that parses as one.
    pub fn to_jid(&self) -> Option<Jid> {
        match self {
            Self::Jid(j) => Some(j.clone()),
            Self::Str(s) => s.parse().ok(),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}

impl From<Jid> for AttrValue {
    fn from(j: Jid) -> Self {
        Self::Jid(j)
    }
}

impl From<&Jid> for AttrValue {
    fn from(j: &Jid) -> Self {
        Self::Jid(j.clone())
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Jid(j) => write!(f, "{j}"),
        }
    }
}

/// What a node carries after its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Content {
    /// No content (odd list size on the wire).
    #[default]
    None,
    /// Child nodes (possibly none: an empty list is content too).
    Nodes(Vec<Node>),
    /// Raw bytes (protobufs, keys, ciphertexts), always sent with a `BINARY_*` length.
    Bytes(Vec<u8>),
    /// Text. Sent like an attribute string; only token, packed or JID text decodes back as
    /// `Str` (raw text comes back as [`Content::Bytes`], `""` as an empty [`Content::Nodes`]).
    Str(String),
}

/// One binary XML node (a stanza or part of one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Node {
    /// The element name, never empty on the wire.
    pub tag: String,
    /// Attributes in wire (insertion) order. Decoding keeps duplicates as sent.
    pub attrs: Vec<(String, AttrValue)>,
    /// The content.
    pub content: Content,
}

impl Node {
    /// A node with no attributes and no content; chain the builders below.
    pub fn new(tag: impl Into<String>) -> Self {
        Self { tag: tag.into(), attrs: Vec::new(), content: Content::None }
    }

    /// Builder: sets attribute `key` (replacing an existing value in place, else appending).
    #[must_use]
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<AttrValue>) -> Self {
        self.set_attr(key, value);
        self
    }

    /// Sets attribute `key`, replacing an existing value in place, else appending it.
    pub fn set_attr(&mut self, key: impl Into<String>, value: impl Into<AttrValue>) {
        let key = key.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((key, value)),
        }
    }

    /// Builder: child nodes as content.
    #[must_use]
    pub fn children(mut self, children: impl IntoIterator<Item = Self>) -> Self {
        self.content = Content::Nodes(children.into_iter().collect());
        self
    }

    /// Builder: raw bytes as content.
    #[must_use]
    pub fn bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.content = Content::Bytes(bytes.into());
        self
    }

    /// Builder: text as content.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.content = Content::Str(text.into());
        self
    }

    /// The value of attribute `key` (the first one if the peer sent duplicates).
    pub fn attr_value(&self, key: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The text of attribute `key`; `None` if absent or if the value is a typed JID (use
    /// [`Node::attr_jid`] or [`Node::attr_value`] for those).
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr_value(key).and_then(AttrValue::as_str)
    }

    /// Attribute `key` as a JID: a typed JID, or text that parses as one.
    pub fn attr_jid(&self, key: &str) -> Option<Jid> {
        self.attr_value(key).and_then(AttrValue::to_jid)
    }

    /// The child nodes (empty unless the content is [`Content::Nodes`]).
    pub fn child_nodes(&self) -> &[Self] {
        match &self.content {
            Content::Nodes(nodes) => nodes,
            _ => &[],
        }
    }

    /// The first child with tag `tag`.
    pub fn child(&self, tag: &str) -> Option<&Self> {
        self.child_nodes().iter().find(|n| n.tag == tag)
    }

    /// All children with tag `tag`, in order.
    pub fn children_with_tag<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Self> + 'a {
        self.child_nodes().iter().filter(move |n| n.tag == tag)
    }

    /// The content bytes, if the content is [`Content::Bytes`].
    pub fn content_bytes(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The content text, if the content is [`Content::Str`].
    pub fn content_str(&self) -> Option<&str> {
        match &self.content {
            Content::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Text longer than this is cut in [`Node`]'s Display.
const DISPLAY_TEXT_MAX: usize = 128;
/// Bytes shown in hex before the rest is summarised.
const DISPLAY_BYTES_MAX: usize = 16;

fn write_text(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let mut end = s.len().min(DISPLAY_TEXT_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    for c in s[..end].chars() {
        match c {
            '"' => f.write_str("&quot;")?,
            '<' => f.write_str("&lt;")?,
            '>' => f.write_str("&gt;")?,
            '&' => f.write_str("&amp;")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    if end < s.len() {
        write!(f, "…[{} bytes]", s.len())?;
    }
    Ok(())
}

fn write_node(f: &mut fmt::Formatter<'_>, node: &Node, depth: usize) -> fmt::Result {
    if depth > MAX_DEPTH {
        return f.write_str("<…/>");
    }
    f.write_str("<")?;
    write_text(f, &node.tag)?;
    for (k, v) in &node.attrs {
        f.write_str(" ")?;
        write_text(f, k)?;
        f.write_str("=\"")?;
        match v {
            AttrValue::Str(s) => write_text(f, s)?,
            AttrValue::Jid(j) => write_text(f, &j.to_string())?,
        }
        f.write_str("\"")?;
    }
    match &node.content {
        Content::None => return f.write_str("/>"),
        Content::Nodes(children) => {
            f.write_str(">")?;
            for child in children {
                write_node(f, child, depth + 1)?;
            }
        }
        Content::Bytes(b) => {
            f.write_str(">[")?;
            for byte in b.iter().take(DISPLAY_BYTES_MAX) {
                write!(f, "{byte:02x}")?;
            }
            if b.len() > DISPLAY_BYTES_MAX {
                f.write_str("…")?;
            }
            write!(f, " ({} bytes)]", b.len())?;
        }
        Content::Str(s) => {
            f.write_str(">")?;
            write_text(f, s)?;
        }
    }
    f.write_str("</")?;
    write_text(f, &node.tag)?;
    f.write_str(">")
}

impl fmt::Display for Node {
    /// Short XML-like rendering for debug logs: text is cut at 128 bytes, binary content shows
    /// its first 16 bytes in hex and its length, nesting past [`MAX_DEPTH`] prints `<…/>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_node(f, self, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::jid::Server;

    /// Builders keep insertion order, replace duplicates in place, and getters find values.
    #[test]
    fn builders_and_getters() {
        let to = Jid::server_jid(Server::User);
        let node = Node::new("iq")
            .attr("id", "1")
            .attr("to", &to)
            .attr("type", "get")
            .attr("id", "2")
            .children([Node::new("ping"), Node::new("x").bytes(vec![1, 2]), Node::new("ping").text("t")]);
        let keys: Vec<&str> = node.attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["id", "to", "type"]);
        assert_eq!(node.attr_str("id"), Some("2"));
        assert_eq!(node.attr_str("to"), None, "typed JIDs are not text");
        assert_eq!(node.attr_jid("to"), Some(to));
        assert_eq!(node.attr_jid("id"), None);
        assert_eq!(node.child("x").and_then(Node::content_bytes), Some(&[1u8, 2][..]));
        assert_eq!(node.children_with_tag("ping").count(), 2);
        assert_eq!(node.child("ping").map(|n| n.content.clone()), Some(Content::None));
        assert_eq!(node.child_nodes()[2].content_str(), Some("t"));
        assert!(node.child("nope").is_none());
        let text = Node::new("a").attr("jid", "1@s.whatsapp.net");
        assert_eq!(text.attr_jid("jid").map(|j| j.user), Some("1".to_owned()));
    }

    /// Display is short: big binaries are summarised, long text is cut, markup is escaped.
    #[test]
    fn display_is_short() {
        let node = Node::new("message")
            .attr("to", Jid::new("1", Server::User).with_device(2))
            .attr("q", "a\"<b>")
            .children([Node::new("enc").bytes(vec![0xab; 70_000]), Node::new("body").text("x".repeat(1000))]);
        let s = node.to_string();
        assert!(
            s.starts_with(r#"<message to="1:2@s.whatsapp.net" q="a&quot;&lt;b&gt;"><enc>[abababab"#),
            "{s}"
        );
        assert!(s.contains("(70000 bytes)]</enc>"), "{s}");
        assert!(s.contains("…[1000 bytes]</body></message>"), "{s}");
        assert!(s.len() < 400, "{s}");
        assert_eq!(Node::new("ping").to_string(), "<ping/>");
    }

    /// Display of a tree deeper than MAX_DEPTH stops instead of recursing without bound.
    #[test]
    fn display_depth_is_bounded() {
        let mut node = Node::new("leaf");
        for _ in 0..(MAX_DEPTH + 10) {
            node = Node::new("n").children([node]);
        }
        let s = node.to_string();
        assert!(s.contains("<…/>") && !s.contains("leaf"));
    }
}
