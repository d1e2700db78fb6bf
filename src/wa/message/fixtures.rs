//! Test-only helpers: turn the Baileys transcript's JSON stanzas
//! (protocol/14-baileys-messaging-transcript.jsonl) into [`Node`]s and compare built nodes
//! against them (tags, attributes as text, children in order, byte content or its prefix).

use serde_json::Value;

use crate::wa::binary::{Content, Node};

/// A node from a transcript JSON object; `hex_prefix` content is zero-filled to `len`.
pub(crate) fn node(json: &str) -> Node {
    from_value(&serde_json::from_str(json).unwrap())
}

fn from_value(v: &Value) -> Node {
    let mut n = Node::new(v["tag"].as_str().unwrap());
    if let Some(attrs) = v["attrs"].as_object() {
        for (k, val) in attrs {
            n.set_attr(k.clone(), val.as_str().unwrap());
        }
    }
    n.content = match &v["content"] {
        Value::Array(items) => Content::Nodes(items.iter().map(from_value).collect()),
        Value::Object(o) if o.contains_key("hex") => {
            Content::Bytes(hex::decode(o["hex"].as_str().unwrap()).unwrap())
        }
        Value::Object(o) => {
            let mut b = hex::decode(o["hex_prefix"].as_str().unwrap()).unwrap();
            b.resize(usize::try_from(o["len"].as_u64().unwrap()).unwrap(), 0);
            Content::Bytes(b)
        }
        Value::String(s) => Content::Str(s.clone()),
        _ => Content::None,
    };
    n
}

/// Asserts that `built` has the transcript stanza's shape: same tag, same attributes (as text,
/// any order), same children in order, same bytes (or same length and prefix for `hex_prefix`).
pub(crate) fn assert_shape(expected_json: &str, built: &Node) {
    let v: Value = serde_json::from_str(expected_json).unwrap();
    check(&v, built, "");
    let got: Vec<&str> = built.attrs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(top_level_attr_order(expected_json), got, "top-level attribute order");
    let ordered: Ordered = serde_json::from_str(expected_json).unwrap();
    assert_eq!(
        crate::wa::binary::marshal(built).unwrap(),
        crate::wa::binary::marshal(&ordered.0).unwrap(),
        "wire bytes equal the transcript stanza's (attribute order kept at every level)"
    );
}

/// A transcript node parsed with attribute order kept at every level.
struct Ordered(Node);

/// Attributes in text order.
struct OrderedAttrs(Vec<(String, String)>);

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonContent {
    Nodes(Vec<Ordered>),
    Hex { hex: String },
    Prefix { hex_prefix: String, len: usize },
    Text(String),
}

impl<'de> serde::Deserialize<'de> for OrderedAttrs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedAttrs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an attribute map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<OrderedAttrs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(OrderedAttrs(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a node object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut n = Node::default();
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "tag" => n.tag = m.next_value()?,
                        "attrs" => {
                            let OrderedAttrs(a) = m.next_value()?;
                            n.attrs = a
                                .into_iter()
                                .map(|(k, v)| (k, crate::wa::binary::AttrValue::Str(v)))
                                .collect();
                        }
                        "content" => {
                            n.content = match m.next_value::<Option<JsonContent>>()? {
                                None => Content::None,
                                Some(JsonContent::Nodes(v)) => {
                                    Content::Nodes(v.into_iter().map(|o| o.0).collect())
                                }
                                Some(JsonContent::Hex { hex }) => Content::Bytes(hex::decode(hex).unwrap()),
                                Some(JsonContent::Prefix { hex_prefix, len }) => {
                                    let mut b = hex::decode(hex_prefix).unwrap();
                                    b.resize(len, 0);
                                    Content::Bytes(b)
                                }
                                Some(JsonContent::Text(t)) => Content::Str(t),
                            };
                        }
                        _ => {
                            m.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Ordered(n))
            }
        }
        d.deserialize_map(V)
    }
}

/// The key order of the first `"attrs"` object in the JSON text (serde_json's map sorts keys;
/// transcript attribute values never contain `,`, `:` before the value, `{` or `}`).
fn top_level_attr_order(json: &str) -> Vec<&str> {
    let start = json.find("\"attrs\"").unwrap();
    let open = start + json[start..].find('{').unwrap();
    let close = open + json[open..].find('}').unwrap();
    json[open + 1..close]
        .split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| kv.split_once(':').unwrap().0.trim().trim_matches('"'))
        .collect()
}

