//! Messaging scenario tests: our clients, scripted phones and a sans-IO server (see
//! [`harness`]) exchanging 1:1 and group messages, receipts, retries, offline delivery and
//! restarts — with invariant 1 asserted on every client's output log.

mod harness;

use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;

use self::harness::{Log, Net, assert_persist_before_visible, j};
use super::*;
use crate::wa::binary::Node;
use crate::wa::jid::Jid;

const A: &str = "15550000001";
const B: &str = "15550000002";
const C: &str = "15550000003";

fn statuses(net: &Net, i: usize, id: &str) -> Vec<MessageStatus> {
    net.devs[i]
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Status(s) if s.id == id => Some(s.status),
            _ => None,
        })
        .collect()
}

fn check_all(net: &Net) {
    for d in &net.devs {
        assert_persist_before_visible(&d.log);
    }
}

/// 1:1 both directions: first contact is a pkmsg (phones and own companions included, DSM to
/// our other device), the reply and later messages use established sessions; statuses flow.
#[test]
fn direct_both_directions() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let a2 = net.companion(A, 2);
    let b1 = net.companion(B, 1);
    net.send_text(a1, "M1", B, "hello b");
    assert_eq!(net.devs[b1].texts(), ["hello b"]);
    let first = net.devs[a1].sent("message");
    let kinds: Vec<String> = first[0]
        .child("participants")
        .unwrap()
        .child_nodes()
        .iter()
        .map(|to| {
            format!("{}:{}", to.attr_jid("jid").unwrap(), to.child("enc").unwrap().attr_str("type").unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            format!("{A}@s.whatsapp.net:pkmsg"),
            format!("{A}:2@s.whatsapp.net:pkmsg"),
            format!("{B}@s.whatsapp.net:pkmsg"),
            format!("{B}:1@s.whatsapp.net:pkmsg"),
        ],
        "own devices first, device 0 of both users, all pkmsg"
    );
    assert!(first[0].child("device-identity").is_some());
    // Our other device got the DSM: from_me, chat = B.
    let dsm = net.devs[a2]
        .events()
        .into_iter()
        .find_map(|e| if let Event::Message(m) = e { Some(m) } else { None });
    let dsm = dsm.unwrap();
    assert!(dsm.from_me);
    assert_eq!(dsm.chat, format!("{B}@s.whatsapp.net"));
    assert_eq!(net.phones[B].texts(), ["hello b"]);
    assert_eq!(net.phones[A].texts(), ["hello b"], "own phone gets the DSM");
    assert!(statuses(&net, a1, "M1").contains(&MessageStatus::Sent));
    assert!(statuses(&net, a1, "M1").contains(&MessageStatus::Delivered));
    assert!(
        net.devs[a1]
            .events()
            .contains(&Event::Relayed { id: "M1".into(), chat: format!("{B}@s.whatsapp.net") })
    );

    net.send_text(b1, "M2", A, "hi a");
    assert_eq!(net.devs[a1].texts(), ["hi a"]);
    assert_eq!(net.devs[a2].texts(), ["hello b", "hi a"]);
    net.send_text(a1, "M3", B, "again");
    assert_eq!(net.devs[b1].texts(), ["hello b", "again"]);
    let third = net.devs[a1].sent("message").pop().unwrap();
    let to_b1 = third
        .child("participants")
        .unwrap()
        .child_nodes()
        .iter()
        .find(|t| t.attr_jid("jid") == Some(j(&format!("{B}:1@s.whatsapp.net"))))
        .unwrap()
        .child("enc")
        .unwrap()
        .attr_str("type")
        .unwrap()
        .to_owned();
    assert_eq!(to_b1, "msg", "B replied, so the session is confirmed");
    // The receipt of a plain delivery is `inactive` to the sender device (Baileys' shape).
    let r = net.devs[b1].sent("receipt").into_iter().find(|r| r.attr_str("id") == Some("M1")).unwrap();
    assert_eq!(r.attr_str("type"), Some("inactive"));
    assert_eq!(r.attr_jid("to"), Some(j(&format!("{A}:1@s.whatsapp.net"))));
    check_all(&net);
}

