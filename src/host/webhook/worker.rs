//! One tenant's webhook delivery task: takes events from the tenant's lane in order, posts
//! each (signed) to the tenant's current `webhook_url` until it gets a 2xx, backing off
//! exponentially with full jitter between failures, and keeps accepting new events meanwhile
//! so publishing never blocks. A delivered `message.received` has its inbox item deleted.
//!
//! Bounded memory: a received message is queued as its inbox id only; its body is read from
//! the durable inbox when its turn comes (so the backlog costs ids, never bodies, and is
//! bounded by the inbox cap). Other events (small) are capped at [`MAX_PENDING`]. Without a
//! `webhook_url`, stored messages wait in the inbox (for a URL to be set, or for
//! `GET /inbox` + `POST /inbox/ack`) and other events are dropped.
//!
//! Reads the URL and secret from the tenant's view on every attempt (a PATCH takes effect at
//! the next try). Never touches the tenant's connection.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookConfig, sign};
use crate::host::events::TenantEvent;
use crate::host::inbox::InboxIndex;
use crate::host::state::TenantView;
use crate::host::{clock, egress};
use crate::store::{Delta, DeltaBatch, Store, StoreError};
use crate::types::TenantId;

/// Events other than stored messages kept in memory per tenant while its endpoint fails;
/// beyond this, new ones are dropped with a warning. Stored messages are queued by id only and
/// bounded by the inbox cap instead.
pub(crate) const MAX_PENDING: usize = 10_000;

/// One event waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    /// Event id (the inbox id for `message.received`).
    pub(crate) id: String,
    /// Event name (`message.received`, ...).
    pub(crate) event: String,
    /// Event data (`Null` for a stored message until it is read back from the inbox).
    pub(crate) data: serde_json::Value,
    /// The inbox item holding the event (read at delivery, deleted once delivered).
    pub(crate) inbox_id: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    event: &'a str,
    tenant: &'a str,
    data: &'a serde_json::Value,
    id: &'a str,
    timestamp: u64,
}

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// A unique event id: unix ms, a process counter and random bits.
fn event_id(rng: &mut impl rand::Rng) -> String {
    let n = EVENT_SEQ.fetch_add(1, Ordering::Relaxed) % 1_000_000;
    format!("{:013}-{n:06}-{:08x}", clock::unix_ms(), rng.r#gen::<u32>())
}

impl Pending {
    /// Wraps a published event; `None` for an event that cannot be serialised (logged). A
    /// received message becomes a reference to its inbox item (no body kept).
    pub(crate) fn from_event(ev: &TenantEvent, rng: &mut impl rand::Rng) -> Option<Self> {
        if let TenantEvent::MessageReceived { inbox_id, .. } = ev {
            return Some(Self::stored(inbox_id.clone()));
        }
        let v = match serde_json::to_value(ev) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "event not serialisable; dropped");
                return None;
            }
        };
        Self::from_value(v, None, rng)
    }

    /// A stored message, by inbox id (its body is read from the inbox at delivery).
    pub(crate) fn stored(inbox_id: String) -> Self {
        Self {
            id: inbox_id.clone(),
            event: "message.received".to_owned(),
            data: serde_json::Value::Null,
            inbox_id: Some(inbox_id),
        }
    }

    /// Wraps a serialised event (`{"event","data"}`, the inbox payload format).
    pub(crate) fn from_value(
        mut v: serde_json::Value,
        inbox_id: Option<String>,
        rng: &mut impl rand::Rng,
    ) -> Option<Self> {
        let event = v.get("event").and_then(serde_json::Value::as_str)?.to_owned();
        let data = v.get_mut("data").map(serde_json::Value::take).unwrap_or(serde_json::Value::Null);
        let id = inbox_id.clone().unwrap_or_else(|| event_id(rng));
        Some(Self { id, event, data, inbox_id })
    }
}

/// Inputs of one tenant's delivery task.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) tenant: TenantId,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) client: reqwest::Client,
    pub(crate) config: WebhookConfig,
    pub(crate) view: watch::Receiver<TenantView>,
    pub(crate) lane: mpsc::Receiver<Pending>,
    pub(crate) cancel: CancellationToken,
    /// Undelivered stored messages to send first (cold start: the inbox ids), oldest first.
    pub(crate) backlog: Vec<Pending>,
    /// The tenant's inbox index (delivered items are removed from it).
    pub(crate) inbox: Arc<InboxIndex>,
}

/// How one delivery attempt ended.
enum Attempt {
    Delivered,
    Failed(String),
}

/// A queued event made ready to send.
enum Loaded {
    Ready(Pending),
    /// The stored message is gone (acknowledged through the API) or unreadable: skip it.
    Gone,
    /// The store could not be read: retry later.
    Retry(String),
}

/// The queue and lane of one worker, so waits keep taking new events.
struct Queue {
    items: VecDeque<Pending>,
    lane: mpsc::Receiver<Pending>,
    lane_open: bool,
}

