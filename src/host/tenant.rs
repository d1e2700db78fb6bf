//! One actor task per tenant (STYLE §4): owns the tenant's `wa::Client`, its socket (see
//! `host::connection`) and its lease; takes [`TenantCommand`]s on a bounded `mpsc`, publishes a
//! [`TenantView`] on a `watch`, and writes the status doc + a bounded event history on every
//! lifecycle change.
//!
//! Nothing else mutates a tenant: the API and the supervisor only send commands and read the
//! view. Never pairs a tenant that has creds; never connects without the lease.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::Ctx;
use super::clock;
use super::connection::ConnEnd;
use super::events::TenantEvent;
use super::lease::{self, Acquired, LeaseGuard};
use super::persist;
use super::policy::{self, Action, History};
use super::state::{CommandError, DisconnectView, LinkMethod, TenantCommand, TenantState, TenantView};
use crate::store::model::{LastDisconnect, PresenceType, StoredEvent, TenantSnapshot, TenantStatus};
use crate::store::{ConfigPatch, KeyRef, SecretBytes};
use crate::types::TenantId;
use crate::wa::client::{self as wa, DisconnectReason};

/// Commands queued per tenant before senders wait (backpressure, never a drop).
pub const COMMAND_QUEUE: usize = 8;

/// The supervisor's handle on one tenant actor.
#[derive(Debug, Clone)]
pub struct TenantHandle {
    /// Command sender.
    pub commands: mpsc::Sender<TenantCommand>,
    /// Latest view.
    pub view: watch::Receiver<TenantView>,
    /// Cancels this tenant (shutdown).
    pub cancel: CancellationToken,
    /// The tenant's paced outbox.
    pub outbox: super::outbox::OutboxHandle,
    /// The tenant's inbox index (ids and sizes of undelivered items; the inbox cap).
    pub inbox: Arc<super::inbox::InboxIndex>,
}

/// What a tenant starts from.
#[derive(Debug)]
pub enum Initial {
    /// Hydrated from the store.
    Hydrated(Box<TenantSnapshot>),
    /// Hydration failed: the tenant is `error` with this reason and never re-paired.
    Failed(String),
    /// Created through the API just now.
    Created {
        /// The status doc just written (carries the webhook URL from the create request).
        status: TenantStatus,
    },
}

/// Starts the actor for `id` on the host's task tracker. `start_delay` staggers the first
/// connection (cold start).
pub(crate) fn spawn(ctx: &Arc<Ctx>, id: TenantId, initial: Initial, start_delay: Duration) -> TenantHandle {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let cancel = ctx.root.child_token();
    let mut view = TenantView::new(id.clone(), TenantState::Unlinked);
    let mut status = TenantStatus::default();
    let mut creds = None;
    let mut fail = None;
    let mut keys = wa::KeyCache::new();
    let mut side = super::sidecar::SideStart::default();
    let inbox = Arc::new(super::inbox::InboxIndex::new(&ctx.config.limits));
    match initial {
        Initial::Hydrated(snap) => {
            keys = hydrate_keys(&id, &snap.keys);
            side.outbox = snap.outbox.values().cloned().collect();
            side.backlog = super::sidecar::backlog(&snap.inbox);
            inbox.reset(&snap.inbox);
            if let Some(s) = snap.status {
                status = s;
            }
            match snap.creds.as_ref().map(persist::creds_from_store).transpose() {
                Ok(c) => creds = c.filter(wa::Creds::is_paired),
                Err(e) => fail = Some(format!("stored creds are unusable: {e}")),
            }
        }
        Initial::Failed(reason) => fail = Some(reason),
        Initial::Created { status: s } => status = s,
    }
    view.webhook_url.clone_from(&status.webhook_url);
    view.webhook_secret.clone_from(&status.webhook_secret);
    view.pacing = status.pacing.as_deref().copied();
    view.push_name.clone_from(&status.push_name);
    view.presence = status.presence.unwrap_or(PresenceType::Unavailable);
    view.me = creds.as_ref().and_then(|c: &wa::Creds| c.me.as_ref().map(|m| m.jid.clone()));
    view.reconnects = status.reconnects;
    view.devices_registered = status.devices_registered.clone();
    view.last_connected_at = status.last_connected_at.map(clock::rfc3339);
    view.last_disconnect = status.last_disconnect.as_ref().map(|d| DisconnectView {
        code: u16::try_from(d.code).unwrap_or(0),
        reason: d.reason.clone(),
        at: clock::rfc3339(d.at),
    });
    // A banned account is not retried on every restart: it waits for an operator.
    let banned = status.state == crate::store::model::LinkState::Banned;
    view.state = match (&fail, &creds) {
        (Some(_), _) => TenantState::Error,
        (None, Some(_)) if banned => TenantState::Banned,
        (None, Some(_)) => TenantState::Connecting,
        (None, None) => match status.state {
            crate::store::model::LinkState::LoggedOut => TenantState::LoggedOut,
            crate::store::model::LinkState::Banned => TenantState::Banned,
            _ => TenantState::Unlinked,
        },
    };
    view.error.clone_from(&fail);
    let failed = fail.is_some() || (banned && creds.is_some());
    let (view_tx, view_rx) = watch::channel(view);
    let outbox = super::sidecar::spawn(ctx, &id, side, &inbox, &tx, &view_rx, &cancel);
    let actor = Actor {
        ctx: Arc::clone(ctx),
        id: id.clone(),
        creds,
        failed,
        link: None,
        status,
        view: view_tx,
        commands: rx,
        cancel: cancel.clone(),
        history: History::default(),
        logged_in_before: false,
        delete_requested: false,
        deleted: false,
        logout_requested: false,
        outdated_retried: false,
        conn_seq: 0,
        keys,
        inbox_seq: 0,
        pending_sends: HashMap::new(),
        received_inbox: VecDeque::new(),
        inbox: Arc::clone(&inbox),
        inbox_full_reported: false,
    };
    let span = tracing::info_span!("tenant", tenant_id = %id);
    ctx.spawn(actor.run(start_delay).instrument(span));
    TenantHandle { commands: tx, view: view_rx, cancel, outbox, inbox }
}

