//! The per-tenant inbox index and its cap: which undelivered inbox items exist (ids and stored
//! sizes only, never payloads) and whether one more fits under the tenant's limits
//! ([`Limits`], env `STAYLINKED_INBOX_MAX_*`).
//!
//! Shared by the tenant actor (adds an item when a received message is committed; waits for
//! space when the inbox is full), the webhook task (removes delivered items) and the API
//! (`POST /inbox/ack` removes acknowledged items). Every removal wakes a waiting actor. No IO.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Per-tenant caps on the durable inbox and the outbox (env `STAYLINKED_INBOX_MAX_*`,
/// `STAYLINKED_OUTBOX_MAX_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most undelivered inbox items per tenant.
    pub inbox_max_messages: u64,
    /// Most stored bytes of undelivered inbox items per tenant.
    pub inbox_max_bytes: u64,
    /// Most queued (not yet sent) outbox messages per tenant.
    pub outbox_max_messages: u64,
    /// Most bytes of queued outbox texts per tenant.
    pub outbox_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            inbox_max_messages: 5_000,
            inbox_max_bytes: 32 * 1024 * 1024,
            outbox_max_messages: 10_000,
            outbox_max_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    items: BTreeMap<String, u64>,
    bytes: u64,
}

/// The inbox index of one tenant (cheap to share behind an `Arc`).
#[derive(Debug)]
pub struct InboxIndex {
    max_messages: u64,
    max_bytes: u64,
    index: Mutex<Index>,
    freed: Notify,
}

/// A snapshot of an inbox's fill level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Items.
    pub messages: u64,
    /// Stored bytes.
    pub bytes: u64,
}

impl InboxIndex {
    /// An empty index with the inbox caps of `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_messages: limits.inbox_max_messages,
            max_bytes: limits.inbox_max_bytes,
            index: Mutex::new(Index::default()),
            freed: Notify::new(),
        }
    }

    /// Replaces the index with `items` (id → stored size), e.g. from a hydrated snapshot.
    pub fn reset(&self, items: &BTreeMap<String, u64>) {
        if let Ok(mut ix) = self.index.lock() {
            ix.items.clone_from(items);
            ix.bytes = items.values().sum();
        }
        self.freed.notify_waiters();
    }

    /// The most bytes one item may have (a bigger one can never fit).
    pub fn max_item_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The caps: (messages, bytes).
    pub fn caps(&self) -> Fill {
        Fill { messages: self.max_messages, bytes: self.max_bytes }
    }

    /// Whether one more item of `size` bytes fits under both caps.
    pub fn fits(&self, size: u64) -> bool {
        self.index.lock().is_ok_and(|ix| {
            (ix.items.len() as u64) < self.max_messages && ix.bytes.saturating_add(size) <= self.max_bytes
        })
    }

    /// Records a committed item.
    pub fn add(&self, id: &str, size: u64) {
        if let Ok(mut ix) = self.index.lock()
            && ix.items.insert(id.to_owned(), size).is_none()
        {
            ix.bytes = ix.bytes.saturating_add(size);
        }
    }

    /// Forgets deleted items (absent ids are fine) and wakes whoever waits for space.
    pub fn remove<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut ix) = self.index.lock() {
            for id in ids {
                if let Some(size) = ix.items.remove(id) {
                    ix.bytes = ix.bytes.saturating_sub(size);
                }
            }
        }
        self.freed.notify_waiters();
    }

    /// The current fill level.
    pub fn fill(&self) -> Fill {
        self.index
            .lock()
            .map(|ix| Fill { messages: ix.items.len() as u64, bytes: ix.bytes })
            .unwrap_or(Fill { messages: 0, bytes: 0 })
    }

    /// Every id, ascending (arrival order).
    pub fn ids(&self) -> Vec<String> {
        self.index.lock().map(|ix| ix.items.keys().cloned().collect()).unwrap_or_default()
    }

    /// Resolves at the next removal (register before checking [`fits`](Self::fits) again).
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(messages: u64, bytes: u64) -> Limits {
        Limits { inbox_max_messages: messages, inbox_max_bytes: bytes, ..Limits::default() }
    }

    /// Both caps hold: by count and by bytes; removing frees space; re-adding an id is not
    /// counted twice.
    #[test]
    fn caps_by_count_and_bytes() {
        let ix = InboxIndex::new(&limits(2, 100));
        assert!(ix.fits(100) && !ix.fits(101));
        ix.add("a", 60);
        ix.add("a", 60);
        assert_eq!(ix.fill(), Fill { messages: 1, bytes: 60 });
        assert!(ix.fits(40) && !ix.fits(41));
        ix.add("b", 10);
        assert!(!ix.fits(1), "count cap");
        ix.remove(["a", "zz"]);
        assert_eq!(ix.fill(), Fill { messages: 1, bytes: 10 });
        assert!(ix.fits(90));
        ix.reset(&BTreeMap::from([("x".to_owned(), 5), ("y".to_owned(), 7)]));
        assert_eq!((ix.fill(), ix.ids()), (Fill { messages: 2, bytes: 12 }, vec!["x".into(), "y".into()]));
    }

    /// A waiter registered before a removal is woken by it.
    #[tokio::test]
    async fn removal_wakes_waiter() {
        let ix = std::sync::Arc::new(InboxIndex::new(&limits(1, 100)));
        ix.add("a", 1);
        let waiter = std::sync::Arc::clone(&ix);
        let t = tokio::spawn(async move {
            loop {
                let freed = waiter.freed();
                if waiter.fits(1) {
                    return;
                }
                freed.await;
            }
        });
        tokio::task::yield_now().await;
        ix.remove(["a"]);
        tokio::time::timeout(std::time::Duration::from_secs(5), t).await.unwrap().unwrap();
    }
}
