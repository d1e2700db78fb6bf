//! The persisted, paced outbox of each tenant: `POST /messages` lands here, the item is
//! committed to the store (fenced by the tenant's lease) before the caller hears its id, and a
//! per-tenant task hands queued items to the tenant actor (`TenantCommand::SendText`) at the pace
//! [`pacing`] allows — never inside the protocol loop, always with the id assigned at enqueue,
//! so a retry after a failure or a restart never puts a second id on the wire.
//!
//! Status per message (queued → sent → delivered → read, or failed) stays in the item's payload;
//! settled items are kept, at most [`SETTLED_KEPT`] per tenant, so `GET /messages/{id}` survives
//! restarts. Transient failures (not connected, lease moving, store errors) are retried with
//! backoff; an invalid recipient fails the message for good.
//!
//! Owns no connection state and never talks to the socket itself.

pub mod pacing;
mod record;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use record::{Entry, Record};
pub use record::{MessageView, SendStatus};

use self::pacing::{Pacer, Pacing};
use super::clock;
use super::events::{EventSink, TenantEvent};
use super::inbox::Limits;
use super::policy;
use super::state::{CommandError, TenantCommand, TenantState, TenantView};
use crate::store::{Delta, DeltaBatch, OutboxItem, Store};
use crate::types::{FencingToken, TenantId};
use crate::wa::client::{MessageStatus, StatusUpdate};

/// Most messages a tenant may have queued (not yet sent) at once, unless configured
/// otherwise (`STAYLINKED_OUTBOX_MAX_MESSAGES`, see [`Limits`]).
pub const MAX_QUEUED: usize = 10_000;
/// Settled (sent, delivered, read, failed) messages kept per tenant for status reads.
pub const SETTLED_KEPT: usize = 256;
/// Longest text accepted (bytes; WhatsApp's own limit is about 65 000 characters).
pub const MAX_TEXT_BYTES: usize = 65_536;
/// How long one hand-off to the tenant actor may take before it counts as failed (retried
/// with the same id).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// First retry delay after a transient failure (doubles per attempt, full jitter, capped at a
/// minute by `host::policy::backoff`). The seed notes ask for 200 ms → 500 ms → 1 s.
pub const RETRY_BASE: Duration = Duration::from_millis(200);
/// API requests queued per tenant before senders wait.
const REQUEST_QUEUE: usize = 64;
/// Status updates buffered per tenant (statuses beyond it are dropped with a warning; the
/// webhook still carries them).
const STATUS_QUEUE: usize = 1024;

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The tenant has no linked device (caller: link it first).
    #[error("tenant is not linked")]
    NotLinked,
    /// Another process holds the tenant's lease (caller: send the request there).
    #[error("tenant lease is held by {holder}")]
    LeaseHeld {
        /// The holder.
        holder: String,
    },
    /// The tenant holds no lease yet (starting up or between attempts; caller: retry).
    #[error("tenant is not ready to queue messages")]
    NotReady,
    /// The tenant's cap of queued messages is reached (caller: slow down).
    #[error("outbox is full ({max} queued messages)")]
    Full {
        /// The limit.
        max: usize,
    },
    /// The queued texts would exceed the tenant's byte cap (caller: slow down).
    #[error("outbox is full ({max_bytes} bytes of queued texts)")]
    FullBytes {
        /// The limit.
        max_bytes: u64,
    },
    /// The store refused the write; nothing was queued (caller: retry).
    #[error("store failed: {0}")]
    Store(String),
    /// The tenant's outbox stopped (deleted or shutting down).
    #[error("outbox is closed")]
    Closed,
}

enum Request {
    Enqueue { to: String, text: String, reply: oneshot::Sender<Result<MessageView, OutboxError>> },
    Get { id: String, reply: oneshot::Sender<Option<MessageView>> },
}

/// Handle on a tenant's outbox task (cheap to clone; held in the tenant's registry handle).
#[derive(Debug, Clone)]
pub struct OutboxHandle {
    requests: mpsc::Sender<Request>,
    statuses: mpsc::Sender<StatusUpdate>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Enqueue { .. } => f.write_str("Enqueue"),
            Self::Get { id, .. } => write!(f, "Get({id})"),
        }
    }
}