/// A phone (bare Signal peer) writes first: our client decrypts its pkmsg, consumes the
/// one-time prekey in the same commit as the session, and the message is durable before the
/// event and the receipt.
#[test]
fn first_contact_from_phone() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    net.account(C);
    let before = net.devs[a1].client.keys().pre_key_count();
    net.phone_send(C, A, "P1", "from c's phone");
    assert_eq!(net.devs[a1].texts(), ["from c's phone"]);
    assert_eq!(net.devs[a1].client.keys().pre_key_count(), before - 1);
    let received = net.devs[a1]
        .log
        .iter()
        .find_map(
            |l| if let Log::Persist(Delta::Received { keys, .. }) = l { Some(keys.clone()) } else { None },
        )
        .unwrap();
    assert!(received.iter().any(|c| matches!(c, KeyChange::Delete(KeyId::PreKey(_)))));
    let m = net.devs[a1]
        .events()
        .into_iter()
        .find_map(|e| if let Event::Message(m) = e { Some(m) } else { None });
    let m = m.unwrap();
    assert_eq!((m.chat.as_str(), m.from_me), (format!("{C}@s.whatsapp.net").as_str(), false));
    check_all(&net);
}

/// Group send with SKDM fan-out, a second send without SKDMs, and a member's reply.
#[test]
fn group_send_and_receive() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let a2 = net.companion(A, 2);
    let b1 = net.companion(B, 1);
    let c1 = net.companion(C, 1);
    let g = net.group("120363000000000001@g.us", &[A, B, C]);
    net.send_text(a1, "G1", &g.to_string(), "hello group");
    for i in [a2, b1, c1] {
        assert_eq!(net.devs[i].texts(), ["hello group"], "device {i}");
    }
    assert_eq!(net.phones[B].texts(), ["hello group"]);
    let first = net.devs[a1].sent("message").pop().unwrap();
    assert_eq!(first.child_nodes()[0].attr_str("type"), Some("skmsg"), "skmsg first");
    assert_eq!(first.attr_str("addressing_mode"), Some("pn"));
    net.send_text(a1, "G2", &g.to_string(), "second");
    let second = net.devs[a1].sent("message").pop().unwrap();
    assert!(second.child("participants").is_none(), "everyone has our sender key");
    for i in [a2, b1, c1] {
        assert_eq!(net.devs[i].texts(), ["hello group", "second"]);
    }
    net.send_text(b1, "G3", &g.to_string(), "reply from b");
    assert_eq!(net.devs[a1].texts(), ["reply from b"]);
    assert_eq!(net.devs[c1].texts(), ["hello group", "second", "reply from b"]);
    let gr = net.devs[c1].sent("receipt").into_iter().find(|r| r.attr_str("id") == Some("G3")).unwrap();
    assert_eq!(gr.attr_jid("to"), Some(g.clone()));
    assert_eq!(gr.attr_jid("participant"), Some(j(&format!("{B}:1@s.whatsapp.net"))));
    let m = net.devs[a1]
        .events()
        .into_iter()
        .find_map(|e| if let Event::Message(m) = e { Some(m) } else { None });
    assert_eq!(m.unwrap().chat, g.to_string());
    check_all(&net);
}

/// A redelivered message (same ciphertext again, e.g. after a crash before the ack reached the
/// server) gets its receipt again but no second event.
#[test]
fn duplicate_redelivery_one_event() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    net.send_text(a1, "D1", B, "once");
    net.send_text(b1, "D0", A, "ack me");
    net.send_text(a1, "D2", B, "twice?");
    let (_, again) = net
        .delivered
        .iter()
        .rev()
        .find(|(d, n)| d == &net.devs[b1].jid && n.attr_str("id") == Some("D2"))
        .unwrap()
        .clone();
    let receipts_before = net.devs[b1].sent("receipt").len();
    net.devs[b1].client.handle_message(net.now, &again);
    net.drive();
    assert_eq!(net.devs[b1].texts(), ["once", "twice?"]);
    assert_eq!(net.devs[b1].sent("receipt").len(), receipts_before + 1, "receipt sent again");
    // Also for a redelivered first-contact pkmsg after its prekey was consumed.
    let (_, pk) = net
        .delivered
        .iter()
        .find(|(d, n)| d == &net.devs[b1].jid && n.attr_str("id") == Some("D1"))
        .unwrap()
        .clone();
    net.devs[b1].client.handle_message(net.now, &pk);
    net.drive();
    assert_eq!(net.devs[b1].texts(), ["once", "twice?"]);
    check_all(&net);
}