/// How a session under one lease ended.
enum SessionEnd {
    /// Shutdown: leave.
    Shutdown,
    /// The lease is gone: another holder took over.
    LeaseLost,
    /// Nothing to do until a command arrives (logged out, banned, error, link abandoned).
    Idle,
}

/// The actor's state. Fields are `pub(super)` for `host::connection`, which runs one
/// connection on the actor's behalf.
pub(super) struct Actor {
    pub(super) ctx: Arc<Ctx>,
    pub(super) id: TenantId,
    /// Paired creds (from the store or from pairing). `None`: unlinked.
    pub(super) creds: Option<wa::Creds>,
    pub(super) failed: bool,
    /// A link request being served.
    pub(super) link: Option<LinkMethod>,
    pub(super) status: TenantStatus,
    pub(super) view: watch::Sender<TenantView>,
    pub(super) commands: mpsc::Receiver<TenantCommand>,
    pub(super) cancel: CancellationToken,
    pub(super) history: History,
    pub(super) logged_in_before: bool,
    pub(super) delete_requested: bool,
    /// Everything of the tenant was deleted from the store: write nothing more, exit.
    pub(super) deleted: bool,
    /// Log out on the server as soon as the connection is logged in.
    pub(super) logout_requested: bool,
    /// A 405 already led to a version refetch and a retry (reset at the next login).
    pub(super) outdated_retried: bool,
    /// Connection counter (the `conn_id` span field).
    pub(super) conn_seq: u64,
    /// The Signal key cache, handed to each connection's client and taken back after it.
    pub(super) keys: wa::KeyCache,
    /// Counter for inbox ids (`{unix_ms:013}-{seq:06}`).
    pub(super) inbox_seq: u64,
    /// `SendText` replies waiting for their stanza to leave (by message id).
    pub(super) pending_sends: HashMap<String, oneshot::Sender<Result<(), CommandError>>>,
    /// Inbox ids of committed received messages whose `Event::Message` comes next (`None`:
    /// the message was rejected by the store and reported as `message.failed`).
    pub(super) received_inbox: VecDeque<Option<String>>,
    /// The tenant's inbox index and caps (shared with the webhook task and the API).
    pub(super) inbox: Arc<super::inbox::InboxIndex>,
    /// `tenant.inbox_full` was reported for the current full spell.
    pub(super) inbox_full_reported: bool,
}