impl OutboxHandle {
    /// Queues a text for `to`; answers once the item is durable, with its id.
    ///
    /// # Errors
    /// [`OutboxError`]; nothing is queued on error.
    pub async fn enqueue(&self, to: String, text: String) -> Result<MessageView, OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(Request::Enqueue { to, text, reply }).await.map_err(|_| OutboxError::Closed)?;
        rx.await.map_err(|_| OutboxError::Closed)?
    }

    /// The status of message `id` (queued, or settled and still kept).
    ///
    /// # Errors
    /// [`OutboxError::Closed`] when the task is gone.
    pub async fn get(&self, id: String) -> Result<Option<MessageView>, OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(Request::Get { id, reply }).await.map_err(|_| OutboxError::Closed)?;
        rx.await.map_err(|_| OutboxError::Closed)
    }

    /// Passes a status reported by the connection on; never blocks (a full buffer drops it
    /// with a warning).
    pub fn status(&self, update: StatusUpdate) {
        if let Err(e) = self.statuses.try_send(update) {
            tracing::warn!(error = %e, "outbox status buffer full or closed; status dropped");
        }
    }
}

/// What a tenant's outbox starts from.
#[derive(Debug)]
pub struct OutboxStart {
    /// The tenant.
    pub tenant: TenantId,
    /// Items hydrated with the tenant (`TenantSnapshot.outbox`).
    pub items: Vec<OutboxItem>,
    /// Host pacing defaults.
    pub pacing: Pacing,
    /// Per-tenant caps (the outbox ones apply here).
    pub limits: Limits,
    /// The tenant actor's command channel.
    pub commands: mpsc::Sender<TenantCommand>,
    /// The tenant actor's view (connection state, lease epoch, overrides). The task ends when
    /// the actor is gone.
    pub view: watch::Receiver<TenantView>,
    /// Cancelled at shutdown.
    pub cancel: CancellationToken,
    /// Where the outbox reports its own verdicts (a message failed before reaching the wire),
    /// as `message.status` events.
    pub events: Arc<dyn EventSink>,
}

/// Creates the outbox of one tenant: the handle and the task to spawn (on the host tracker).
pub fn start(store: Arc<dyn Store>, s: OutboxStart) -> (OutboxHandle, impl Future<Output = ()> + Send) {
    let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
    let (st_tx, st_rx) = mpsc::channel(STATUS_QUEUE);
    let mut task = Task::new(store, s, req_rx, st_rx);
    (OutboxHandle { requests: req_tx, statuses: st_tx }, async move { task.run().await })
}

type SendFuture = Pin<Box<dyn Future<Output = (String, Result<(), CommandError>)> + Send>>;

struct Task {
    store: Arc<dyn Store>,
    tenant: TenantId,
    events: Arc<dyn EventSink>,
    defaults: Pacing,
    limits: Limits,
    commands: mpsc::Sender<TenantCommand>,
    view: watch::Receiver<TenantView>,
    cancel: CancellationToken,
    requests: mpsc::Receiver<Request>,
    statuses: mpsc::Receiver<StatusUpdate>,
    entries: BTreeMap<String, Entry>,
    pacer: Pacer,
    /// Epoch whose store content `entries` reflects.
    loaded_epoch: Option<u64>,
    /// Which login the relayed flags belong to (`last_connected_at`, `reconnects`).
    login_mark: (Option<String>, u64),
    /// Entries changed in memory but not yet committed (no lease, or the commit failed).
    dirty: BTreeMap<String, ()>,
    /// No hand-off before this (backoff after a transient failure).
    not_before: Option<tokio::time::Instant>,
    in_flight: Option<SendFuture>,
    seq: u64,
    rng: rand::rngs::StdRng,
}

impl Task {
    fn new(
        store: Arc<dyn Store>,
        s: OutboxStart,
        requests: mpsc::Receiver<Request>,
        statuses: mpsc::Receiver<StatusUpdate>,
    ) -> Self {
        let mut t = Self {
            store,
            tenant: s.tenant,
            events: s.events,
            defaults: s.pacing,
            limits: s.limits,
            commands: s.commands,
            view: s.view,
            cancel: s.cancel,
            requests,
            statuses,
            entries: BTreeMap::new(),
            pacer: Pacer::new(s.pacing),
            loaded_epoch: None,
            login_mark: (None, 0),
            dirty: BTreeMap::new(),
            not_before: None,
            in_flight: None,
            seq: 0,
            rng: rand::rngs::StdRng::from_entropy(),
        };
        t.load(&s.items);
        t
    }