fn check(v: &Value, n: &Node, path: &str) {
    let path = format!("{path}/{}", n.tag);
    assert_eq!(v["tag"].as_str().unwrap(), n.tag, "tag at {path}");
    let mut want: Vec<(String, String)> = v["attrs"]
        .as_object()
        .map(|o| o.iter().map(|(k, x)| (k.clone(), x.as_str().unwrap().to_owned())).collect())
        .unwrap_or_default();
    let mut got: Vec<(String, String)> = n.attrs.iter().map(|(k, x)| (k.clone(), x.to_string())).collect();
    want.sort();
    got.sort();
    assert_eq!(want, got, "attrs at {path}");
    match &v["content"] {
        Value::Array(items) => {
            let kids = n.child_nodes();
            assert_eq!(items.len(), kids.len(), "child count at {path}");
            for (item, kid) in items.iter().zip(kids) {
                check(item, kid, &path);
            }
        }
        Value::Object(o) if o.contains_key("hex") => {
            assert_eq!(
                o["hex"].as_str().unwrap(),
                hex::encode(n.content_bytes().unwrap()),
                "bytes at {path}"
            );
        }
        Value::Object(o) => {
            let b = n.content_bytes().unwrap();
            assert_eq!(o["len"].as_u64().unwrap(), b.len() as u64, "len at {path}");
            assert!(hex::encode(b).starts_with(o["hex_prefix"].as_str().unwrap()), "prefix at {path}");
        }
        _ => assert!(n.child_nodes().is_empty() && n.content_bytes().is_none(), "no content at {path}"),
    }
}

/// Proptest strategy: arbitrary nodes (tags and attrs drawn from the stanza vocabulary so
/// parsers get past their first checks).
pub(crate) fn arb_node() -> impl proptest::strategy::Strategy<Value = Node> {
    use proptest::prelude::*;
    let words = prop::sample::select(vec![
        "message",
        "receipt",
        "ack",
        "iq",
        "enc",
        "participants",
        "to",
        "usync",
        "list",
        "user",
        "devices",
        "device-list",
        "device",
        "key",
        "skey",
        "id",
        "value",
        "signature",
        "identity",
        "registration",
        "type",
        "retry",
        "keys",
        "error",
        "result",
        "device-identity",
        "x",
    ]);
    let keys = prop::sample::select(vec![
        "id",
        "from",
        "to",
        "type",
        "t",
        "participant",
        "recipient",
        "jid",
        "v",
        "count",
        "offline",
        "class",
        "key-index",
        "is_hosted",
        "code",
        "text",
        "error",
        "notify",
        "category",
        "addressing_mode",
    ]);
    let vals = prop::sample::select(vec![
        "1",
        "0",
        "2",
        "pkmsg",
        "msg",
        "skmsg",
        "result",
        "retry",
        "read",
        "x@s.whatsapp.net",
        "1:2@s.whatsapp.net",
        "120363@g.us",
        "bad",
        "",
        "99999999",
        "-1",
        "@",
        "a:b@c",
        "message",
    ]);
    let leaf = (
        words.clone(),
        prop::collection::vec((keys.clone(), vals.clone()), 0..5),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<u8>(),
    )
        .prop_map(|(tag, attrs, bytes, mode)| {
            let mut n = Node::new(tag);
            for (k, v) in attrs {
                n.set_attr(k, v);
            }
            n.content = match mode % 3 {
                0 => Content::Bytes(bytes),
                1 => Content::None,
                _ => Content::Str(String::from_utf8_lossy(&bytes).into_owned()),
            };
            n
        });
    leaf.prop_recursive(4, 32, 6, move |inner| {
        (
            words.clone(),
            prop::collection::vec((keys.clone(), vals.clone()), 0..6),
            prop::collection::vec(inner, 0..6),
        )
            .prop_map(|(tag, attrs, kids)| {
                let mut n = Node::new(tag);
                for (k, v) in attrs {
                    n.set_attr(k, v);
                }
                n.children(kids)
            })
    })
}