/// A corrupted ciphertext gets a retry receipt (no event, no silent ack); the sender resends
/// with the same id to that device only, and the message arrives.
#[test]
fn corrupted_ciphertext_retry_round_trip() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    net.send_text(a1, "R0", B, "setup");
    net.send_text(b1, "R1", A, "reply");
    let target = net.devs[b1].jid.clone();
    let mut flipped = false;
    net.tamper = Some(Box::new(move |d, n| {
        if *d == target && !flipped {
            flipped = true;
            if let crate::wa::binary::Content::Nodes(kids) = &mut n.content
                && let Some(crate::wa::binary::Content::Bytes(b)) = kids.get_mut(0).map(|e| &mut e.content)
                && let Some(x) = b.get_mut(20)
            {
                *x ^= 0x55;
            }
        }
    }));
    net.send_text(a1, "R2", B, "corrupted once");
    let retry =
        net.devs[b1].sent("receipt").into_iter().find(|r| r.attr_str("type") == Some("retry")).unwrap();
    assert_eq!(retry.attr_str("id"), Some("R2"));
    assert_eq!(retry.child("retry").unwrap().attr_str("count"), Some("1"));
    assert!(retry.child("keys").is_none(), "no keys on the first retry");
    let resend = net.devs[a1].sent("message").pop().unwrap();
    assert_eq!((resend.attr_str("id"), resend.attr_str("device_fanout")), (Some("R2"), Some("false")));
    assert_eq!(net.devs[b1].texts(), ["setup", "corrupted once"]);
    check_all(&net);
}

/// Retry receipts from count 2 carry keys (a fresh prekey persisted before the receipt); each
/// is followed by a plain ack, and after the last allowed retry only the ack goes out.
#[test]
fn retry_receipt_counts_and_keys() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    net.send_text(a1, "K0", B, "setup");
    let (_, good) = net.delivered.iter().find(|(d, _)| *d == net.devs[b1].jid).unwrap().clone();
    let mut bad = good.clone();
    bad.set_attr("id", "K1");
    if let crate::wa::binary::Content::Nodes(kids) = &mut bad.content {
        kids[0].content = crate::wa::binary::Content::Bytes(vec![0x33, 1, 2, 3]);
    }
    for n in 1..=6 {
        let before = net.devs[b1].log.len();
        net.devs[b1].client.handle_message(net.now, &bad);
        net.drive();
        let sent: Vec<Node> = net.devs[b1].log[before..]
            .iter()
            .filter_map(|l| if let Log::Send(s) = l { Some(s.clone()) } else { None })
            .collect();
        // Every delivery ends with a plain ack to the stanza's `from` (whatsmeow: retry
        // receipt, then ack); never the nack 500 that pins it on the server.
        let last = sent.last().unwrap();
        assert_eq!(
            (last.tag.as_str(), last.attr_str("id"), last.attr_value("error")),
            ("ack", Some("K1"), None)
        );
        assert_eq!(
            last.attr_value("to").map(ToString::to_string),
            bad.attr_value("from").map(ToString::to_string)
        );
        let retry = sent.iter().find(|s| s.tag == "receipt");
        if n <= 5 {
            let retry = retry.unwrap();
            assert_eq!(retry.attr_str("type"), Some("retry"));
            assert_eq!(retry.child("retry").unwrap().attr_str("count"), Some(n.to_string().as_str()));
            assert_eq!(retry.child("keys").is_some(), n >= 2);
        } else {
            assert!(retry.is_none(), "no retry receipt after the last allowed one");
        }
    }
    // The keys' prekey was persisted (and the counter advanced) before the receipt.
    let log = &net.devs[b1].log;
    let k = log.iter().position(|l| matches!(l, Log::Send(s) if s.child("keys").is_some())).unwrap();
    assert!(matches!(&log[k - 2], Log::Persist(Delta::PreKeys(p)) if p.len() == 1));
    assert!(matches!(&log[k - 1], Log::Persist(Delta::Creds(_))));
    assert_eq!(net.devs[b1].texts(), ["setup"]);
}

