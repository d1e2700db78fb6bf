//! Ack discipline end to end (issue 13 item 2): our real [`Client`] against the simulator,
//! which keeps every stanza it pushes pending until the device acks it the way the real
//! server wants (`to` = the stanza's `from`, `participant` echoed) and ends the stream with
//! `<stream:error><ack/>` after the ack timeout. Virtual clock; a short ack timeout.
//!
//! [`Client`]: crate::wa::client::Client

use std::time::{Duration, Instant};

use super::Fault;
use super::testing::{OnlinePair, PHONE};
use crate::wa::binary::{Node, marshal};
use crate::wa::client::Event;

/// A second account that calls and writes to the tenant's phone.
const OTHER: &str = "15550008888";
/// The ack timeout of these tests (the real server's is about a minute).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

fn online(seed: u64) -> OnlinePair {
    #[expect(clippy::disallowed_methods, reason = "an arbitrary origin for the virtual clock")]
    let now = Instant::now();
    let mut p = OnlinePair::new(seed, now).expect("online");
    p.sim_mut().add_phone(OTHER, "Other").unwrap();
    p.sim_mut().set_ack_timeout(ACK_TIMEOUT);
    p
}

fn own_device(p: &OnlinePair) -> String {
    p.client().creds().me.as_ref().map(|m| m.jid.clone()).unwrap_or_default()
}

/// No stanza is pending, the stream survives well past the ack timeout, no reconnect.
fn assert_all_acked(p: &mut OnlinePair, logins: u64) {
    assert_eq!(p.sim_mut().stats().unacked, 0, "stanzas left pending");
    p.advance(ACK_TIMEOUT * 3);
    assert_eq!(p.closed(), None);
    let s = p.sim_mut().stats();
    assert_eq!((s.ack_stream_errors, s.logins, s.unacked), (0, logins, 0), "{s:?}");
}

/// 20 calls in a row (offer + terminate each) to a linked client: every `<call>` is acked to
/// its `from`, nothing stays pending, no `<stream:error><ack/>`, no reconnect.
#[test]
fn twenty_calls_are_acked() {
    let mut p = online(31);
    let logins = p.sim_mut().stats().logins;
    for _ in 0..20 {
        let now = p.now();
        let (_, rang) = p.sim_mut().phone_call(now, OTHER, PHONE).unwrap();
        assert_eq!(rang, 1);
        p.settle();
    }
    assert_eq!(p.sim_mut().stats().calls, 20);
    assert_all_acked(&mut p, logins);
}

/// A group notification (from the group, with the creator as `participant`) is acked to its
/// `from` with the participant echoed; an ack to the server would leave it pending.
#[test]
fn notifications_are_acked_to_their_from() {
    let mut p = online(32);
    let logins = p.sim_mut().stats().logins;
    let now = p.now();
    p.sim_mut().create_group(now, "acks", &[OTHER.into(), PHONE.into()]).unwrap();
    p.settle();
    assert_all_acked(&mut p, logins);
}

/// A message that can never decrypt (every resend is spoilt too) gets retry receipts, then is
/// acked (never a nack 500 that pins it): nothing stays pending, no ack stream error, and the
/// next login has nothing to redeliver.
#[test]
fn undecryptable_message_is_acked_and_not_redelivered() {
    let mut p = online(33);
    let logins = p.sim_mut().stats().logins;
    let dev = own_device(&p);
    let now = p.now();
    p.sim_mut().inject_fault(now, &dev, Fault::UndecryptableNextMessage).unwrap();
    p.sim_mut().phone_send(now, OTHER, PHONE, "never readable").unwrap();
    p.settle();
    let s = p.sim_mut().stats();
    assert!(s.retry_receipts >= 1 && s.corrupted >= 2, "retries and resends happened: {s:?}");
    assert!(!p.events().iter().any(|e| matches!(e, Event::Message(_))));
    assert_all_acked(&mut p, logins);
    let redelivered = p.sim_mut().stats().offline_redelivered;
    assert!(p.relogin(34), "relogin");
    assert_eq!(
        p.events().iter().find_map(|e| if let Event::Ready { offline } = e { Some(*offline) } else { None }),
        Some(0)
    );
    assert_eq!(p.sim_mut().stats().offline_redelivered, redelivered, "nothing redelivered");
}

/// An undecodable stanza and an unexpected `pair-device` on a linked connection are skipped:
/// the connection stays up (no QR), and the next stanza is still acked.
#[test]
fn undecodable_stanza_and_pair_device_keep_the_link() {
    let mut p = online(35);
    let logins = p.sim_mut().stats().logins;
    p.feed_plaintext(&[0x00, 0xf8, 0xff, 0x01]);
    let pair = Node::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("type", "set")
        .attr("id", "pd1")
        .attr("xmlns", "md")
        .children([Node::new("pair-device").children([Node::new("ref").bytes(b"2@x".to_vec())])]);
    p.feed_plaintext(&marshal(&pair).unwrap());
    assert_eq!(p.closed(), None);
    assert!(!p.events().iter().any(|e| matches!(e, Event::Qr(_))));
    let now = p.now();
    p.sim_mut().phone_call(now, OTHER, PHONE).unwrap();
    p.settle();
    assert_all_acked(&mut p, logins);
}