    /// Replaces the in-memory entries with `items` (the store's truth).
    fn load(&mut self, items: &[OutboxItem]) {
        self.entries.clear();
        for item in items {
            match Entry::from_item(item) {
                Ok(e) => {
                    self.seq = self.seq.max(e.record.seq.saturating_add(1));
                    self.entries.insert(e.id.clone(), e);
                }
                Err(e) => tracing::warn!(msg_id = %item.id, error = %e, "outbox item unreadable; skipped"),
            }
        }
        let queued = self.entries.values().filter(|e| e.record.status == SendStatus::Queued).count();
        if queued > 0 {
            tracing::info!(queued, "outbox loaded");
        }
    }

    fn fence(&self) -> Option<FencingToken> {
        self.view.borrow().fence()
    }

    async fn run(&mut self) {
        self.on_view();
        loop {
            let due = self.due();
            tokio::select! {
                () = self.cancel.cancelled() => break,
                changed = self.view.changed() => {
                    if changed.is_err() {
                        // The actor is gone (tenant deleted).
                        return;
                    }
                    self.on_view();
                    if self.loaded_epoch_stale() {
                        self.reload().await;
                    }
                    self.flush().await;
                }
                req = self.requests.recv() => match req {
                    Some(r) => self.on_request(r).await,
                    None => break,
                },
                Some(st) = self.statuses.recv() => self.on_status(st).await,
                () = sleep_until_opt(due), if due.is_some() => self.start_send(),
                (id, r) = poll_in_flight(&mut self.in_flight), if self.in_flight.is_some() => {
                    self.in_flight = None;
                    self.on_sent(id, r).await;
                }
            }
        }
        self.flush().await;
    }

    /// The pacing-relevant parts of the view: connected or not, overrides.
    fn on_view(&mut self) {
        let (state, pacing, mark) = {
            let v = self.view.borrow();
            (v.state, v.pacing, (v.last_connected_at.clone(), v.reconnects))
        };
        if mark != self.login_mark {
            // A new login: whatever the previous connection did not get acked goes again.
            self.login_mark = mark;
            for e in self.entries.values_mut() {
                e.relayed = false;
            }
        }
        let rules = match pacing {
            Some(o) => self.defaults.with_override(&o).unwrap_or(self.defaults),
            None => self.defaults,
        };
        if rules != self.pacer.rules() {
            self.pacer.set_rules(rules);
        }
        if state == TenantState::Connected {
            self.pacer.connected(clock::now());
        } else {
            self.pacer.disconnected();
            // The connection that carried them is gone: unacked messages go again.
            for e in self.entries.values_mut() {
                e.relayed = false;
            }
        }
    }

    fn loaded_epoch_stale(&self) -> bool {
        let epoch = self.view.borrow().lease_epoch;
        epoch.is_some() && epoch != self.loaded_epoch
    }

    /// A new lease: another process may have changed the outbox meanwhile; read it back.
    async fn reload(&mut self) {
        let epoch = self.view.borrow().lease_epoch;
        match self.store.list_outbox(&self.tenant).await {
            Ok(items) => {
                let pending: Vec<Entry> =
                    self.dirty.keys().filter_map(|id| self.entries.get(id).cloned()).collect();
                self.load(&items);
                for p in pending {
                    // Keep a status learned while the lease was moving, if it is newer.
                    if let Some(e) = self.entries.get_mut(&p.id)
                        && p.record.status > e.record.status
                    {
                        e.record = p.record;
                    } else {
                        self.dirty.remove(&p.id);
                    }
                }
                self.loaded_epoch = epoch;
            }
            Err(e) => tracing::warn!(error = %e, "outbox reload failed; using the hydrated copy"),
        }
    }

    /// When the next hand-off is due (None: nothing to send, disconnected or one in flight).
    fn due(&self) -> Option<tokio::time::Instant> {
        if self.in_flight.is_some() || self.next_queued().is_none() {
            return None;
        }
        let now = clock::now();
        let at = tokio::time::Instant::from_std(self.pacer.next_send_at(now)?);
        Some(self.not_before.map_or(at, |nb| at.max(nb)))
    }