/// Issue 13 item 3: a retry receipt for a message sent before a restart is honoured from the
/// durable sent-message record: resent with the same id to that device only, and it decrypts.
/// The record was persisted in the same batch as the send's ratchet state.
#[test]
fn retry_receipt_after_restart_resends_from_store() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    net.send_text(a1, "T0", B, "setup");
    net.send_text(b1, "T1", A, "reply");
    net.offline(b1);
    let target = net.devs[b1].jid.clone();
    net.tamper = Some(Box::new(move |d, n| {
        if *d == target
            && n.attr_str("id") == Some("T2")
            && let crate::wa::binary::Content::Nodes(kids) = &mut n.content
            && let Some(crate::wa::binary::Content::Bytes(b)) = kids.get_mut(0).map(|e| &mut e.content)
            && let Some(x) = b.get_mut(20)
        {
            *x ^= 0x55;
        }
    }));
    net.send_text(a1, "T2", B, "sent before the restart");
    let sent_batch = net.devs[a1].log.iter().rev().find_map(|l| match l {
        Log::Persist(Delta::Keys(cs)) => Some(cs.clone()),
        _ => None,
    });
    assert!(
        sent_batch
            .unwrap()
            .iter()
            .any(|c| matches!(c, KeyChange::Put { id: KeyId::SentMessage(m), .. } if m == "T2")),
        "the sent record is in the batch persisted right before the stanza"
    );
    assert!(net.restart(a1).is_empty());
    net.tamper = None;
    net.reconnect(b1);
    let retry =
        net.devs[b1].sent("receipt").into_iter().find(|r| r.attr_str("type") == Some("retry")).unwrap();
    assert_eq!(retry.attr_str("id"), Some("T2"));
    let resend = net.devs[a1].sent("message").pop().expect("the restarted client resent");
    assert_eq!((resend.attr_str("id"), resend.attr_str("device_fanout")), (Some("T2"), Some("false")));
    assert_eq!(net.devs[b1].texts(), ["setup", "sent before the restart"]);
    check_all(&net);
}

/// Issue 13 item 3: the retry counter of an inbound message survives new connections (the host
/// builds a new `Client` for each), so a message redelivered on every connection still ends
/// after the last allowed retry receipt instead of starting over at count 1.
#[test]
fn retry_counter_survives_new_connections() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    net.send_text(a1, "C0", B, "setup");
    let (_, good) = net.delivered.iter().find(|(d, _)| *d == net.devs[b1].jid).unwrap().clone();
    let mut bad = good.clone();
    bad.set_attr("id", "C1");
    if let crate::wa::binary::Content::Nodes(kids) = &mut bad.content {
        kids[0].content = crate::wa::binary::Content::Bytes(vec![0x33, 1, 2, 3]);
    }
    for _ in 0..7 {
        net.new_connection(b1);
        net.devs[b1].client.handle_message(net.now, &bad);
        net.drive();
    }
    let counts: Vec<String> = net.devs[b1]
        .sent("receipt")
        .iter()
        .filter(|r| r.attr_str("type") == Some("retry") && r.attr_str("id") == Some("C1"))
        .map(|r| r.child("retry").unwrap().attr_str("count").unwrap().to_owned())
        .collect();
    assert_eq!(counts, ["1", "2", "3", "4", "5"], "one count per connection, then the final answer");
}