impl Queue {
    fn push(&mut self, p: Pending) {
        if p.inbox_id.is_some() {
            // A redelivered inbox item (cold-start backlog) must not be queued twice.
            if self.items.iter().any(|q| q.inbox_id == p.inbox_id) {
                return;
            }
        } else if self.items.iter().filter(|q| q.inbox_id.is_none()).count() >= MAX_PENDING {
            tracing::warn!(max = MAX_PENDING, "webhook backlog full; event dropped");
            return;
        }
        self.items.push_back(p);
    }

    /// The next event from the lane (pending forever once it closed).
    async fn recv(&mut self) {
        if !self.lane_open {
            return std::future::pending().await;
        }
        match self.lane.recv().await {
            Some(p) => self.push(p),
            None => self.lane_open = false,
        }
    }

    /// Takes lane events until `until`. False on shutdown.
    async fn wait_until(&mut self, cancel: &CancellationToken, until: tokio::time::Instant) -> bool {
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                () = self.recv() => {}
            }
        }
    }
}

impl Worker {
    /// Runs until shutdown or until the tenant's actor is gone.
    pub(crate) async fn run(self) {
        let Self { tenant, store, client, config, view, lane, cancel, backlog, inbox } = self;
        let mut rng = rand::rngs::StdRng::from_entropy();
        let mut q = Queue { items: backlog.into(), lane, lane_open: true };
        let mut failures = 0u32;
        let mut view_rx = view.clone();
        // Delivered inbox items whose delete has not been committed yet (no lease yet, or the
        // store failed); retried on every view change and after every delivery.
        let mut acks: Vec<String> = Vec::new();
        loop {
            if view.borrow().webhook_url.is_none() {
                // Nowhere to deliver: stored messages wait in the inbox, other events go.
                q.items.retain(|p| p.inbox_id.is_some());
            }
            let idle = q.items.is_empty() || view.borrow().webhook_url.is_none();
            if idle {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = view_rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        ack_inbox(&store, &tenant, &view, &inbox, &mut acks).await;
                    }
                    () = q.recv() => {}
                }
                continue;
            }
            let Some(queued) = q.items.front().cloned() else { continue };
            let outcome = match load(&store, &tenant, queued, &mut rng).await {
                Loaded::Gone => {
                    q.items.pop_front();
                    continue;
                }
                Loaded::Retry(why) => Attempt::Failed(why),
                Loaded::Ready(head) => {
                    let deliver = deliver(&client, &config, &tenant, &view, &head);
                    tokio::pin!(deliver);
                    let outcome = loop {
                        tokio::select! {
                            biased;
                            () = cancel.cancelled() => return,
                            r = &mut deliver => break r,
                            () = q.recv() => {}
                        }
                    };
                    if matches!(outcome, Attempt::Delivered) {
                        failures = 0;
                        q.items.pop_front();
                        tracing::debug!(event = %head.event, event_id = %head.id, "webhook delivered");
                        if let Some(inbox_id) = &head.inbox_id {
                            acks.push(inbox_id.clone());
                        }
                        ack_inbox(&store, &tenant, &view, &inbox, &mut acks).await;
                        continue;
                    }
                    outcome
                }
            };
            let Attempt::Failed(why) = outcome else { continue };
            if view.has_changed().is_err() {
                // The tenant was deleted: nobody will ever want these events.
                return;
            }
            failures = failures.saturating_add(1);
            let wait = retry_delay(&config, failures, rng.r#gen());
            tracing::warn!(attempt = failures, retry_in_ms = clock::ms(wait), error = %why, "webhook delivery failed; retrying");
            if !q.wait_until(&cancel, tokio::time::Instant::now() + wait).await {
                return;
            }
        }
    }
}