    fn next_queued(&self) -> Option<&Entry> {
        self.entries
            .values()
            .filter(|e| e.record.status == SendStatus::Queued && !e.relayed)
            .min_by_key(|e| e.order())
    }

    fn start_send(&mut self) {
        let Some(e) = self.next_queued() else { return };
        let (id, to, text) = (e.id.clone(), e.record.to.clone(), e.record.text.clone());
        let commands = self.commands.clone();
        let typing = self.pacer.rules().typing.then(|| typing_time(&text));
        tracing::debug!(msg_id = %id, "outbox hand-off");
        self.in_flight = Some(Box::pin(async move {
            if let Some(pause) = typing {
                // Best effort: a refused indicator never holds the message back.
                let (reply, rx) = oneshot::channel();
                let cmd = TenantCommand::Typing { to: to.clone(), composing: true, reply };
                if commands.send(cmd).await.is_ok() && matches!(rx.await, Ok(Ok(()))) {
                    tokio::time::sleep(pause).await;
                }
            }
            let (reply, rx) = oneshot::channel();
            let cmd = TenantCommand::SendText { id: id.clone(), to, text, reply };
            let r = tokio::time::timeout(SEND_TIMEOUT, async {
                commands.send(cmd).await.map_err(|_| CommandError::ShuttingDown)?;
                rx.await.unwrap_or(Err(CommandError::ShuttingDown))
            })
            .await
            .unwrap_or(Err(CommandError::NotConnected));
            (id, r)
        }));
    }

