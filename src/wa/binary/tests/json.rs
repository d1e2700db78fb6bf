//! Order-preserving JSON for the vector files (serde_json's map sorts keys, but attribute
//! order is part of the wire format) and the node spec language they use:
//! content = string | [nodes] | {hex} | {hex_prefix,len} | {fill,len} | {repeat,node} |
//! {nest,tag,node};
//! attrs = object or list of [key, value] pairs.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::wa::binary::{AttrValue, Content, Node};

/// A JSON value whose objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Self>),
    Obj(Vec<(String, Self)>),
}

impl Json {
    pub(super) fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Num(n) => Some(*n as u64),
            _ => None,
        }
    }

    pub(super) fn as_array(&self) -> Option<&[Self]> {
        match self {
            Self::Arr(a) => Some(a),
            _ => None,
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Num(v as f64))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Num(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Num(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry()? {
            out.push((k, v));
        }
        Ok(Json::Obj(out))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

pub(super) fn parse(text: &str) -> Json {
    serde_json::from_str(text).unwrap()
}

fn str_of(v: &Json) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v:?}")).to_owned()
}

/// Builds a node from a spec; attribute values are always text (as Baileys sees them).
pub(super) fn node_from_spec(spec: &Json) -> Node {
    let tag = str_of(spec.get("tag").unwrap());
    let attrs = match spec.get("attrs") {
        Some(Json::Obj(entries)) => {
            entries.iter().map(|(k, v)| (k.clone(), AttrValue::Str(str_of(v)))).collect()
        }
        Some(Json::Arr(pairs)) => pairs
            .iter()
            .map(|p| {
                let p = p.as_array().unwrap();
                (str_of(&p[0]), AttrValue::Str(str_of(&p[1])))
            })
            .collect(),
        None => Vec::new(),
        Some(other) => panic!("bad attrs {other:?}"),
    };
    let content = match spec.get("content") {
        None | Some(Json::Null) => Content::None,
        Some(Json::Str(s)) => Content::Str(s.clone()),
        Some(Json::Arr(children)) => Content::Nodes(children.iter().map(node_from_spec).collect()),
        Some(obj @ Json::Obj(_)) => content_object(obj),
        Some(other) => panic!("bad content {other:?}"),
    };
    Node { tag, attrs, content }
}

fn content_object(obj: &Json) -> Content {
    if let Some(h) = obj.get("hex") {
        return Content::Bytes(hex::decode(str_of(h)).unwrap());
    }
    if let Some(h) = obj.get("hex_prefix") {
        // Baileys vectors truncate long buffers; ours are uniform fills (vectors.js).
        let prefix = hex::decode(str_of(h)).unwrap();
        assert!(prefix.windows(2).all(|w| w[0] == w[1]), "non-uniform truncated buffer");
        return Content::Bytes(vec![prefix[0]; obj.get("len").and_then(Json::as_u64).unwrap() as usize]);
    }
    if let Some(fill) = obj.get("fill") {
        let len = obj.get("len").and_then(Json::as_u64).unwrap() as usize;
        return Content::Bytes(vec![fill.as_u64().unwrap() as u8; len]);
    }
    if let Some(n) = obj.get("repeat") {
        let child = node_from_spec(obj.get("node").unwrap());
        return Content::Nodes(vec![child; n.as_u64().unwrap() as usize]);
    }
    if let Some(n) = obj.get("nest") {
        // `n - 1` wrappers `<tag>` around `node`, as one content list.
        let tag = str_of(obj.get("tag").unwrap());
        let mut inner = node_from_spec(obj.get("node").unwrap());
        for _ in 1..n.as_u64().unwrap() {
            inner = Node::new(tag.clone()).children([inner]);
        }
        return Content::Nodes(vec![inner]);
    }
    panic!("bad content object {obj:?}")
}

/// A decoded node with typed JID attributes turned into their text, to compare with Baileys'
/// string-only trees.
pub(super) fn stringify_jids(mut node: Node) -> Node {
    for (_, v) in &mut node.attrs {
        if let AttrValue::Jid(j) = v {
            *v = AttrValue::Str(j.to_string());
        }
    }
    if let Content::Nodes(children) = node.content {
        node.content = Content::Nodes(children.into_iter().map(stringify_jids).collect());
    }
    node
}
