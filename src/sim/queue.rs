//! Per-device delivery queue: every stanza routed to a companion (messages, forwarded
//! receipts, notifications, calls) stays here until that device answers it, and is
//! redelivered with `offline="1"` on each new login.
//!
//! What answers a stanza (the real server's rule, as whatsmeow `receipt.go sendAck` and
//! Baileys `messages-recv sendMessageAck` build their acks): an `<ack>` whose `class` is the
//! stanza's tag, whose `id` is its id, whose `to` is the stanza's `from`, and which echoes the
//! stanza's `participant` when it has one. A message is also answered by any receipt naming
//! its id except a retry receipt (whatsapp-rust#647: the retry receipt alone does not clear
//! it), and a message nack with `error="500"` does not answer it (Baileys#2779: it stays
//! pending and is redelivered).
//!
//! Data only; the simulator core decides when to send and when to drop.

use std::collections::VecDeque;

use crate::wa::binary::Node;

/// Most stanzas kept per device; the oldest is dropped beyond that.
pub(crate) const MAX_QUEUE: usize = 5_000;

/// What kind of stanza a queued item is (the device answers each kind differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `<message>`: answered by a receipt (any type) or `<ack class="message">`.
    Message,
    /// `<receipt>`: answered by `<ack class="receipt">`.
    Receipt,
    /// `<notification>`: answered by `<ack class="notification">`.
    Notification,
    /// `<call>` (offer, terminate, …): answered by `<ack class="call">`.
    Call,
}

impl Class {
    /// The `class` attribute of the matching `<ack>`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "message" => Some(Self::Message),
            "receipt" => Some(Self::Receipt),
            "notification" => Some(Self::Notification),
            "call" => Some(Self::Call),
            _ => None,
        }
    }

    /// The stanza tag (= the `class` of its ack).
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Receipt => "receipt",
            Self::Notification => "notification",
            Self::Call => "call",
        }
    }
}

/// An `<ack>` from a device, as far as matching it to a queued stanza goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceAck<'a> {
    /// `class`.
    pub(crate) class: Class,
    /// `id`.
    pub(crate) id: &'a str,
    /// `to`, as text.
    pub(crate) to: Option<&'a str>,
    /// `participant`, as text.
    pub(crate) participant: Option<&'a str>,
    /// `error`, if the ack is a nack.
    pub(crate) error: Option<&'a str>,
}

impl DeviceAck<'_> {
    /// Whether this ack answers `q`: same class and id, `to` = the stanza's `from`, the
    /// stanza's `participant` echoed; a message nack 500 answers nothing.
    fn answers(&self, q: &Queued) -> bool {
        let attr = |k: &str| q.node.attr_value(k).map(ToString::to_string);
        if q.class != self.class || q.id != self.id {
            return false;
        }
        if self.class == Class::Message && self.error == Some("500") {
            return false;
        }
        let to_ok = attr("from").as_deref() == self.to;
        let participant_ok = attr("participant").is_none_or(|p| Some(p.as_str()) == self.participant);
        to_ok && participant_ok
    }
}

/// One queued stanza.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// Sequence number, unique within the simulator.
    pub(crate) seq: u64,
    /// Its kind.
    pub(crate) class: Class,
    /// The stanza id the device's answer names.
    pub(crate) id: String,
    /// The stanza as delivered live (without `offline`).
    pub(crate) node: Node,
}

/// The queue of one device.
#[derive(Debug, Default)]
pub(crate) struct DeviceQueue {
    items: VecDeque<Queued>,
}

impl DeviceQueue {
    /// Appends an item; returns the one dropped to stay within [`MAX_QUEUE`], if any.
    pub(crate) fn push(&mut self, item: Queued) -> Option<Queued> {
        self.items.push_back(item);
        if self.items.len() > MAX_QUEUE { self.items.pop_front() } else { None }
    }

    /// Removes every item of `class` with id `id`; returns their sequence numbers.
    pub(crate) fn answer(&mut self, class: Class, id: &str) -> Vec<u64> {
        self.remove_where(|q| q.class == class && q.id == id)
    }

    /// Removes the oldest item `ack` answers (see [`DeviceAck`]): one ack answers one
    /// delivery, so a resend with the same id (after a retry receipt) needs its own. Returns
    /// its sequence number.
    pub(crate) fn ack(&mut self, ack: &DeviceAck<'_>) -> Vec<u64> {
        let Some(pos) = self.items.iter().position(|q| ack.answers(q)) else { return Vec::new() };
        self.items.remove(pos).map(|q| q.seq).into_iter().collect()
    }

