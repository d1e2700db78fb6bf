//! Property tests: `unmarshal(marshal(node)) == node` over bounded trees, the documented type
//! changes of the round trip, and "arbitrary bytes never panic".

use proptest::prelude::*;

use crate::wa::binary::{AttrValue, Content, Node, marshal, samples, unmarshal};
use crate::wa::jid::{Jid, Server};

const TOKENS: &[&str] = &[
    "iq",
    "id",
    "type",
    "to",
    "from",
    "xmlns",
    "message",
    "enc",
    "key",
    "value",
    "list",
    "get",
    "set",
    "result",
    "s.whatsapp.net",
    "g.us",
    "lid",
    "status",
    "pair-device",
    "active",
    "failure",
    "participant",
    "w:p",
];

/// Tag and key names: tokens or lowercase names. Excluded: `@` (the text would be written as a
/// JID) and pure digit/uppercase-hex text (fine on the wire, just less interesting here).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(TOKENS).prop_map(str::to_owned), "[a-z][a-z0-9:._-]{0,12}"]
}

/// Text that comes back as the same text in an attribute value: tokens, packed strings, and
/// any text without `@` (text with `@` is written as a JID and comes back as a typed JID).
fn attr_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(TOKENS).prop_map(str::to_owned),
        "[0-9.-]{0,130}",
        "[0-9A-F]{0,130}",
        "[^@]{0,40}",
    ]
}

/// Typed JIDs that survive the wire unchanged. Narrowed because Baileys' AD_JID keeps only
/// `lid` vs "everything else" (domain 1/0) and one device byte: a device is generated only for
/// `s.whatsapp.net`/`lid` and in 1..=255; the user has no `@`/`:` so its text is unambiguous.
fn jid() -> impl Strategy<Value = Jid> {
    let user = prop_oneof!["[0-9]{0,18}", "[a-z0-9._-]{1,12}"];
    let plain = (user.clone(), "[a-z][a-z0-9.-]{0,10}").prop_map(|(u, s)| Jid::new(u, Server::from_name(&s)));
    let device = (user, prop_oneof![Just(Server::User), Just(Server::Lid)], 1u16..=255)
        .prop_map(|(u, s, d)| Jid::new(u, s).with_device(d));
    prop_oneof![plain, device]
}

fn attr_value() -> impl Strategy<Value = AttrValue> {
    prop_oneof![attr_text().prop_map(AttrValue::Str), jid().prop_map(AttrValue::Jid)]
}

/// Text content that comes back as text: tokens and non-empty packed strings only. Raw text
/// comes back as bytes, `""` as an empty child list and JID text in canonical form (tested
/// separately below).
fn content_text() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(TOKENS).prop_map(str::to_owned), "[0-9.-]{1,127}", "[0-9A-F]{1,127}"]
}

fn leaf() -> impl Strategy<Value = Node> {
    let content = prop_oneof![
        Just(Content::None),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Content::Bytes),
        content_text().prop_map(Content::Str),
        Just(Content::Nodes(Vec::new())),
    ];
    (name(), prop::collection::vec((name(), attr_value()), 0..5), content)
        .prop_map(|(tag, attrs, content)| Node { tag, attrs, content })
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        (name(), prop::collection::vec((name(), attr_value()), 0..4), prop::collection::vec(inner, 0..6))
            .prop_map(|(tag, attrs, children)| Node { tag, attrs, content: Content::Nodes(children) })
    })
}

/// Mutates a valid stanza: overwrite, insert, delete or truncate at `pos`.
fn mutate(mut bytes: Vec<u8>, op: u8, pos: usize, val: u8) -> Vec<u8> {
    let i = pos % (bytes.len() + 1);
    match op % 4 {
        0 if i < bytes.len() => bytes[i] = val,
        1 => bytes.insert(i, val),
        2 if i < bytes.len() => {
            bytes.remove(i);
        }
        _ => bytes.truncate(i),
    }
    bytes
}

proptest! {
    /// unmarshal(marshal(node)) == node for bounded trees built from the narrowed generators.
    #[test]
    fn round_trip(node in tree()) {
        let bytes = marshal(&node).unwrap();
        prop_assert_eq!(unmarshal(&bytes).unwrap(), node);
    }

    /// Raw string content comes back as bytes (protocol §3.2); text with `@` becomes a JID.
    #[test]
    fn raw_text_content_comes_back_as_bytes(s in "[a-z ]{1,40}[g-z]") {
        prop_assume!(crate::wa::binary::token::lookup(&s).is_none());
        let bytes = marshal(&Node::new("x").text(s.clone())).unwrap();
        prop_assert_eq!(unmarshal(&bytes).unwrap().content, Content::Bytes(s.into_bytes()));
    }

    /// A text attribute that looks like a device JID comes back as the typed JID.
    #[test]
    fn jid_text_attr_comes_back_typed(user in "[0-9]{1,15}", device in 1u16..=255) {
        let text = format!("{user}:{device}@s.whatsapp.net");
        let bytes = marshal(&Node::new("x").attr("to", text.as_str())).unwrap();
        let jid = Jid::new(user, Server::User).with_device(device);
        let node = unmarshal(&bytes).unwrap();
        prop_assert_eq!(node.attr_value("to"), Some(&AttrValue::Jid(jid)));
    }

    /// Arbitrary bytes never panic the decoder (with and without the zlib flag).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = unmarshal(&bytes);
        let mut plain = bytes.clone();
        plain.insert(0, 0);
        if let Ok(node) = unmarshal(&plain) {
            // Anything we accept is within the encoder's limits too.
            prop_assert!(marshal(&node).is_ok());
        }
    }

    /// Mutations of real stanzas never panic the decoder.
    #[test]
    fn mutated_stanzas_never_panic(which: bool, ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)) {
        let node = if which { samples::message_stanza() } else { samples::prekey_upload_iq() };
        let mut bytes = marshal(&node).unwrap();
        for (op, pos, val) in ops {
            bytes = mutate(bytes, op, pos, val);
        }
        if let Ok(node) = unmarshal(&bytes) {
            prop_assert!(marshal(&node).is_ok());
        }
    }
}
