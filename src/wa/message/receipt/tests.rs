//! Tests for `receipt`: builders against the Baileys transcript, parser errors, proptests.

use proptest::prelude::*;

use super::*;
use crate::wa::message::fixtures::{DM_IN, DM_IN_DSM, GROUP_IN, arb_node, assert_shape, node};
use crate::wa::message::inbound::parse_message;

fn j(s: &str) -> Jid {
    s.parse().unwrap()
}

fn msg(json: &str) -> InboundMessage {
    parse_message(&node(json)).unwrap()
}

/// 1:1, DSM-copy and group delivery receipts match Baileys' (inactive / sender types).
#[test]
fn delivery_receipts_match_transcript() {
    let r = delivery_receipt(&msg(DM_IN), &j("15550000001:1@s.whatsapp.net"), false);
    assert_shape(
        r#"{"tag": "receipt", "attrs": {"id": "3EB0A1F2587FA88E512B81", "to": "15550000002:1@s.whatsapp.net", "type": "inactive"}}"#,
        &r,
    );
    let r = delivery_receipt(&msg(DM_IN_DSM), &j("15550000001:2@s.whatsapp.net"), false);
    assert_shape(
        r#"{"tag": "receipt", "attrs": {"id": "3EB0CA77CE5D0FA9DA0A18", "recipient": "15550000002@s.whatsapp.net", "to": "15550000001:1@s.whatsapp.net", "type": "sender"}}"#,
        &r,
    );
    let order: Vec<&str> = r.attrs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(order, ["id", "recipient", "to", "type"]);
    let r = delivery_receipt(&msg(GROUP_IN), &j("15550000003:1@s.whatsapp.net"), false);
    assert_shape(
        r#"{"tag": "receipt", "attrs": {"id": "3EB06244DDDD62D189281A", "to": "120363000000000001@g.us", "participant": "15550000002:1@s.whatsapp.net", "type": "inactive"}}"#,
        &r,
    );
    let r = delivery_receipt(&msg(GROUP_IN), &j("15550000002:3@s.whatsapp.net"), true);
    assert_eq!(r.attr_str("type"), Some("sender"), "own other device in a group");
    let r = delivery_receipt(&msg(DM_IN), &j("15550000001:1@s.whatsapp.net"), true);
    assert_eq!(r.attr_value("type"), None, "active clients send a type-less receipt");
}

/// Retry receipts (1:1 and group, count 1, no keys) match Baileys'.
#[test]
fn retry_receipts_match_transcript() {
    let m = msg(
        r#"{"tag": "message", "attrs": {"from": "15550000001:1@s.whatsapp.net", "id": "3EB07072D99E678344629B", "t": "1795436577", "type": "text"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "msg"}, "content": {"hex": "00"}}]}"#,
    );
    assert_shape(
        r#"{"tag": "receipt", "attrs": {"id": "3EB07072D99E678344629B", "type": "retry", "to": "15550000001:1@s.whatsapp.net"}, "content": [{"tag": "retry", "attrs": {"count": "1", "id": "3EB07072D99E678344629B", "t": "1795436577", "v": "1"}}, {"tag": "registration", "attrs": {}, "content": {"hex": "0000005b"}}]}"#,
        &retry_receipt(&m, 1, 0x5b, None),
    );
    let g = msg(
        r#"{"tag": "message", "attrs": {"from": "120363000000000001@g.us", "participant": "15550000001:1@s.whatsapp.net", "id": "3EB050459619C06BD9D490", "t": "1795436582", "type": "text", "addressing_mode": "pn"}, "content": [{"tag": "enc", "attrs": {"v": "2", "type": "skmsg"}, "content": {"hex": "00"}}]}"#,
    );
    assert_shape(
        r#"{"tag": "receipt", "attrs": {"id": "3EB050459619C06BD9D490", "type": "retry", "to": "120363000000000001@g.us", "participant": "15550000001:1@s.whatsapp.net"}, "content": [{"tag": "retry", "attrs": {"count": "1", "id": "3EB050459619C06BD9D490", "t": "1795436582", "v": "1"}}, {"tag": "registration", "attrs": {}, "content": {"hex": "000000c1"}}]}"#,
        &retry_receipt(&g, 1, 0xc1, None),
    );
}

/// A retry receipt with keys parses back (after the server adds `from`) into the same bundle.
#[test]
fn retry_keys_round_trip() {
    let keys = RetryKeys {
        identity: PublicKey::from_raw([1; 32]),
        pre_key: (0x01_0203, PublicKey::from_raw([2; 32])),
        signed_pre_key_id: 7,
        signed_pre_key: PublicKey::from_raw([3; 32]),
        signed_pre_key_signature: [4; 64],
        device_identity: vec![5; 10],
    };
    let mut r = retry_receipt(&msg(DM_IN), 2, 0xdead_beef, Some(&keys));
    r.set_attr("from", j("15550000001:1@s.whatsapp.net"));
    let parsed = parse_receipt(&r).unwrap();
    assert_eq!(parsed.kind, ReceiptType::Retry);
    let retry = parsed.retry.unwrap();
    assert_eq!((retry.count, retry.t, retry.registration_id), (2, Some(1_795_436_576), 0xdead_beef));
    let b = retry.bundle.unwrap();
    assert_eq!(b.registration_id, 0xdead_beef);
    assert_eq!(b.identity_key, keys.identity);
    assert_eq!(b.pre_key, Some(keys.pre_key));
    assert_eq!((b.signed_pre_key_id, b.signed_pre_key_signature), (7, [4; 64]));
}