    /// The item with sequence number `seq`, if still queued.
    pub(crate) fn get(&self, seq: u64) -> Option<&Queued> {
        self.items.iter().find(|q| q.seq == seq)
    }

    fn remove_where(&mut self, mut f: impl FnMut(&Queued) -> bool) -> Vec<u64> {
        let mut gone = Vec::new();
        self.items.retain(|q| {
            let hit = f(q);
            if hit {
                gone.push(q.seq);
            }
            !hit
        });
        gone
    }

    /// Items in delivery order.
    pub(crate) fn items(&self) -> impl Iterator<Item = &Queued> {
        self.items.iter()
    }

    /// Number of queued items.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// `(messages, receipts, notifications, calls)` queued.
    pub(crate) fn counts(&self) -> (u64, u64, u64, u64) {
        self.items.iter().fold((0, 0, 0, 0), |(m, r, n, c), q| match q.class {
            Class::Message => (m + 1, r, n, c),
            Class::Receipt => (m, r + 1, n, c),
            Class::Notification => (m, r, n + 1, c),
            Class::Call => (m, r, n, c + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(seq: u64, class: Class, id: &str) -> Queued {
        Queued { seq, class, id: id.into(), node: Node::new("x") }
    }

    /// Answers remove only items of the matching class and id; counts follow.
    #[test]
    fn answer_matches_class_and_id() {
        let mut d = DeviceQueue::default();
        d.push(q(1, Class::Message, "A"));
        d.push(q(2, Class::Receipt, "A"));
        d.push(q(3, Class::Message, "B"));
        assert_eq!(d.counts(), (2, 1, 0, 0));
        assert_eq!(d.answer(Class::Message, "A"), vec![1]);
        assert_eq!(d.answer(Class::Message, "A"), Vec::<u64>::new());
        assert_eq!(d.items().map(|i| i.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(Class::parse("receipt"), Some(Class::Receipt));
        assert_eq!(Class::parse("call"), Some(Class::Call));
        assert_eq!(Class::parse("presence"), None);
    }

    /// An ack answers a stanza only when addressed like the references address it: `to` =
    /// the stanza's `from`, its `participant` echoed; a message nack 500 answers nothing.
    #[test]
    fn ack_must_echo_from_and_participant() {
        let mut d = DeviceQueue::default();
        let n =
            Node::new("notification").attr("from", "120363@g.us").attr("participant", "1555@s.whatsapp.net");
        d.push(Queued { seq: 1, class: Class::Notification, id: "N".into(), node: n });
        let m = Node::new("message").attr("from", "1555@s.whatsapp.net");
        d.push(Queued { seq: 2, class: Class::Message, id: "M".into(), node: m });
        let ack = |class, id, to, participant, error| DeviceAck { class, id, to, participant, error };
        let server = Some("s.whatsapp.net");
        assert!(d.ack(&ack(Class::Notification, "N", server, None, None)).is_empty(), "to the server");
        assert!(d.ack(&ack(Class::Notification, "N", Some("120363@g.us"), None, None)).is_empty());
        assert!(
            d.ack(&ack(Class::Receipt, "N", Some("120363@g.us"), Some("1555@s.whatsapp.net"), None))
                .is_empty()
        );
        assert!(d.ack(&ack(Class::Message, "M", Some("1555@s.whatsapp.net"), None, Some("500"))).is_empty());
        assert_eq!(
            d.ack(&ack(Class::Notification, "N", Some("120363@g.us"), Some("1555@s.whatsapp.net"), None)),
            vec![1]
        );
        assert_eq!(d.ack(&ack(Class::Message, "M", Some("1555@s.whatsapp.net"), None, Some("487"))), vec![2]);
        assert_eq!(d.len(), 0);
    }

    /// The queue is bounded: the oldest item is dropped.
    #[test]
    fn bounded() {
        let mut d = DeviceQueue::default();
        for i in 0..MAX_QUEUE as u64 {
            assert!(d.push(q(i, Class::Message, "m")).is_none());
        }
        assert_eq!(d.push(q(9_999_999, Class::Message, "m")).map(|x| x.seq), Some(0));
        assert_eq!(d.len(), MAX_QUEUE);
    }
}