/// Issue 13 item 4: an `<unavailable type="view_once">` message is acked, then our phone is
/// asked for it with a peer `PLACEHOLDER_MESSAGE_RESEND` request; the phone's answer becomes a
/// received message (persisted, then the event) with the stanza's sender and chat, exactly
/// once even when the answer comes twice.
#[test]
fn unavailable_message_is_requested_from_the_phone_once() {
    use crate::wa::proto;
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    net.account(B);
    let from = format!("{B}@s.whatsapp.net");
    let unavailable = Node::new("message")
        .attr("from", from.as_str())
        .attr("id", "V1")
        .attr("t", "1800000000")
        .attr("type", "text")
        .attr("notify", "Bea")
        .children([Node::new("unavailable").attr("type", "view_once")]);
    net.push(a1, unavailable.clone());
    let sent: Vec<Node> = net.devs[a1]
        .log
        .iter()
        .filter_map(|l| if let Log::Send(n) = l { Some(n.clone()) } else { None })
        .filter(|n| n.tag == "ack" || n.tag == "message")
        .collect();
    assert_eq!((sent[0].tag.as_str(), sent[0].attr_str("id")), ("ack", Some("V1")), "acked first");
    let request = &sent[1];
    assert_eq!(
        (request.attr_str("category"), request.attr_str("push_priority"), request.attr_jid("to")),
        (Some("peer"), Some("high_force"), Some(j(&format!("{A}@s.whatsapp.net"))))
    );
    // The same stanza again (redelivered): no second request.
    net.push(a1, unavailable);
    assert_eq!(net.devs[a1].sent("message").len(), 1, "one request per message");

    let info = proto::WebMessageInfo {
        key: Some(proto::MessageKey {
            remote_jid: Some(from.clone()),
            from_me: Some(false),
            id: Some("V1".into()),
            participant: None,
        }),
        message: Some(crate::wa::message::text_message("look once")),
        message_timestamp: Some(1_800_000_000),
        ..Default::default()
    };
    let answer = proto::Message {
        protocol_message: Some(Box::new(proto::message::ProtocolMessage {
            r#type: Some(proto::message::protocol_message::Type::PeerDataOperationRequestResponseMessage as i32),
            peer_data_operation_request_response_message: Some(proto::PeerDataOperationRequestResponseMessage {
                peer_data_operation_request_type: Some(proto::PeerDataOperationRequestType::PlaceholderMessageResend as i32),
                stanza_id: request.attr_str("id").map(str::to_owned),
                peer_data_operation_result: vec![
                    proto::peer_data_operation_request_response_message::PeerDataOperationResult {
                        placeholder_message_resend_response: Some(
                            proto::peer_data_operation_request_response_message::peer_data_operation_result::PlaceholderMessageResendResponse {
                                web_message_info_bytes: Some(prost::Message::encode_to_vec(&info)),
                            },
                        ),
                    },
                ],
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    net.phone_peer_send(A, a1, "P1", &answer);
    net.phone_peer_send(A, a1, "P2", &answer);
    let got: Vec<ReceivedMessage> = net.devs[a1]
        .events()
        .into_iter()
        .filter_map(|e| if let Event::Message(m) = e { Some(*m) } else { None })
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].id.as_str(), got[0].chat.as_str(), got[0].sender.as_str(), got[0].text.as_deref()),
        ("V1", from.as_str(), from.as_str(), Some("look once"))
    );
    assert_eq!(got[0].push_name.as_deref(), Some("Bea"));
    // Persisted before it was visible; both answers were receipted.
    let log = &net.devs[a1].log;
    let k = log.iter().position(|l| matches!(l, Log::Event(Event::Message(_)))).unwrap();
    assert!(matches!(&log[k - 1], Log::Persist(Delta::Received { message, .. }) if message.id == "V1"));
    let peer_receipts =
        net.devs[a1].sent("receipt").iter().filter(|r| r.attr_str("type") == Some("peer_msg")).count();
    assert_eq!(peer_receipts, 2);
}

/// A group message whose skmsg is corrupted for one member is recovered by a retry resend
/// (fresh skmsg + SKDM to that device only, same id).
#[test]
fn group_retry_resend() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    let c1 = net.companion(C, 1);
    let g = net.group("120363000000000009@g.us", &[A, B, C]);
    net.send_text(a1, "GR0", &g.to_string(), "first");
    let target = net.devs[c1].jid.clone();
    let mut flipped = false;
    net.tamper = Some(Box::new(move |d, n| {
        if *d == target && !flipped {
            flipped = true;
            if let crate::wa::binary::Content::Nodes(kids) = &mut n.content
                && let Some(crate::wa::binary::Content::Bytes(b)) = kids.last_mut().map(|e| &mut e.content)
                && let Some(x) = b.get_mut(12)
            {
                *x ^= 0x01;
            }
        }
    }));
    net.send_text(a1, "GR1", &g.to_string(), "second");
    assert_eq!(net.devs[b1].texts(), ["first", "second"]);
    assert_eq!(net.devs[c1].texts(), ["first", "second"]);
    let resend = net.devs[a1].sent("message").pop().unwrap();
    assert_eq!(resend.attr_str("id"), Some("GR1"));
    assert_eq!(resend.attr_jid("participant"), Some(net.devs[c1].jid.clone()));
    check_all(&net);
}

/// Restart mid-conversation: both sides rebuilt from what they persisted keep decrypting
/// (including a pkmsg naming a prekey persisted by `Delta::PreKeys`), with no retry receipt.
#[test]
fn restart_mid_conversation() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    let c1 = net.companion(C, 1);
    let g = net.group("120363000000000002@g.us", &[A, B]);
    net.send_text(a1, "S1", B, "one");
    net.send_text(b1, "S2", A, "two");
    net.send_text(a1, "S3", &g.to_string(), "group one");
    assert!(net.restart(a1).is_empty());
    assert!(net.restart(b1).is_empty());
    // First contact from C to the restarted A: the prekey came from the store.
    net.send_text(c1, "S4", A, "hello after restart");
    net.send_text(a1, "S5", B, "three");
    net.send_text(b1, "S6", A, "four");
    net.send_text(b1, "S7", &g.to_string(), "group two");
    net.send_text(a1, "S8", &g.to_string(), "group three");
    assert_eq!(net.devs[b1].texts(), ["one", "group one", "three", "group three"]);
    assert_eq!(net.devs[a1].texts(), ["two", "hello after restart", "four", "group two"]);
    for d in &net.devs {
        assert!(d.sent("receipt").iter().all(|r| r.attr_str("type") != Some("retry")), "no decrypt failure");
    }
    check_all(&net);
}

/// A device that lost every key (sessions and one-time prekeys) recovers through retry
/// receipts: count 1 makes the sender re-fetch a bundle (whose prekey is gone too), count 2
/// carries fresh keys, and the resend with those keys decrypts.
#[test]
fn lost_keys_recover_via_retries() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    net.send_text(a1, "L1", B, "before");
    net.send_text(b1, "L2", A, "reply");
    net.devs[b1].store.clear();
    assert!(net.restart(b1).is_empty());
    net.send_text(a1, "L3", B, "after the loss");
    assert_eq!(net.devs[b1].texts(), ["before", "after the loss"]);
    let counts: Vec<String> = net.devs[b1]
        .sent("receipt")
        .iter()
        .filter(|r| r.attr_str("type") == Some("retry"))
        .map(|r| r.child("retry").unwrap().attr_str("count").unwrap().to_owned())
        .collect();
    assert_eq!(counts, ["1", "2"]);
    // B1's new session also clears it from A's sender-key memory: a group send re-sends the SKDM.
    let g = net.group("120363000000000003@g.us", &[A, B]);
    net.send_text(a1, "L4", &g.to_string(), "group before");
    net.devs[b1].store.clear();
    assert!(net.restart(b1).is_empty());
    net.send_text(b1, "L5", A, "i am new again");
    net.send_text(a1, "L6", &g.to_string(), "group after");
    let last = net.devs[a1].sent("message").pop().unwrap();
    let skdm_to: Vec<Jid> = last
        .child("participants")
        .map(|p| p.child_nodes().iter().filter_map(|t| t.attr_jid("jid")).collect())
        .unwrap_or_default();
    assert_eq!(skdm_to, [net.devs[b1].jid.clone()]);
    assert_eq!(net.devs[b1].texts().last().map(String::as_str), Some("group after"));
    let retries = net.devs[b1].sent("receipt").iter().filter(|r| r.attr_str("type") == Some("retry")).count();
    assert_eq!(retries, 2, "the group message needed no retry");
    check_all(&net);
}