/// The key cache of a hydrated tenant; entries that do not load are skipped and counted in
/// the log (their peers recover through retry receipts), never a reason to stop the tenant.
fn hydrate_keys(id: &TenantId, stored: &BTreeMap<KeyRef, SecretBytes>) -> wa::KeyCache {
    let (keys, errors) = persist::keys_from_store(stored);
    if !errors.is_empty() {
        tracing::warn!(tenant_id = %id, skipped = errors.len(), "stored signal keys do not load; skipped");
        for e in &errors {
            tracing::debug!(tenant_id = %id, error = %e, "skipped stored key");
        }
    }
    keys
}

/// What a command served during a wait asks of the waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Keep waiting.
    Stay,
    /// Connect now (a link or a server-side logout was requested).
    Reconnect,
    /// Stop waiting (keys were cleared locally).
    Stop,
}

impl Actor {
    async fn run(mut self, start_delay: Duration) {
        if !start_delay.is_zero() && self.creds.is_some() {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(start_delay) => {}
            }
        }
        let mut fresh = true;
        loop {
            if self.cancel.is_cancelled() || self.deleted {
                return;
            }
            let wants = !self.failed && (self.creds.is_some() || self.link.is_some());
            if !wants {
                if !self.wait_idle().await {
                    return;
                }
                continue;
            }
            let acquired = lease::acquire(&self.ctx, &self.id).await;
            match acquired {
                Ok(Acquired::Held(guard)) => {
                    if !fresh && !self.rehydrate().await {
                        let _ = guard.release().await;
                        continue;
                    }
                    fresh = false;
                    let end = self.session(&guard).await;
                    if self.deleted {
                        // The lease went with the tenant doc: nothing to release.
                        return;
                    }
                    let lost = guard.lost().is_cancelled();
                    if let Err(e) = guard.release().await {
                        tracing::warn!(error = %e, "lease release failed; it will expire");
                    }
                    self.view.send_modify(|v| {
                        v.lease_epoch = None;
                        if lost {
                            v.lease_holder = None;
                        }
                    });
                    match end {
                        SessionEnd::Shutdown => return,
                        SessionEnd::LeaseLost | SessionEnd::Idle if lost => {
                            self.set_state(TenantState::HeldElsewhere, None).await;
                        }
                        SessionEnd::LeaseLost | SessionEnd::Idle => {}
                    }
                }
                Ok(Acquired::Elsewhere { holder, expires_at_ms }) => {
                    fresh = false;
                    // `expires_at_ms` is on the store's lease clock (server time on Firestore):
                    // a skewed local clock only changes this capped retry wait, never who holds.
                    let wait_ms = expires_at_ms.saturating_sub(clock::unix_ms());
                    let jitter = rand::thread_rng().gen_range(0..=clock::ms(self.ctx.config.held_retry) / 4);
                    let wait = (Duration::from_millis(wait_ms).min(self.ctx.config.held_retry)
                        + Duration::from_millis(jitter))
                    .min(self.ctx.config.lease_ttl);
                    let first = self.view.borrow().state != TenantState::HeldElsewhere
                        || self.view.borrow().lease_holder.as_deref() != Some(holder.as_str());
                    self.view.send_modify(|v| {
                        v.state = TenantState::HeldElsewhere;
                        v.lease_holder = Some(holder.clone());
                        v.lease_epoch = None;
                        v.retry_in_ms = Some(clock::ms(wait));
                        v.retry_at = Some(clock::rfc3339(clock::unix_ms() + clock::ms(wait)));
                    });
                    if first {
                        tracing::info!(holder = %holder, "lease held elsewhere; not connecting");
                    }
                    if !self.wait(wait).await {
                        return;
                    }
                }
                Err(e) => {
                    let wait = policy::backoff(Duration::from_secs(1), self.history.attempt, jitter());
                    self.history.attempt = self.history.attempt.saturating_add(1);
                    tracing::warn!(error = %e, "lease acquisition failed; backing off");
                    self.set_state(TenantState::Backoff, Some(format!("store unavailable: {e}"))).await;
                    if !self.wait(wait).await {
                        return;
                    }
                }
            }
        }
    }

    /// Reloads creds after someone else may have held the lease. False: the tenant is broken.
    async fn rehydrate(&mut self) -> bool {
        match self.ctx.store.hydrate(&self.id).await {
            Ok(snap) => {
                if let Some(s) = snap.status {
                    self.status = s;
                }
                // Another holder may have delivered or added inbox items meanwhile.
                self.inbox.reset(&snap.inbox);
                match snap.creds.as_ref().map(persist::creds_from_store).transpose() {
                    Ok(c) => {
                        self.creds = c.filter(wa::Creds::is_paired);
                        self.keys = hydrate_keys(&self.id, &snap.keys);
                        true
                    }
                    Err(e) => {
                        self.failed = true;
                        self.set_state(TenantState::Error, Some(format!("stored creds are unusable: {e}")))
                            .await;
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-hydration failed");
                self.set_state(TenantState::Backoff, Some(format!("store unavailable: {e}"))).await;
                let _ = self.wait(Duration::from_secs(1)).await;
                false
            }
        }
    }

    /// Runs connections under `guard` until the policy says stop, the lease is lost or the host
    /// shuts down.
    async fn session(&mut self, guard: &LeaseGuard) -> SessionEnd {
        self.view.send_modify(|v| {
            v.lease_holder = Some(self.ctx.config.holder_id.clone());
            v.lease_epoch = Some(guard.lease().epoch);
            v.retry_at = None;
            v.retry_in_ms = None;
        });
        loop {
            let linking = self.creds.is_none();
            if linking && self.link.is_none() {
                return SessionEnd::Idle;
            }
            let creds = match &self.creds {
                Some(c) => c.clone(),
                None => wa::Creds::generate(&mut rand::rngs::OsRng),
            };
            if linking {
                // A new registration connection issues new refs: drop the old QR / code.
                self.view.send_modify(|v| {
                    v.qr = None;
                    v.pair_code = None;
                });
            }
            let state = if linking { TenantState::Linking } else { TenantState::Connecting };
            self.set_state(state, None).await;
            self.conn_seq = self.conn_seq.wrapping_add(1);
            let span = tracing::info_span!("conn", conn_id = self.conn_seq, attempt = self.history.attempt);
            let end = self.connect_once(guard, creds).instrument(span).await;
            if self.delete_requested && self.creds.is_none() && !matches!(end, ConnEnd::LeaseLost) {
                // Deleted while linking: nothing is linked, so nothing to log out.
                let _ = self.purge(guard).await;
                return SessionEnd::Idle;
            }
            let reason = match end {
                ConnEnd::Shutdown => return SessionEnd::Shutdown,
                ConnEnd::LeaseLost => {
                    tracing::warn!("lease lost; socket closed");
                    return SessionEnd::LeaseLost;
                }
                ConnEnd::Closed { reason, connected_for } => {
                    self.history.connected_for = connected_for;
                    reason
                }
            };
            self.record_disconnect(&reason).await;
            let action = policy::decide(&reason, &self.history, jitter());
            tracing::info!(code = reason.code(), reason = %reason_text(&reason), action = ?action, "connection ended");
            self.history.restarts_in_row =
                if reason.is_restart() { self.history.restarts_in_row.saturating_add(1) } else { 0 };
            match action {
                Action::ReconnectNow => {}
                Action::Backoff(d) | Action::ResyncThenReconnect(d) => {
                    self.history.attempt = policy::next_attempt(&self.history).saturating_add(1);
                    if !self.backoff_wait(guard, d, None).await {
                        return self.wait_end(guard);
                    }
                }
                Action::RecheckLeaseThenCooldown(d) => match guard.recheck().await {
                    Ok(false) => return SessionEnd::LeaseLost,
                    Ok(true) | Err(_) => {
                        let why = Some("replaced by another connection (440); cooling down".to_owned());
                        if !self.backoff_wait(guard, d, why).await {
                            return self.wait_end(guard);
                        }
                    }
                },
                Action::LoggedOut => {
                    let why = if matches!(reason, DisconnectReason::LocalLogout) {
                        "logged out on request"
                    } else {
                        "device unlinked by the phone or server"
                    };
                    self.clear_keys(guard, TenantState::LoggedOut, why).await;
                    return SessionEnd::Idle;
                }
                Action::Banned(Some(until)) => {
                    // A temporary ban says when it ends: wait it out in state `banned`, once.
                    let why = Some(format!("{} for {} s", reason_text(&reason), until.as_secs()));
                    if !self.state_wait(guard, TenantState::Banned, until, why).await {
                        return self.wait_end(guard);
                    }
                }
                Action::Banned(None) => {
                    self.set_state(TenantState::Banned, Some(reason_text(&reason))).await;
                    self.creds_banned();
                    return SessionEnd::Idle;
                }
                Action::Outdated => {
                    let refused = self.ctx.wa_version.current();
                    if self.ctx.wa_version.is_auto() && !self.outdated_retried {
                        // Once per refusal streak: refetch (shared by the host) and retry now.
                        self.outdated_retried = true;
                        let fresh = self.ctx.wa_version.refresh(&self.ctx.http).await;
                        tracing::warn!(refused = %refused, retry_with = %fresh, "client version refused (405); refetched, retrying once");
                        continue;
                    }
                    self.failed = true;
                    let why = format!(
                        "WhatsApp refused client version {refused} as outdated (405); set STAYLINKED_WA_VERSION to a current version (or auto) and restart"
                    );
                    tracing::error!(version = %refused, "client version refused (405); tenant stopped (state outdated)");
                    self.set_state(TenantState::Outdated, Some(why)).await;
                    return SessionEnd::Idle;
                }
                Action::Fail(why) => {
                    self.failed = true;
                    self.set_state(TenantState::Error, Some(why.to_owned())).await;
                    return SessionEnd::Idle;
                }
                Action::Idle => {
                    self.link = None;
                    if self.creds.is_none() {
                        self.view.send_modify(|v| {
                            v.qr = None;
                            v.pair_code = None;
                        });
                        self.set_state(TenantState::Unlinked, Some("link abandoned".into())).await;
                    }
                    return SessionEnd::Idle;
                }
            }
        }
    }

    fn wait_end(&self, guard: &LeaseGuard) -> SessionEnd {
        if self.cancel.is_cancelled() {
            SessionEnd::Shutdown
        } else if guard.lost().is_cancelled() {
            SessionEnd::LeaseLost
        } else {
            SessionEnd::Idle
        }
    }

    /// A banned account keeps its creds in the store but this process stops using them.
    fn creds_banned(&mut self) {
        self.failed = true;
    }

    /// Waits in state `backoff`; commands are served meanwhile. False: shutdown, lease lost or
    /// the tenant was logged out/deleted meanwhile.
    async fn backoff_wait(&mut self, guard: &LeaseGuard, d: Duration, why: Option<String>) -> bool {
        self.state_wait(guard, TenantState::Backoff, d, why).await
    }

    /// Waits `d` in `state` (with `retry_at` shown) while serving commands; see
    /// [`Self::backoff_wait`].
    async fn state_wait(
        &mut self,
        guard: &LeaseGuard,
        state: TenantState,
        d: Duration,
        why: Option<String>,
    ) -> bool {
        self.view.send_modify(|v| {
            v.retry_in_ms = Some(clock::ms(d));
            v.retry_at = Some(clock::rfc3339(clock::unix_ms() + clock::ms(d)));
        });
        self.set_state(state, why).await;
        let until = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return false,
                () = guard.lost().cancelled() => return false,
                () = tokio::time::sleep_until(until) => break,
                cmd = self.commands.recv() => match cmd {
                    Some(c) => match self.offline_command(Some(guard), c).await {
                        Wake::Stay => {}
                        Wake::Reconnect => break,
                        Wake::Stop => return false,
                    },
                    None => return false,
                },
            }
        }
        self.view.send_modify(|v| {
            v.retry_in_ms = None;
            v.retry_at = None;
        });
        true
    }

    /// Idle: waits for a command. False on shutdown.
    async fn wait_idle(&mut self) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            cmd = self.commands.recv() => match cmd {
                Some(c) => { let _ = self.offline_command(None, c).await; true }
                None => false,
            },
        }
    }

    /// Waits `d` while serving commands. False on shutdown.
    async fn wait(&mut self, d: Duration) -> bool {
        let until = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                cmd = self.commands.recv() => match cmd {
                    Some(c) => if self.offline_command(None, c).await != Wake::Stay { return true },
                    None => return false,
                },
            }
        }
    }

    /// Serves a command while no connection is live.
    async fn offline_command(&mut self, guard: Option<&LeaseGuard>, cmd: TenantCommand) -> Wake {
        match cmd {
            TenantCommand::Link { method, reply } => {
                let r = if self.creds.is_some() {
                    Err(CommandError::AlreadyLinked)
                } else if self.view.borrow().state == TenantState::HeldElsewhere {
                    let holder = self.view.borrow().lease_holder.clone().unwrap_or_default();
                    Err(CommandError::LeaseHeld { holder })
                } else {
                    self.failed = false;
                    self.link = Some(method);
                    self.set_state(TenantState::Linking, None).await;
                    Ok(())
                };
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok { Wake::Reconnect } else { Wake::Stay }
            }
            TenantCommand::SendText { reply, .. } | TenantCommand::Typing { reply, .. } => {
                let _ = reply.send(Err(CommandError::NotConnected));
                Wake::Stay
            }
            TenantCommand::Configure { webhook_url, webhook_secret, pacing, push_name, presence, reply } => {
                let r = self.configure(webhook_url, webhook_secret, pacing, push_name, presence).await;
                let _ = reply.send(r);
                Wake::Stay
            }
            TenantCommand::Logout { reply } if self.creds.is_none() => {
                let _ = reply.send(Err(CommandError::NotLinked));
                Wake::Stay
            }
            TenantCommand::Logout { reply } | TenantCommand::Delete { reply }
                if self.view.borrow().state == TenantState::HeldElsewhere =>
            {
                let holder = self.view.borrow().lease_holder.clone().unwrap_or_default();
                let _ = reply.send(Err(CommandError::LeaseHeld { holder }));
                Wake::Stay
            }
            TenantCommand::Delete { reply } if self.creds.is_none() => {
                // Nothing linked, nothing to log out: delete the stored state now.
                let r = self.purge_offline(guard).await;
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok { Wake::Stop } else { Wake::Stay }
            }
            cmd @ (TenantCommand::Logout { .. } | TenantCommand::Delete { .. }) if !self.failed => {
                // Log out on the server (so the phone drops the device): connect, and the
                // connection logs out as soon as it is logged in.
                if let TenantCommand::Delete { reply } = cmd {
                    // Durable before the answer: a crash after it finishes the purge at the
                    // next start instead of bringing the tenant back.
                    if let Err(e) = self.mark_deleting().await {
                        let _ = reply.send(Err(e));
                        return Wake::Stay;
                    }
                    self.logout_requested = true;
                    self.delete_requested = true;
                    let _ = reply.send(Ok(()));
                } else if let TenantCommand::Logout { reply } = cmd {
                    self.logout_requested = true;
                    let _ = reply.send(Ok(()));
                }
                Wake::Reconnect
            }
            TenantCommand::Logout { reply } => {
                let r = self.clear_keys_offline(guard, "logged out on request").await;
                let _ = reply.send(r);
                Wake::Stop
            }
            TenantCommand::Delete { reply } => {
                self.delete_requested = true;
                let r = self.clear_keys_offline(guard, "deleted").await.and_then(|()| {
                    if self.deleted {
                        Ok(())
                    } else {
                        Err(CommandError::Store("the tenant's state could not be deleted; retry".into()))
                    }
                });
                if r.is_err() {
                    self.delete_requested = false;
                }
                let _ = reply.send(r);
                Wake::Stop
            }
        }
    }

    /// Clears keys without a live connection (the phone may still list the device; its JID
    /// stays in `devices_registered`). Takes the lease for the fenced delete if not held.
    async fn clear_keys_offline(
        &mut self,
        guard: Option<&LeaseGuard>,
        why: &str,
    ) -> Result<(), CommandError> {
        if let Some(g) = guard {
            self.clear_keys(g, TenantState::LoggedOut, why).await;
            return Ok(());
        }
        let acquired =
            lease::acquire(&self.ctx, &self.id).await.map_err(|e| CommandError::Store(e.to_string()))?;
        match acquired {
            Acquired::Held(g) => {
                self.clear_keys(&g, TenantState::LoggedOut, why).await;
                if !self.deleted {
                    let _ = g.release().await;
                }
                Ok(())
            }
            Acquired::Elsewhere { holder, .. } => Err(CommandError::LeaseHeld { holder }),
        }
    }

    /// [`Self::purge`] without a live connection: takes the lease for the fenced delete if
    /// not held.
    async fn purge_offline(&mut self, guard: Option<&LeaseGuard>) -> Result<(), CommandError> {
        if let Some(g) = guard {
            return self.purge(g).await;
        }
        let acquired =
            lease::acquire(&self.ctx, &self.id).await.map_err(|e| CommandError::Store(e.to_string()))?;
        match acquired {
            Acquired::Held(g) => {
                let r = self.purge(&g).await;
                if r.is_err() {
                    let _ = g.release().await;
                }
                r
            }
            Acquired::Elsewhere { holder, .. } => Err(CommandError::LeaseHeld { holder }),
        }
    }

    /// Deletes everything the tenant has in the store (fenced by `guard`): creds, keys,
    /// outbox, events and the status doc with the lease. On success the actor writes nothing
    /// more for this tenant and exits; the guard's renewal stops (there is no lease left).
    pub(super) async fn purge(&mut self, guard: &LeaseGuard) -> Result<(), CommandError> {
        let mut tries = 0u32;
        let r = loop {
            match self.ctx.store.delete_tenant(&self.id, guard.fence()).await {
                Ok(()) => break Ok(()),
                Err(e) if e.is_retryable() && tries < 5 && !self.cancel.is_cancelled() => {
                    tries += 1;
                    tokio::time::sleep(persist::commit_retry_delay(tries)).await;
                }
                Err(e) => break Err(e),
            }
        };
        match r {
            Ok(()) => {
                guard.stop_renewal();
                self.deleted = true;
                self.creds = None;
                self.keys = wa::KeyCache::new();
                self.link = None;
                self.logout_requested = false;
                self.view.send_modify(|v| {
                    v.me = None;
                    v.qr = None;
                    v.pair_code = None;
                    v.lease_epoch = None;
                    v.lease_holder = None;
                });
                tracing::info!("tenant deleted from the store");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "deleting the tenant failed; a retried DELETE finishes it");
                Err(CommandError::Store(e.to_string()))
            }
        }
    }

    /// Deletes creds and keys (fenced), drops them from memory and sets `state`. When a
    /// delete was requested, deletes the whole tenant instead ([`Self::purge`]); if that fails,
    /// the keys are still cleared and the tenant stays (logged out) for a retried DELETE.
    pub(super) async fn clear_keys(&mut self, guard: &LeaseGuard, state: TenantState, why: &str) {
        if self.delete_requested {
            if self.purge(guard).await.is_ok() {
                return;
            }
            self.delete_requested = false;
        }
        let mut tries = 0u32;
        loop {
            match self.ctx.store.delete_tenant_keys(&self.id, guard.fence()).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && tries < 5 && !self.cancel.is_cancelled() => {
                    tries += 1;
                    tokio::time::sleep(persist::commit_retry_delay(tries)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "clearing keys failed");
                    break;
                }
            }
        }
        self.creds = None;
        self.keys = wa::KeyCache::new();
        self.link = None;
        self.logout_requested = false;
        self.view.send_modify(|v| {
            v.me = None;
            v.qr = None;
            v.pair_code = None;
        });
        self.status.me = None;
        tracing::info!(reason = why, "keys cleared");
        self.set_state(state, Some(why.to_owned())).await;
    }

    /// Marks the tenant as being deleted, durably, before a `DELETE` is answered: a restart
    /// then purges it (without reconnecting) instead of bringing it back.
    pub(super) async fn mark_deleting(&mut self) -> Result<(), CommandError> {
        let patch = ConfigPatch { deleting: Some(true), ..ConfigPatch::default() };
        self.ctx
            .store
            .write_config(&self.id, &patch)
            .await
            .map_err(|e| CommandError::Store(e.to_string()))?;
        self.status.apply(&patch);
        Ok(())
    }

    /// Applies a [`TenantCommand::Configure`]: writes only the changed operator-config fields
    /// (durably, before the answer) and updates the view (the outbox and webhook tasks follow
    /// the view).
    pub(super) async fn configure(
        &mut self,
        webhook_url: Option<Option<String>>,
        webhook_secret: Option<SecretBytes>,
        pacing: Option<Option<crate::store::model::PacingOverride>>,
        push_name: Option<Option<String>>,
        presence: Option<PresenceType>,
    ) -> Result<(), CommandError> {
        if self.view.borrow().state == TenantState::HeldElsewhere {
            let holder = self.view.borrow().lease_holder.clone().unwrap_or_default();
            return Err(CommandError::LeaseHeld { holder });
        }
        let patch = ConfigPatch { webhook_url, webhook_secret, pacing, push_name, presence, deleting: None };
        self.ctx
            .store
            .write_config(&self.id, &patch)
            .await
            .map_err(|e| CommandError::Store(e.to_string()))?;
        self.status.apply(&patch);
        self.view.send_modify(|v| {
            v.webhook_url.clone_from(&self.status.webhook_url);
            v.webhook_secret.clone_from(&self.status.webhook_secret);
            v.pacing = self.status.pacing.as_deref().copied();
            v.push_name.clone_from(&self.status.push_name);
            v.presence = self.status.presence.unwrap_or(PresenceType::Unavailable);
        });
        Ok(())
    }

    async fn record_disconnect(&mut self, reason: &DisconnectReason) {
        let now = clock::unix_ms();
        let text = reason_text(reason);
        self.status.last_disconnect =
            Some(LastDisconnect { code: u32::from(reason.code()), reason: text.clone(), at: now });
        self.view.send_modify(|v| {
            v.last_disconnect =
                Some(DisconnectView { code: reason.code(), reason: text.clone(), at: clock::rfc3339(now) });
        });
        self.ctx.metrics.count_reconnect(reason.code());
        self.event("disconnected", format!("code {}: {text}", reason.code())).await;
    }

    /// Publishes a state change and writes the status doc + an event (best effort: status
    /// writes are not deltas and never block the tenant).
    pub(super) async fn set_state(&mut self, state: TenantState, why: Option<String>) {
        let changed = self.view.borrow().state != state;
        self.view.send_modify(|v| {
            v.state = state;
            v.error.clone_from(&why);
            if state == TenantState::Connected {
                v.retry_at = None;
                v.retry_in_ms = None;
            }
        });
        if changed {
            let ev = TenantEvent::Connection { state, detail: why.clone() };
            self.ctx.events.publish(&self.id, ev);
        }
        if !changed || state == TenantState::HeldElsewhere {
            // The holder owns the status doc; a process without the lease never writes it.
            return;
        }
        tracing::info!(state = state.as_str(), reason = why.as_deref().unwrap_or(""), "tenant state");
        self.status.state = state.link_state();
        self.write_status().await;
        self.event(state.as_str(), why.unwrap_or_default()).await;
    }

    pub(super) async fn write_status(&mut self) {
        self.status.updated_at = clock::unix_ms();
        if let Err(e) = self.ctx.store.write_status(&self.id, &self.status).await {
            tracing::warn!(error = %e, "status doc write failed");
        }
    }

    pub(super) async fn event(&self, kind: &str, detail: String) {
        let ev = StoredEvent { at: clock::unix_ms(), kind: kind.to_owned(), detail };
        if let Err(e) = self.ctx.store.append_event(&self.id, &ev).await {
            tracing::warn!(error = %e, "event append failed");
        }
    }
}

