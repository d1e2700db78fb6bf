//! Per-device delivery queue: every stanza routed to a companion (messages, forwarded
//! receipts, notifications) stays here until that device answers it (a receipt or nack for a
//! message, an ack for a receipt or notification), and is redelivered with `offline="1"` on
//! each new login.
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
}

impl Class {
    /// The `class` attribute of the matching `<ack>`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "message" => Some(Self::Message),
            "receipt" => Some(Self::Receipt),
            "notification" => Some(Self::Notification),
            _ => None,
        }
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
        let mut gone = Vec::new();
        self.items.retain(|q| {
            let hit = q.class == class && q.id == id;
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

    /// `(messages, receipts, notifications)` queued.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        self.items.iter().fold((0, 0, 0), |(m, r, n), q| match q.class {
            Class::Message => (m + 1, r, n),
            Class::Receipt => (m, r + 1, n),
            Class::Notification => (m, r, n + 1),
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
        assert_eq!(d.counts(), (2, 1, 0));
        assert_eq!(d.answer(Class::Message, "A"), vec![1]);
        assert_eq!(d.answer(Class::Message, "A"), Vec::<u64>::new());
        assert_eq!(d.items().map(|i| i.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(Class::parse("receipt"), Some(Class::Receipt));
        assert_eq!(Class::parse("call"), None);
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
