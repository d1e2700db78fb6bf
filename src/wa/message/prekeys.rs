//! Prekey bundle fetch (protocol/11-messages.md §3.2): builds the `<iq xmlns="encrypt"
//! type="get">` for a list of devices and parses the answer into a [`PreKeyBundle`] per device.
//! It does not process bundles (X3DH lives in `wa::signal`).

use super::error::StanzaError;
use super::parse::{be_child, bytes_of, expect_result_iq, fixed_child, req_child, req_jid, user_error};
use crate::wa::binary::Node;
use crate::wa::jid::{Jid, Server};
use crate::wa::signal::{KEY_TYPE_DJB, PreKeyBundle, PublicKey};

/// The bundle query for `devices` (device 0 is written as the bare user JID, as Baileys does).
/// `reason` (`identity` / `retry`) is optional; Baileys never sends it.
pub fn prekey_fetch(iq_id: &str, devices: &[Jid], reason: Option<&str>) -> Node {
    let users = devices.iter().map(|d| {
        let user = Node::new("user").attr("jid", d.clone());
        match reason {
            Some(r) => user.attr("reason", r),
            None => user,
        }
    });
    Node::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "get")
        .attr("to", Jid::server_jid(Server::User))
        .attr("id", iq_id)
        .children([Node::new("key").children(users)])
}

/// Parses a bundle answer into `(device, bundle)` pairs in answer order. Key children may sit
/// directly under `<user>` or under a `<keys>` wrapper. An `<error>` under any user fails the
/// whole answer with [`StanzaError::UserError`] (as Baileys aborts the send).
pub fn parse_prekey_result(iq: &Node) -> Result<Vec<(Jid, PreKeyBundle)>, StanzaError> {
    expect_result_iq(iq)?;
    let list = req_child(iq, "iq", "list")?;
    let mut out = Vec::new();
    for user in list.children_with_tag("user") {
        let jid = req_jid(user, "user", "jid")?;
        if let Some(err) = user_error(user, &jid) {
            return Err(err);
        }
        let keys = user.child("keys").unwrap_or(user);
        out.push((jid, parse_bundle(user, keys)?));
    }
    Ok(out)
}

/// Server side: the devices asked for in a bundle fetch, in order.
pub fn parse_prekey_fetch(iq: &Node) -> Result<Vec<Jid>, StanzaError> {
    super::parse::expect_tag(iq, "iq")?;
    let key = req_child(iq, "iq", "key")?;
    key.children_with_tag("user").map(|u| req_jid(u, "user", "jid")).collect()
}

/// The server's answer to a bundle fetch (simulator side, the inverse of
/// [`parse_prekey_result`]): one `<user jid>` per device with its keys directly under it.
pub fn prekey_result(iq_id: &str, bundles: &[(Jid, PreKeyBundle)]) -> Node {
    let users =
        bundles.iter().map(|(jid, b)| {
            let mut kids = vec![
                Node::new("registration").bytes(b.registration_id.to_be_bytes()),
                Node::new("type").bytes([KEY_TYPE_DJB]),
                Node::new("identity").bytes(b.identity_key.raw().to_vec()),
            ];
            if let Some((id, key)) = &b.pre_key {
                kids.push(Node::new("key").children([
                    Node::new("id").bytes(id3(*id)),
                    Node::new("value").bytes(key.raw().to_vec()),
                ]));
            }
            kids.push(Node::new("skey").children([
                Node::new("id").bytes(id3(b.signed_pre_key_id)),
                Node::new("value").bytes(b.signed_pre_key.raw().to_vec()),
                Node::new("signature").bytes(b.signed_pre_key_signature.to_vec()),
            ]));
            Node::new("user").attr("jid", jid.clone()).children(kids)
        });
    Node::new("iq")
        .attr("from", Server::User.as_str())
        .attr("type", "result")
        .attr("id", iq_id)
        .children([Node::new("list").children(users)])
}