/// Messages queued while offline arrive after the preview → batch handshake, flagged offline,
/// and the end marker gives `Ready`.
#[test]
fn offline_queue() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    net.offline(b1);
    net.send_text(a1, "O1", B, "while away");
    assert!(net.devs[b1].texts().is_empty());
    net.reconnect(b1);
    assert_eq!(net.devs[b1].texts(), ["while away"]);
    let batch = net.devs[b1].sent("ib");
    assert_eq!(batch[0].child("offline_batch").and_then(|b| b.attr_str("count")), Some("100"));
    let evs = net.devs[b1].events();
    assert!(evs.iter().any(|e| matches!(e, Event::Message(m) if m.offline)));
    assert!(evs.contains(&Event::Ready { offline: 1 }));
    check_all(&net);
}

/// A send whose iqs are never answered is deferred after the timeout (a passing failure: the
/// caller retries with the same id; no failed status); bad recipients and sends while offline
/// are refused at once.
#[test]
fn send_failures() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let now = net.now;
    let c = &mut net.devs[a1].client;
    assert!(matches!(c.send_text(now, "X", "nonsense", "t"), Err(SendError::InvalidRecipient(_))));
    c.send_text(now, "T1", "15559999999", "into the void").unwrap();
    assert!(matches!(c.send_text(now, "T1", B, "dup"), Err(SendError::InProgress(_))));
    // Swallow the usync iq: the server never answers.
    while c.poll_output().is_some() {}
    net.advance(send::SEND_TIMEOUT + Duration::from_secs(1));
    assert!(statuses(&net, a1, "T1").is_empty());
    assert!(net.devs[a1].events().iter().any(|e| matches!(e, Event::SendDeferred { id } if id == "T1")));
    let mut idle = Client::new(
        net.devs[a1].client.config().clone(),
        net.devs[a1].creds.clone(),
        Box::new(rand::rngs::StdRng::seed_from_u64(1)),
        now,
        1,
    );
    assert_eq!(idle.send_text(now, "Y", B, "t"), Err(SendError::NotLoggedIn));
}