/// Forwarded receipts from the transcript parse (delivery, sender with recipient, retry).
#[test]
fn parses_transcript_receipts() {
    let d = parse_receipt(&node(
        r#"{"tag": "receipt", "attrs": {"from": "15550000002:1@s.whatsapp.net", "id": "3EB0CA77CE5D0FA9DA0A18", "t": "1795436576"}}"#,
    ))
    .unwrap();
    assert_eq!(
        (d.kind.clone(), d.t, d.sender().clone()),
        (ReceiptType::Delivery, Some(1_795_436_576), j("15550000002:1@s.whatsapp.net"))
    );
    let s = parse_receipt(&node(
        r#"{"tag": "receipt", "attrs": {"from": "15550000001:2@s.whatsapp.net", "recipient": "15550000002@s.whatsapp.net", "type": "sender", "id": "3EB0CA77CE5D0FA9DA0A18", "t": "1795436576"}}"#,
    ))
    .unwrap();
    assert_eq!(
        (s.kind.clone(), s.recipient.clone()),
        (ReceiptType::Sender, Some(j("15550000002@s.whatsapp.net")))
    );
    let g = parse_receipt(&node(
        r#"{"tag": "receipt", "attrs": {"from": "120363000000000001@g.us", "participant": "15550000003:1@s.whatsapp.net", "type": "retry", "id": "3EB050459619C06BD9D490", "t": "1795436587"}, "content": [{"tag": "retry", "attrs": {"count": "1", "id": "3EB050459619C06BD9D490", "t": "1795436582", "v": "1"}}, {"tag": "registration", "attrs": {}, "content": {"hex": "000000c1"}}]}"#,
    ))
    .unwrap();
    assert_eq!(*g.sender(), j("15550000003:1@s.whatsapp.net"));
    let retry = g.retry.unwrap();
    assert_eq!(
        (retry.count, retry.t, retry.registration_id, retry.bundle.is_none()),
        (1, Some(1_795_436_582), 0xc1, true)
    );
}

/// Read receipts carry t, participant and extra ids in a list.
#[test]
fn read_receipt_shape() {
    let r = read_receipt(
        &j("120363@g.us"),
        Some(&j("1:2@s.whatsapp.net")),
        "a",
        &["b", "c"],
        42,
        ReceiptType::Read,
    );
    assert_shape(
        r#"{"tag":"receipt","attrs":{"id":"a","to":"120363@g.us","participant":"1:2@s.whatsapp.net","type":"read","t":"42"},"content":[{"tag":"list","attrs":{},"content":[{"tag":"item","attrs":{"id":"b"}},{"tag":"item","attrs":{"id":"c"}}]}]}"#,
        &r,
    );
    let p = parse_receipt(&{
        let mut r = r;
        r.set_attr("from", j("120363@g.us"));
        r
    })
    .unwrap();
    assert_eq!((p.kind, p.more_ids), (ReceiptType::Read, vec!["b".to_owned(), "c".to_owned()]));
}

/// Malformed receipts give typed errors.
#[test]
fn malformed_is_typed() {
    let no_retry = node(r#"{"tag":"receipt","attrs":{"id":"1","from":"1@s.whatsapp.net","type":"retry"}}"#);
    assert_eq!(
        parse_receipt(&no_retry).unwrap_err(),
        (StanzaError::MissingChild { parent: "receipt", child: "retry" })
    );
    let no_reg = node(
        r#"{"tag":"receipt","attrs":{"id":"1","from":"1@s.whatsapp.net","type":"retry"},"content":[{"tag":"retry","attrs":{"count":"1"}}]}"#,
    );
    assert_eq!(
        parse_receipt(&no_reg).unwrap_err(),
        (StanzaError::MissingChild { parent: "receipt", child: "registration" })
    );
    let no_from = node(r#"{"tag":"receipt","attrs":{"id":"1"}}"#);
    assert_eq!(
        parse_receipt(&no_from).unwrap_err(),
        (StanzaError::MissingAttr { tag: "receipt", attr: "from" })
    );
    assert_eq!(ReceiptType::from_attr(Some("server-error")), ReceiptType::Other("server-error".into()));
}

proptest! {
    /// An arbitrary node never panics the receipt parser.
    #[test]
    fn arbitrary_node_never_panics(n in arb_node()) {
        let _ = parse_receipt(&n);
    }
}