/// A→B first 1:1 message (own devices first, all pkmsg, device-identity).
pub(crate) const DM_OUT: &str = r#"{"tag": "message", "attrs": {"id": "3EB0CA77CE5D0FA9DA0A18", "type": "text", "to": "15550000002@s.whatsapp.net"}, "content": [{"tag": "participants", "attrs": {}, "content": [{"tag": "to", "attrs": {"jid": "15550000001@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "3308011221056fa20fa3b1b44d8149d4", "len": 194}}]}, {"tag": "to", "attrs": {"jid": "15550000001:2@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "33080112210509dacf19681264cf2691", "len": 211}}]}, {"tag": "to", "attrs": {"jid": "15550000002@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "3308011221052ec9c9e2085f613a778e", "len": 162}}]}, {"tag": "to", "attrs": {"jid": "15550000002:1@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "330801122105b5c74364aac16fc3b367", "len": 162}}]}]}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0801109fe090d806180112205902", "len": 178}}]}"#;
/// A group send with skmsg first, SKDM participants, device-identity.
pub(crate) const GROUP_OUT: &str = r#"{"tag": "message", "attrs": {"id": "3EB0E12BE09DBB33E5FB4F", "type": "text", "addressing_mode": "pn", "to": "120363000000000001@g.us"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "skmsg"}, "content": {"hex_prefix": "3308ba89972310001a3040cb44b35700", "len": 122}}, {"tag": "participants", "attrs": {}, "content": [{"tag": "to", "attrs": {"jid": "15550000001:2@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "33080112210509dacf19681264cf2691", "len": 260}}]}, {"tag": "to", "attrs": {"jid": "15550000002:1@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "msg"}, "content": {"hex_prefix": "330a2105e17d39304f11981e3759b43e", "len": 162}}]}, {"tag": "to", "attrs": {"jid": "15550000003:1@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "330801122105122c8520693716edd026", "len": 243}}]}]}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0801109fe090d806180112205902", "len": 178}}]}"#;
/// A follow-up group send: skmsg only.
pub(crate) const GROUP_OUT_SECOND: &str = r#"{"tag": "message", "attrs": {"id": "3EB0479CAF320F81E2A73F", "type": "text", "addressing_mode": "pn", "to": "120363000000000001@g.us"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "skmsg"}, "content": {"hex_prefix": "3308ba89972310021a309bf7bc996d72", "len": 122}}]}"#;
/// 1:1 retry resend to one device.
pub(crate) const DM_RETRY_OUT: &str = r#"{"tag": "message", "attrs": {"id": "3EB07072D99E678344629B", "type": "text", "device_fanout": "false", "to": "15550000002:1@s.whatsapp.net"}, "content": [{"tag": "participants", "attrs": {}, "content": [{"tag": "to", "attrs": {"jid": "15550000002:1@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "3308021221056532b15293c0f40fb611", "len": 178}}]}]}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0801109fe090d806180112205902", "len": 178}}]}"#;
/// Group retry resend to one device.
pub(crate) const GROUP_RETRY_OUT: &str = r#"{"tag": "message", "attrs": {"id": "3EB050459619C06BD9D490", "type": "text", "to": "120363000000000001@g.us", "participant": "15550000003:1@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "skmsg"}, "content": {"hex_prefix": "3308ba89972310061a301d7bf439e7fc", "len": 122}}, {"tag": "participants", "attrs": {}, "content": [{"tag": "to", "attrs": {"jid": "15550000003:1@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "33080312210522241ac87bdcbb276fd4", "len": 260}}]}]}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0801109fe090d806180112205902", "len": 178}}]}"#;
/// Peer (own-device protocol) message to device 0.
pub(crate) const PEER_OUT: &str = r#"{"tag": "message", "attrs": {"id": "3EB08F0DF29ABB745250C5", "type": "text", "category": "peer", "push_priority": "high_force", "to": "15550000002@s.whatsapp.net"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "330802122105e5639c55608c27e0e7d8", "len": 259}}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0802109fe090d80618011220f2f6", "len": 178}}]}"#;

/// Inbound: DSM copy on A:2 (recipient set, pkmsg, device-identity).
pub(crate) const DM_IN_DSM: &str = r#"{"tag": "message", "attrs": {"from": "15550000001:1@s.whatsapp.net", "recipient": "15550000002@s.whatsapp.net", "id": "3EB0CA77CE5D0FA9DA0A18", "t": "1795436576", "type": "text"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "33080112210509dacf19681264cf2691", "len": 211}}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0801109fe090d806180112205902", "len": 178}}]}"#;
/// Inbound: plain 1:1 msg.
pub(crate) const DM_IN: &str = r#"{"tag": "message", "attrs": {"from": "15550000002:1@s.whatsapp.net", "id": "3EB0A1F2587FA88E512B81", "t": "1795436576", "type": "text"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "msg"}, "content": {"hex_prefix": "330a2105c7e51454678904d0e68236bd", "len": 82}}]}"#;
/// Inbound: offline-queue copy.
pub(crate) const DM_IN_OFFLINE: &str = r#"{"tag": "message", "attrs": {"from": "15550000001:1@s.whatsapp.net", "id": "3EB032219A1CD6428B6DEE", "t": "1795436576", "type": "text", "offline": "1"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "330801122105122c8520693716edd026", "len": 178}}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0801109fe090d806180112205902", "len": 178}}]}"#;
/// Inbound: group message with SKDM pkmsg, skmsg, device-identity.
pub(crate) const GROUP_IN: &str = r#"{"tag": "message", "attrs": {"from": "120363000000000001@g.us", "participant": "15550000002:1@s.whatsapp.net", "id": "3EB06244DDDD62D189281A", "t": "1795436577", "type": "text", "addressing_mode": "pn"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "pkmsg"}, "content": {"hex_prefix": "330802122105be4ee7d3170d468e1a8b", "len": 259}}, {"tag": "enc", "attrs": {"v": "2", "type": "skmsg"}, "content": {"hex_prefix": "3308baa699c90510001a20274c27b9d0", "len": 107}}, {"tag": "device-identity", "attrs": {}, "content": {"hex_prefix": "0a0a0802109fe090d80618011220f2f6", "len": 178}}]}"#;

/// The order helper reads keys in text order (so attribute-order checks can fail).
#[test]
fn attr_order_helper_reads_text_order() {
    let order = top_level_attr_order(
        r#"{"tag": "x", "attrs": {"to": "1:2@s.whatsapp.net", "id": "a"}, "content": [{"tag": "y", "attrs": {"b": "c"}}]}"#,
    );
    assert_eq!(order, ["to", "id"]);
}