/// A uniform jitter sample in `[0, 1)`.
fn jitter() -> f64 {
    rand::thread_rng().r#gen::<f64>()
}

/// Reason text for logs and the status doc (never a phone number).
pub(super) fn reason_text(r: &DisconnectReason) -> String {
    match r {
        DisconnectReason::RestartRequired => "restart required".into(),
        DisconnectReason::LoggedOut { .. } => "logged out".into(),
        DisconnectReason::Replaced => "replaced by another connection".into(),
        DisconnectReason::TempBanned { .. } => "temporarily banned".into(),
        DisconnectReason::ClientOutdated => "client outdated".into(),
        DisconnectReason::LoginRefused { .. } => "login refused".into(),
        DisconnectReason::ServiceUnavailable { .. } => "service unavailable".into(),
        DisconnectReason::RateLimited => "rate limited".into(),
        DisconnectReason::StreamError { .. } => "stream error".into(),
        DisconnectReason::StreamEnd => "stream ended".into(),
        DisconnectReason::ConnectionClosed => "connection closed".into(),
        DisconnectReason::ConnectionLost => "connection lost (no inbound frames)".into(),
        DisconnectReason::ConnectTimeout => "connect timeout".into(),
        DisconnectReason::QrTimeout => "qr expired unscanned".into(),
        DisconnectReason::MultideviceMismatch => "multi-device mismatch".into(),
        DisconnectReason::Protocol(p) => format!("protocol error: {p}"),
        DisconnectReason::LocalLogout => "logged out on request".into(),
        DisconnectReason::LocalClose => "closed locally".into(),
    }
}
