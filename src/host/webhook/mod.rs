//! Signed webhooks: the [`Dispatcher`] is the host's [`EventSink`]. Each tenant has its own
//! ordered lane and delivery task ([`worker`]), so events reach the tenant's `webhook_url` in
//! the order they were published, at least once, retried with exponential backoff and full
//! jitter; a failing endpoint only delays its own tenant's webhooks, never message processing
//! (publishing never blocks) or other tenants.
//!
//! Body: `{"event","tenant","data","id","timestamp"}` (JSON). Headers: [`SIGNATURE_HEADER`]
//! `t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>." + raw body)>`, [`TIMESTAMP_HEADER`] (the
//! same unix seconds, also the body's `timestamp`) and [`EVENT_ID_HEADER`] (the body's `id`,
//! stable across redeliveries of one inbox item, for deduplication). Destinations follow
//! `host::egress` (https to public addresses unless private ones are allowed).
//!
//! Also routes `message.status` to the tenant's outbox. No protocol logic, no store writes
//! except deleting delivered inbox items.

mod sign;
pub(crate) mod worker;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

pub use sign::{DEFAULT_TOLERANCE_SECS, SIGNATURE_SCHEME, new_secret, sign, verify, verify_fresh};

use super::events::{EventSink, TenantEvent};
use super::outbox::OutboxHandle;
use crate::types::TenantId;

/// Header carrying `t=<unix>,v1=<hex>`: the HMAC of `"<unix>." + raw body` under the tenant's
/// secret.
pub const SIGNATURE_HEADER: &str = "X-Staylinked-Signature";
/// Header carrying the delivery's unix timestamp (seconds; the same as the body's).
pub const TIMESTAMP_HEADER: &str = "X-Staylinked-Timestamp";
/// Header carrying the event id (the same as the body's `id`).
pub const EVENT_ID_HEADER: &str = "X-Staylinked-Event-Id";
/// Events buffered per tenant between publishing and the delivery task.
const LANE_QUEUE: usize = 4096;

/// Webhook delivery settings (env `STAYLINKED_WEBHOOK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay (doubles per attempt, full jitter).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Which destinations webhook URLs may point at (`STAYLINKED_WEBHOOK_ALLOW_PRIVATE`).
    pub egress: super::egress::EgressPolicy,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            egress: super::egress::EgressPolicy::default(),
        }
    }
}

#[derive(Debug, Clone)]
struct Lane {
    events: mpsc::Sender<worker::Pending>,
    outbox: Option<OutboxHandle>,
}

/// The host's event sink: per-tenant ordered webhook lanes plus status routing to outboxes.
#[derive(Debug)]
pub struct Dispatcher {
    lanes: Mutex<HashMap<TenantId, Lane>>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher {
    /// A dispatcher with no tenants attached.
    pub fn new() -> Self {
        Self { lanes: Mutex::new(HashMap::new()) }
    }

    /// Attaches a tenant: its events go to `events` (the delivery task's receiver side), its
    /// message statuses also to `outbox`. Replaces an earlier lane of the same tenant.
    pub(crate) fn attach(
        &self,
        tenant: TenantId,
        outbox: Option<OutboxHandle>,
    ) -> mpsc::Receiver<worker::Pending> {
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        if let Ok(mut lanes) = self.lanes.lock() {
            lanes.insert(tenant, Lane { events: tx, outbox });
        }
        rx
    }

    /// Detaches a tenant whose lane is closed (its delivery task ended).
    pub fn detach_closed(&self, tenant: &TenantId) {
        if let Ok(mut lanes) = self.lanes.lock()
            && lanes.get(tenant).is_some_and(|l| l.events.is_closed())
        {
            lanes.remove(tenant);
        }
    }
}

impl EventSink for Dispatcher {
    fn publish(&self, tenant: &TenantId, event: TenantEvent) {
        let lane = self.lanes.lock().ok().and_then(|l| l.get(tenant).cloned());
        let Some(lane) = lane else {
            tracing::debug!(tenant_id = %tenant, "event for a tenant without a lane; dropped");
            return;
        };
        if let (TenantEvent::MessageStatus(st), Some(outbox)) = (&event, &lane.outbox) {
            outbox.status(st.clone());
        }
        // A received message travels as its inbox id only (its body is read back from the
        // inbox at delivery), so a full lane never holds message bodies.
        let Some(pending) = worker::Pending::from_event(&event, &mut rand::thread_rng()) else { return };
        if let Err(e) = lane.events.try_send(pending) {
            // Only a stuck endpoint fills the lane; received messages stay in the inbox and are
            // redelivered at the next cold start.
            tracing::warn!(tenant_id = %tenant, error = %e, "webhook lane full or closed; event dropped");
        }
    }
}