/// A key id as the 3 big-endian bytes WA sends (ids are below 2^24).
pub(crate) fn id3(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

/// A bundle from `<registration>` under `user` and the key children under `keys`.
pub(crate) fn parse_bundle(user: &Node, keys: &Node) -> Result<PreKeyBundle, StanzaError> {
    let registration_id = be_child::<4>(user, "user", "registration")?;
    if let Some(t) = keys.child("type") {
        let t = bytes_of(t, "type")?;
        if t != [KEY_TYPE_DJB] {
            return Err(StanzaError::BadLength { tag: "type", len: t.len(), expected: 1 });
        }
    }
    let identity: [u8; 32] = fixed_child(keys, "user", "identity")?;
    let skey = req_child(keys, "user", "skey")?;
    let pre_key = match keys.child("key") {
        Some(k) => {
            Some((be_child::<3>(k, "key", "id")?, PublicKey::from_raw(fixed_child(k, "key", "value")?)))
        }
        None => None,
    };
    Ok(PreKeyBundle {
        registration_id,
        identity_key: PublicKey::from_raw(identity),
        signed_pre_key_id: be_child::<3>(skey, "skey", "id")?,
        signed_pre_key: PublicKey::from_raw(fixed_child(skey, "skey", "value")?),
        signed_pre_key_signature: fixed_child(skey, "skey", "signature")?,
        pre_key,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wa::message::fixtures::{arb_node, assert_shape, node};

    const FETCH: &str = r#"{"tag": "iq", "attrs": {"xmlns": "encrypt", "type": "get", "to": "@s.whatsapp.net", "id": "62679.46528-6"}, "content": [{"tag": "key", "attrs": {}, "content": [{"tag": "user", "attrs": {"jid": "15550000002@s.whatsapp.net"}}, {"tag": "user", "attrs": {"jid": "15550000001@s.whatsapp.net"}}, {"tag": "user", "attrs": {"jid": "15550000001:2@s.whatsapp.net"}}, {"tag": "user", "attrs": {"jid": "15550000002:1@s.whatsapp.net"}}]}]}"#;
    const RESULT: &str = r#"{"tag": "iq", "attrs": {"from": "s.whatsapp.net", "type": "result", "id": "62679.46528-13"}, "content": [{"tag": "list", "attrs": {}, "content": [{"tag": "user", "attrs": {"jid": "15550000002:1@s.whatsapp.net"}, "content": [{"tag": "registration", "attrs": {}, "content": {"hex": "0000005b"}}, {"tag": "type", "attrs": {}, "content": {"hex": "05"}}, {"tag": "identity", "attrs": {}, "content": {"hex": "21b905e860be982c03567e92c6b402ac38feda064bab2d8b4985145c1d087542"}}, {"tag": "key", "attrs": {}, "content": [{"tag": "id", "attrs": {}, "content": {"hex": "000002"}}, {"tag": "value", "attrs": {}, "content": {"hex": "97b358aa037e120197952c6b24518cf825bf27e56641398e93a8cd0083bc5161"}}]}, {"tag": "skey", "attrs": {}, "content": [{"tag": "id", "attrs": {}, "content": {"hex": "000001"}}, {"tag": "value", "attrs": {}, "content": {"hex": "dad5d9481995fa0efaaa59bee7dba261bd6f859d857c98c428e11939048ce70f"}}, {"tag": "signature", "attrs": {}, "content": {"hex_prefix": "d7e456a3b55b7f92397f46fbbbefe60e", "len": 64}}]}]}]}]}"#;

    fn j(s: &str) -> Jid {
        s.parse().unwrap()
    }

    /// The fetch iq matches Baileys' (device 0 as bare user JID, no reason).
    #[test]
    fn fetch_matches_transcript() {
        let devices = [
            j("15550000002@s.whatsapp.net"),
            j("15550000001@s.whatsapp.net"),
            j("15550000001:2@s.whatsapp.net"),
            j("15550000002:1@s.whatsapp.net"),
        ];
        assert_shape(FETCH, &prekey_fetch("62679.46528-6", &devices, None));
        let with_reason = prekey_fetch("x", &devices[..1], Some("identity"));
        assert_eq!(with_reason.child_nodes()[0].child_nodes()[0].attr_str("reason"), Some("identity"));
    }

    /// The transcript's bundle answer parses into the right ids and keys.
    #[test]
    fn parses_transcript_bundle() {
        let r = parse_prekey_result(&node(RESULT)).unwrap();
        assert_eq!(r.len(), 1);
        let (jid, b) = &r[0];
        assert_eq!(*jid, j("15550000002:1@s.whatsapp.net"));
        assert_eq!(b.registration_id, 0x5b);
        assert_eq!(b.signed_pre_key_id, 1);
        assert_eq!(
            hex::encode(b.identity_key.raw()),
            "21b905e860be982c03567e92c6b402ac38feda064bab2d8b4985145c1d087542"
        );
        let (pk_id, pk) = b.pre_key.as_ref().unwrap();
        assert_eq!(*pk_id, 2);
        assert_eq!(hex::encode(pk.raw()), "97b358aa037e120197952c6b24518cf825bf27e56641398e93a8cd0083bc5161");
        assert_eq!(hex::encode(&b.signed_pre_key_signature[..16]), "d7e456a3b55b7f92397f46fbbbefe60e");
    }

    /// Keys under a `<keys>` wrapper parse, and a missing one-time prekey gives `pre_key: None`.
    #[test]
    fn keys_wrapper_and_missing_one_time_key() {
        let mut n = node(RESULT);
        // Drop the one-time key.
        if let crate::wa::binary::Content::Nodes(users) = &mut n.content
            && let crate::wa::binary::Content::Nodes(u) = &mut users[0].content
            && let crate::wa::binary::Content::Nodes(kids) = &mut u[0].content
        {
            kids.retain(|k| k.tag != "key");
            let keys: Vec<Node> = kids.drain(1..).collect();
            kids.push(Node::new("keys").children(keys));
        } else {
            panic!("fixture shape changed");
        }
        let r = parse_prekey_result(&n).unwrap();
        assert!(r[0].1.pre_key.is_none());
        assert_eq!(r[0].1.signed_pre_key_id, 1);
    }

    /// Server side: the fetch parses back to the requested devices.
    #[test]
    fn fetch_parses_server_side() {
        let devices = parse_prekey_fetch(&node(FETCH)).unwrap();
        assert_eq!(devices.len(), 4);
        assert_eq!(devices[2], j("15550000001:2@s.whatsapp.net"));
        assert_eq!(
            parse_prekey_fetch(&Node::new("iq")),
            Err(StanzaError::MissingChild { parent: "iq", child: "key" })
        );
    }

    /// The server-side answer builder reproduces the transcript's answer from the parsed bundle.
    #[test]
    fn result_builder_matches_transcript() {
        let parsed = parse_prekey_result(&node(RESULT)).unwrap();
        assert_shape(RESULT, &prekey_result("62679.46528-13", &parsed));
    }

    /// Per-user errors and short keys give typed errors.
    #[test]
    fn errors_are_typed() {
        let err = node(
            r#"{"tag":"iq","attrs":{"type":"result"},"content":[{"tag":"list","attrs":{},"content":[{"tag":"user","attrs":{"jid":"1@s.whatsapp.net"},"content":[{"tag":"error","attrs":{"code":"404","text":"item-not-found"}}]}]}]}"#,
        );
        assert_eq!(
            parse_prekey_result(&err).unwrap_err(),
            (StanzaError::UserError {
                jid: "1@s.whatsapp.net".into(),
                code: "404".into(),
                text: "item-not-found".into()
            })
        );
        let short = RESULT.replace("\"hex\": \"0000005b\"", "\"hex\": \"5b\"");
        assert_eq!(
            parse_prekey_result(&node(&short)).unwrap_err(),
            (StanzaError::BadLength { tag: "registration", len: 1, expected: 4 })
        );
    }

    proptest! {
        /// An arbitrary node never panics the bundle parser.
        #[test]
        fn arbitrary_node_never_panics(n in arb_node()) {
            let _ = parse_prekey_result(&n);
            let _ = parse_prekey_fetch(&n);
        }
    }
}