/// Reads a stored message's body back from the inbox (other events are ready as they are).
async fn load(store: &Arc<dyn Store>, tenant: &TenantId, p: Pending, rng: &mut impl rand::Rng) -> Loaded {
    let Some(inbox_id) = p.inbox_id.clone() else { return Loaded::Ready(p) };
    if !p.data.is_null() {
        return Loaded::Ready(p);
    }
    match store.get_inbox(tenant, &inbox_id).await {
        Ok(None) => Loaded::Gone,
        Ok(Some(item)) => {
            let parsed = serde_json::from_slice::<serde_json::Value>(item.payload.expose())
                .ok()
                .and_then(|v| Pending::from_value(v, Some(inbox_id.clone()), rng));
            match parsed {
                Some(p) => Loaded::Ready(p),
                None => {
                    tracing::warn!(inbox_id = %inbox_id, "inbox item unreadable; skipped (it stays in the store)");
                    Loaded::Gone
                }
            }
        }
        Err(e @ StoreError::Corrupt { .. }) => {
            tracing::warn!(inbox_id = %inbox_id, error = %e, "inbox item corrupt; skipped (it stays in the store)");
            Loaded::Gone
        }
        Err(e) => Loaded::Retry(format!("inbox read failed: {e}")),
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, base·2^(attempt-1))]`, at
/// least a millisecond.
pub(crate) fn retry_delay(config: &WebhookConfig, attempt: u32, jitter: f64) -> Duration {
    let exp = config.retry_base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(config.retry_max).mul_f64(jitter.clamp(0.0, 1.0)).max(Duration::from_millis(1))
}

/// The signed request bytes of one event: `(body, signature header value or None)`.
pub(crate) fn render(
    tenant: &TenantId,
    p: &Pending,
    secret: Option<&[u8]>,
    now_secs: u64,
) -> (Vec<u8>, Option<String>) {
    let body =
        Body { event: &p.event, tenant: tenant.as_str(), data: &p.data, id: &p.id, timestamp: now_secs };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let sig = secret.map(|s| sign(s, now_secs, &bytes));
    (bytes, sig)
}

async fn deliver(
    client: &reqwest::Client,
    config: &WebhookConfig,
    tenant: &TenantId,
    view: &watch::Receiver<TenantView>,
    p: &Pending,
) -> Attempt {
    let (url, secret) = {
        let v = view.borrow();
        (v.webhook_url.clone(), v.webhook_secret.clone())
    };
    let Some(url) = url else { return Attempt::Failed("no webhook_url".to_owned()) };
    // Re-checked at every attempt: an IP literal never reaches the client's filtering resolver.
    if let Err(e) = egress::check_url(&url, config.egress) {
        return Attempt::Failed(format!("webhook_url refused: {e}"));
    }
    let now = clock::unix_secs();
    let (body, sig) = render(tenant, p, secret.as_ref().map(|s| s.expose()), now);
    let mut req = client
        .post(url.as_str())
        .timeout(config.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(EVENT_ID_HEADER, p.id.as_str());
    if let Some(sig) = sig {
        req = req.header(SIGNATURE_HEADER, sig);
    }
    match req.body(body).send().await {
        Ok(resp) if resp.status().is_success() => Attempt::Delivered,
        Ok(resp) => Attempt::Failed(format!("endpoint answered {}", resp.status().as_u16())),
        // Without the URL: reqwest's Display prints it, query tokens included.
        Err(e) => Attempt::Failed(format!("request failed: {}", egress::scrub(e))),
    }
}

/// Deletes delivered inbox items (one batch, fenced by the tenant's lease). Without the lease,
/// or if the store fails, they stay pending here (and in the store: a restart meanwhile
/// redelivers them — at least once; the event id lets the receiver deduplicate).
async fn ack_inbox(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    view: &watch::Receiver<TenantView>,
    inbox: &InboxIndex,
    acks: &mut Vec<String>,
) {
    if acks.is_empty() {
        return;
    }
    let Some(fence) = view.borrow().fence() else { return };
    let mut batch = DeltaBatch::new();
    for id in acks.iter() {
        batch.push(Delta::InboxDelete(id.clone()));
    }
    match store.commit(tenant, fence, &batch).await {
        Ok(()) => {
            inbox.remove(acks.iter().map(String::as_str));
            acks.clear();
        }
        Err(e) => {
            tracing::warn!(error = %e, pending = acks.len(), "inbox delete after delivery failed; retried later");
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;
    use crate::host::webhook::verify;

    /// Retry delays grow exponentially from the base, never exceed the cap, and are jittered.
    #[test]
    fn retry_delay_grows_and_caps() {
        let c = WebhookConfig {
            timeout: Duration::from_secs(1),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            egress: egress::EgressPolicy::default(),
        };
        assert_eq!(retry_delay(&c, 1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(&c, 4, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(&c, 40, 1.0), Duration::from_secs(60));
        assert_eq!(retry_delay(&c, 4, 0.5), Duration::from_secs(4));
        assert_eq!(retry_delay(&c, 4, 0.0), Duration::from_millis(1));
    }

    /// The body carries event, tenant, data, id and timestamp; the signature covers exactly
    /// those bytes; an inbox event keeps its inbox id as the event id.
    #[test]
    fn rendered_body_is_signed() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let v = serde_json::json!({"event": "message.received", "data": {"inbox_id": "i1", "message": {}}});
        let p = Pending::from_value(v, Some("i1".into()), &mut rng).unwrap();
        let t = TenantId::new("acme").unwrap();
        let (body, sig) = render(&t, &p, Some(b"whsec_x"), 1_700_000_000);
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["event"], "message.received");
        assert_eq!((j["tenant"].as_str(), j["id"].as_str()), (Some("acme"), Some("i1")));
        assert_eq!(j["timestamp"], 1_700_000_000u64);
        assert_eq!(j["data"]["inbox_id"], "i1");
        let sig = sig.unwrap();
        assert!(sig.starts_with("t=1700000000,v1="), "{sig}");
        assert!(verify(b"whsec_x", &body, &sig));
        let (_, none) = render(&t, &p, None, 1);
        assert!(none.is_none());
        assert!(Pending::from_value(serde_json::json!({"data": 1}), None, &mut rng).is_none());
    }
}