    async fn on_sent(&mut self, id: String, r: Result<(), CommandError>) {
        let now = clock::now();
        let Some(e) = self.entries.get_mut(&id) else { return };
        e.record.attempts = e.record.attempts.saturating_add(1);
        match r {
            Ok(()) => {
                // Handed to the socket, not yet on the server: it stays queued (and is sent again
                // with the same id after a reconnect or a restart) until the server's ack turns
                // it `sent` (found by the SIGKILL crash-point test: a kill right after the
                // hand-off lost the message).
                self.pacer.record_send(now, self.rng.r#gen());
                self.not_before = None;
                e.relayed = true;
                tracing::debug!(msg_id = %id, "outbox relayed; waiting for the server ack");
                return;
            }
            Err(CommandError::InvalidRecipient(reason)) => {
                // Never reached the wire: no pacing slot used.
                let why = format!("invalid recipient: {reason}");
                e.set(SendStatus::Failed, Some(why.clone()));
                let update = StatusUpdate {
                    id: id.clone(),
                    chat: e.record.to.clone(),
                    from: None,
                    status: MessageStatus::Failed(why),
                };
                self.events.publish(&self.tenant, TenantEvent::MessageStatus(update));
                tracing::info!(msg_id = %id, "outbox message failed: invalid recipient");
            }
            Err(err) => {
                let wait = policy::backoff(RETRY_BASE, e.record.attempts, self.rng.r#gen());
                self.not_before = Some(tokio::time::Instant::now() + wait);
                tracing::warn!(msg_id = %id, error = %err, attempt = e.record.attempts, retry_in_ms = clock::ms(wait), "outbox send failed; retrying");
                // Attempts are informational: not worth a write per retry.
                return;
            }
        }
        self.mark(&id);
        self.flush().await;
    }

    async fn on_status(&mut self, st: StatusUpdate) {
        let Some(e) = self.entries.get_mut(&st.id) else { return };
        if e.apply(&st.status) {
            self.mark(&st.id);
            self.flush().await;
        }
    }

    async fn on_request(&mut self, r: Request) {
        match r {
            Request::Get { id, reply } => {
                let _ = reply.send(self.entries.get(&id).map(Entry::view));
            }
            Request::Enqueue { to, text, reply } => {
                let r = self.enqueue(to, text).await;
                let _ = reply.send(r);
            }
        }
    }

    async fn enqueue(&mut self, to: String, text: String) -> Result<MessageView, OutboxError> {
        let (me, state, holder) = {
            let v = self.view.borrow();
            (v.me.clone(), v.state, v.lease_holder.clone())
        };
        if state == TenantState::HeldElsewhere {
            return Err(OutboxError::LeaseHeld { holder: holder.unwrap_or_default() });
        }
        if me.is_none() {
            return Err(OutboxError::NotLinked);
        }
        let Some(fence) = self.fence() else { return Err(OutboxError::NotReady) };
        if self.loaded_epoch_stale() {
            self.reload().await;
        }
        // Caps before the commit: nothing is written for a refused message.
        let (queued, queued_bytes) = self
            .entries
            .values()
            .filter(|e| e.record.status == SendStatus::Queued)
            .fold((0u64, 0u64), |(n, b), e| (n + 1, b.saturating_add(e.record.text.len() as u64)));
        if queued >= self.limits.outbox_max_messages {
            return Err(OutboxError::Full {
                max: usize::try_from(self.limits.outbox_max_messages).unwrap_or(usize::MAX),
            });
        }
        if queued_bytes.saturating_add(text.len() as u64) > self.limits.outbox_max_bytes {
            return Err(OutboxError::FullBytes { max_bytes: self.limits.outbox_max_bytes });
        }
        let own_user = me.as_deref().and_then(|j| j.split(['@', ':']).next());
        let id = crate::wa::message::new_message_id(clock::unix_secs(), own_user, &mut rand::rngs::OsRng);
        let now = clock::unix_ms();
        let entry = Entry {
            id: id.clone(),
            created_at: now,
            record: Record {
                to,
                text,
                seq: self.seq,
                status: SendStatus::Queued,
                reason: None,
                attempts: 0,
                updated_at: now,
            },
            relayed: false,
        };
        let item = entry.to_item().map_err(|e| OutboxError::Store(e.to_string()))?;
        let batch = DeltaBatch::new().with(Delta::OutboxPut(item));
        self.store.commit(&self.tenant, fence, &batch).await.map_err(|e| {
            tracing::warn!(error = %e, "outbox enqueue commit failed");
            if e.is_fenced() { OutboxError::NotReady } else { OutboxError::Store(e.to_string()) }
        })?;
        self.seq = self.seq.saturating_add(1);
        let view = entry.view();
        self.entries.insert(id.clone(), entry);
        tracing::debug!(msg_id = %id, "outbox queued");
        Ok(view)
    }

    fn mark(&mut self, id: &str) {
        self.dirty.insert(id.to_owned(), ());
    }

    /// Commits every changed entry (and evicts the oldest settled ones beyond [`SETTLED_KEPT`])
    /// in one batch. Without a lease, or when the store fails, the changes stay pending.
    async fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let Some(fence) = self.fence() else { return };
        let mut batch = DeltaBatch::new();
        for id in self.dirty.keys() {
            if let Some(e) = self.entries.get(id) {
                match e.to_item() {
                    Ok(item) => batch.push(Delta::OutboxPut(item)),
                    Err(err) => tracing::error!(msg_id = %id, error = %err, "outbox item not serialisable"),
                }
            }
        }
        let mut settled: Vec<(u64, String)> = self
            .entries
            .values()
            .filter(|e| e.record.status != SendStatus::Queued)
            .map(|e| (e.record.updated_at, e.id.clone()))
            .collect();
        let mut evicted = Vec::new();
        if settled.len() > SETTLED_KEPT {
            settled.sort();
            let extra = settled.len() - SETTLED_KEPT;
            for (_, id) in settled.into_iter().take(extra) {
                batch.push(Delta::OutboxDelete(id.clone()));
                evicted.push(id);
            }
        }
        match self.store.commit(&self.tenant, fence, &batch).await {
            Ok(()) => {
                self.dirty.clear();
                for id in evicted {
                    self.entries.remove(&id);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, pending = self.dirty.len(), "outbox status commit failed; kept pending")
            }
        }
    }
}

/// How long "typing…" shows before a message: about a fast typist's pace, 0.5 s to 3 s.
pub fn typing_time(text: &str) -> Duration {
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    (Duration::from_millis(300) + Duration::from_millis(25).saturating_mul(chars))
        .clamp(Duration::from_millis(500), Duration::from_secs(3))
}

async fn poll_in_flight(f: &mut Option<SendFuture>) -> (String, Result<(), CommandError>) {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