/// A send to a user without a fetchable bundle fails with a status; a server ack with an
/// error marks the message failed; read and played receipts become statuses (and are acked).
#[test]
fn statuses_from_server() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let b1 = net.companion(B, 1);
    net.send_text(a1, "U1", "15559999999", "nobody");
    assert!(
        statuses(&net, a1, "U1")
            .iter()
            .any(|s| matches!(s, MessageStatus::Failed(r) if r.contains("bundle"))),
        "{:?}",
        statuses(&net, a1, "U1")
    );
    assert!(!net.devs[a1].events().iter().any(|e| matches!(e, Event::Relayed { id, .. } if id == "U1")));
    net.send_text(a1, "U2", B, "hi");
    let now = net.now;
    let nack = Node::new("ack").attr("class", "message").attr("id", "U2").attr("error", "479");
    net.devs[a1].client.handle_node(now, &nack);
    for (kind, want) in [("read", MessageStatus::Read), ("played", MessageStatus::Played)] {
        let r = Node::new("receipt")
            .attr("from", net.devs[b1].jid.clone())
            .attr("id", "U2")
            .attr("t", "5")
            .attr("type", kind);
        net.devs[a1].client.handle_node(now, &r);
        net.drive();
        assert_eq!(statuses(&net, a1, "U2").last(), Some(&want));
        let ack = net.devs[a1].sent("ack").pop().unwrap();
        assert_eq!((ack.attr_str("class"), ack.attr_str("type")), (Some("receipt"), Some(kind)));
    }
    assert!(statuses(&net, a1, "U2").contains(&MessageStatus::Failed("server error 479".into())));
}

/// A low prekey count notification triggers a refill upload (keys persisted first).
#[test]
fn low_prekey_notification_refills() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let before = net.devs[a1].client.keys().pre_key_count();
    let n = Node::new("notification")
        .attr("id", "n1")
        .attr("from", "s.whatsapp.net")
        .attr("type", "encrypt")
        .children([Node::new("count").attr("value", "2")]);
    net.devs[a1].client.handle_node(net.now, &n);
    net.drive();
    assert_eq!(net.devs[a1].client.keys().pre_key_count(), before + PRE_KEY_BATCH as usize);
    let log = &net.devs[a1].log;
    let upload = log
        .iter()
        .rposition(|l| matches!(l, Log::Send(s) if s.attr_str("xmlns") == Some("encrypt")))
        .unwrap();
    assert!(log[..upload].iter().any(|l| matches!(l, Log::Persist(Delta::PreKeys(_)))));
}

/// The last stanza client `i` sent.
fn last_sent(net: &Net, i: usize) -> Node {
    net.devs[i]
        .log
        .iter()
        .rev()
        .find_map(|l| if let Log::Send(s) = l { Some(s.clone()) } else { None })
        .unwrap()
}

fn text(n: &Node, k: &str) -> Option<String> {
    n.attr_value(k).map(ToString::to_string)
}

/// Notifications are acked like the references do it: to the notification's `from` (a group,
/// a contact, our own JID), with `participant` and `type` echoed (issue 13: the ack used to
/// go to `@s.whatsapp.net`, which leaves it pending on the server).
#[test]
fn notification_ack_goes_to_from_with_participant() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let cases = [
        ("120363000000000001@g.us", Some("15550000002@s.whatsapp.net"), "w:gp2"),
        ("15550000002@s.whatsapp.net", None, "devices"),
        ("15550000001@s.whatsapp.net", None, "account_sync"),
        ("s.whatsapp.net", None, "encrypt"),
    ];
    for (i, (from, participant, kind)) in cases.into_iter().enumerate() {
        let mut n = Node::new("notification")
            .attr("from", from)
            .attr("id", format!("N{i}"))
            .attr("type", kind)
            .attr("t", "5");
        if let Some(p) = participant {
            n.set_attr("participant", p);
        }
        net.devs[a1].client.handle_node(net.now, &n);
        net.drive();
        let ack = last_sent(&net, a1);
        assert_eq!(ack.tag, "ack", "{kind}");
        assert_eq!(
            (text(&ack, "class"), text(&ack, "id"), text(&ack, "to")),
            (Some("notification".into()), Some(format!("N{i}")), Some(from.to_owned())),
            "{kind}"
        );
        assert_eq!(
            (text(&ack, "participant").as_deref(), text(&ack, "type").as_deref()),
            (participant, Some(kind))
        );
    }
}

/// `<call>` (every child: offer, terminate, …), `<appdata>` and `<status>` stanzas are acked
/// with `class` = their tag, to their `from`, `type` echoed; presence and chatstate are not.
#[test]
fn call_appdata_status_are_acked() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let from = "15550000002@s.whatsapp.net";
    for (i, (tag, child)) in [
        ("call", "offer"),
        ("call", "relaylatency"),
        ("call", "terminate"),
        ("appdata", "x"),
        ("status", "enc"),
    ]
    .into_iter()
    .enumerate()
    {
        let n = Node::new(tag)
            .attr("from", from)
            .attr("id", format!("C{i}"))
            .attr("t", "5")
            .children([Node::new(child).attr("call-id", "CID")]);
        net.devs[a1].client.handle_node(net.now, &n);
        net.drive();
        let ack = last_sent(&net, a1);
        assert_eq!(
            (ack.tag.as_str(), text(&ack, "class"), text(&ack, "id"), text(&ack, "to")),
            ("ack", Some(tag.to_owned()), Some(format!("C{i}")), Some(from.to_owned())),
            "{tag}/{child}"
        );
    }
    let before = net.devs[a1].sent("ack").len();
    for tag in ["presence", "chatstate"] {
        net.devs[a1].client.handle_node(net.now, &Node::new(tag).attr("from", from).attr("id", "P"));
    }
    net.drive();
    assert_eq!(net.devs[a1].sent("ack").len(), before, "presence and chatstate are not acked");
}

/// An `<enc>` of a type we do not decode (Meta AI `msmsg`) and a `<plaintext>` newsletter
/// message are acked (no `error`), not nacked 487; a malformed message still is.
#[test]
fn unknown_enc_and_plaintext_are_acked_not_nacked() {
    let mut net = Net::new();
    let a1 = net.companion(A, 1);
    let msg = |id: &str, from: &str| Node::new("message").attr("id", id).attr("from", from).attr("t", "5");
    let unknown = msg("E1", "15550000002@s.whatsapp.net")
        .children([Node::new("enc").attr("v", "2").attr("type", "msmsg").bytes(vec![1, 2, 3])]);
    let news = msg("E2", "120363000000000777@newsletter")
        .attr("type", "text")
        .children([Node::new("plaintext").bytes(vec![0x0a, 0x01, 0x41])]);
    for n in [&unknown, &news] {
        net.devs[a1].client.handle_node(net.now, n);
        net.drive();
        let ack = last_sent(&net, a1);
        assert_eq!((ack.tag.as_str(), text(&ack, "id"), text(&ack, "error")), ("ack", text(n, "id"), None));
        assert_eq!((text(&ack, "class"), text(&ack, "to")), (Some("message".into()), text(n, "from")));
    }
    net.devs[a1].client.handle_node(net.now, &msg("E3", "15550000002@s.whatsapp.net"));
    net.drive();
    assert_eq!(text(&last_sent(&net, a1), "error").as_deref(), Some("487"), "malformed: nacked");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Arbitrary bytes inside an `<enc>` (any type) never panic the receive path, and each
    /// such message is answered (retry receipt or receipt), never dropped silently.
    #[test]
    fn arbitrary_enc_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), kind in 0..3usize) {
        let mut net = Net::new();
        let a1 = net.companion(A, 1);
        let t = ["pkmsg", "msg", "skmsg"][kind];
        let from = if t == "skmsg" { "1203@g.us" } else { "15550000002:1@s.whatsapp.net" };
        let mut n = Node::new("message").attr("id", "Z").attr("from", from).attr("t", "1");
        if t == "skmsg" {
            n.set_attr("participant", "15550000002:1@s.whatsapp.net");
        }
        let n = n.children([Node::new("enc").attr("v", "2").attr("type", t).bytes(bytes)]);
        let before = net.devs[a1].log.len();
        net.devs[a1].client.handle_message(net.now, &n);
        net.drive();
        let answers: Vec<Node> = net.devs[a1].log[before..]
            .iter()
            .filter_map(|l| if let Log::Send(s) = l { Some(s.clone()) } else { None })
            .filter(|s| s.tag == "receipt" || s.tag == "ack")
            .collect();
        // Cleared on the server: a receipt, or a plain ack (after at most one retry receipt).
        let clears = |s: &Node| {
            (s.tag == "receipt" && s.attr_str("type") != Some("retry"))
                || (s.tag == "ack" && s.attr_value("error").is_none())
        };
        prop_assert_eq!(answers.iter().filter(|s| clears(s)).count(), 1, "{:?}", answers);
        prop_assert!(answers.len() <= 2, "{:?}", answers);
    }
}
