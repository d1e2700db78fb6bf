//! One connection of a tenant, run by its actor: dial the WebSocket, feed the sans-IO client,
//! and apply its outputs strictly in order. Every `Persist` is committed (fenced) before any
//! later output; a failing store blocks the tenant with backoff and nothing after the delta is
//! sent (invariant 1). Lease loss closes the socket at once (invariant 2); shutdown stops
//! reading, drains the pending outputs (committing every delta) and closes (invariant 5).
//!
//! No reconnect decisions here (`host::policy`), no status-doc policy (`host::tenant`).

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rand::SeedableRng as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::clock;
use super::events::TenantEvent;
use super::lease::LeaseGuard;
use super::persist::{self, StorePersister};
use super::state::{CommandError, LinkMethod, QrView, TenantCommand, TenantState};
use super::tenant::Actor;
use crate::conn::DIAL_TIMEOUT;
use crate::store;
use crate::store::model::PresenceType;
use crate::wa::client::{self as wa, Client, ClientConfig, DisconnectReason, Event, Output};

/// `Origin` header WA Web sends.
const ORIGIN: &str = "https://web.whatsapp.com";

/// How one connection ended.
pub(super) enum ConnEnd {
    /// The host is shutting down; outputs were drained and the socket closed.
    Shutdown,
    /// The lease was lost (renewal fenced or a commit fenced); the socket is closed.
    LeaseLost,
    /// The connection ended for `reason`.
    Closed {
        /// Why.
        reason: DisconnectReason,
        /// How long it was logged in, if it was.
        connected_for: Option<Duration>,
    },
}

impl Actor {
    /// Runs one connection with `creds` under `guard`.
    pub(super) async fn connect_once(&mut self, guard: &LeaseGuard, creds: wa::Creds) -> ConnEnd {
        let cfg = &self.ctx.config;
        let config = ClientConfig {
            url: cfg.wa_url.clone(),
            trust: cfg.wa_trust,
            keepalive: cfg.keepalive,
            os_name: cfg.device_name.os.clone(),
            platform: cfg.device_name.platform,
            version: self.ctx.wa_version.current(),
            push_name: self.status.push_name.clone(),
            presence_available: self.status.presence == Some(PresenceType::Available),
        };
        let keepalive = config.keepalive;
        let rng = Box::new(rand::rngs::StdRng::from_entropy());
        let mut client = Client::new(config, creds, rng, clock::now(), clock::unix_secs());
        client.load_keys(std::mem::take(&mut self.keys));
        self.received_inbox.clear();
        let end = self.run_client(guard, &mut client, keepalive).await;
        // The cache is in step with the store: every change was committed before the client
        // went on (a failed commit ends the connection and the next lease re-hydrates).
        self.keys = client.take_keys();
        for (_, reply) in self.pending_sends.drain() {
            let _ = reply.send(Err(CommandError::NotConnected));
        }
        end
    }

    /// Drives `client` over one WebSocket until the connection ends.
    async fn run_client(&mut self, guard: &LeaseGuard, client: &mut Client, keepalive: Duration) -> ConnEnd {
        let persister = StorePersister::new(
            self.ctx.store.clone(),
            self.id.clone(),
            guard.fence(),
            self.ctx.metrics.clone(),
        );

        let mut req = match client.config().url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "bad websocket url");
                return ConnEnd::Closed { reason: DisconnectReason::ConnectTimeout, connected_for: None };
            }
        };
        req.headers_mut().insert("Origin", HeaderValue::from_static(ORIGIN));
        // Boxed: the handshake future is several KiB and lives only until the socket is open;
        // inline, it would size every tenant task's state machine for the whole connection
        // (heap profile of `staylinked bench scale`: ~16 KiB per tenant task before).
        let dial = Box::pin(tokio::time::timeout(
            DIAL_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(req, Some(crate::conn::ws_config()), false),
        ));
        let mut ws = tokio::select! {
            () = self.cancel.cancelled() => return ConnEnd::Shutdown,
            () = guard.lost().cancelled() => return ConnEnd::LeaseLost,
            r = dial => match r {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "websocket dial failed");
                    return ConnEnd::Closed { reason: DisconnectReason::ConnectionClosed, connected_for: None };
                }
                Err(_) => return ConnEnd::Closed { reason: DisconnectReason::ConnectTimeout, connected_for: None },
            },
        };
        client.connect(clock::now());
        let mut last_inbound = tokio::time::Instant::now();
        let mut logged_in_at: Option<tokio::time::Instant> = None;
        let mut closing = false;
        let mut commit_failures = 0u32;
        loop {
            while let Some(out) = client.poll_output() {
                match out {
                    Output::Persist(delta) => {
                        let inbox =
                            matches!(delta, wa::Delta::Received { .. }).then(|| self.next_inbox_slot());
                        let slot = inbox.as_ref().map(|(id, at)| persist::InboxSlot { id, created_at: *at });
                        let mut batch = persist::delta_to_batch_with_inbox(&delta, slot);
                        // The received message's inbox item, while it is still to be kept.
                        let mut kept: Option<(String, u64)> = batch.deltas.iter().find_map(|d| match d {
                            store::Delta::InboxPut(item) => {
                                Some((item.id.clone(), item.payload.len() as u64))
                            }
                            _ => None,
                        });
                        if let Some((_, size)) = &kept {
                            let max = self.inbox.max_item_bytes();
                            if *size > max {
                                let why =
                                    format!("message is {size} bytes; the inbox holds at most {max} bytes");
                                self.reject_received(&delta, &mut batch, &why);
                                kept = None;
                            } else {
                                // Bounded inbox: nothing is committed, acknowledged or receipted
                                // until it has room (WhatsApp keeps the message meanwhile).
                                match self.wait_inbox_space(guard, client, *size).await {
                                    SpaceWait::Space => {}
                                    SpaceWait::Abandon => {
                                        let why =
                                            "the tenant was logged out or deleted while its inbox was full";
                                        self.reject_received(&delta, &mut batch, why);
                                        kept = None;
                                    }
                                    SpaceWait::End(end) => {
                                        let _ = ws.close(None).await;
                                        return end;
                                    }
                                }
                            }
                        }
                        // Invariant 1: nothing after this delta happens until it is durable.
                        loop {
                            match persister.commit_batch(&batch).await {
                                Ok(_) => {
                                    commit_failures = 0;
                                    break;
                                }
                                Err(e) if e.is_fenced() => {
                                    tracing::warn!(error = %e, "commit fenced: lease lost");
                                    guard.mark_lost();
                                    let _ = ws.close(None).await;
                                    return ConnEnd::LeaseLost;
                                }
                                Err(e) if e.is_rejected() && kept.is_some() => {
                                    // This message can never be stored: keep its keys, report it
                                    // lost with the reason, and go on with the next one.
                                    self.reject_received(
                                        &delta,
                                        &mut batch,
                                        &format!("the store rejected it: {e}"),
                                    );
                                    kept = None;
                                }
                                Err(e) if e.is_rejected() => {
                                    // Retrying cannot help and would wedge the tenant for good.
                                    self.ctx.metrics.count_message_rejected();
                                    tracing::error!(error = %e, "the store rejects this change for good; skipped");
                                    break;
                                }
                                Err(e) => {
                                    commit_failures = commit_failures.saturating_add(1);
                                    self.view.send_modify(|v| {
                                        v.commit_failures += 1;
                                        v.error =
                                            Some(format!("store commit failing; progress blocked: {e}"));
                                    });
                                    tracing::warn!(error = %e, attempt = commit_failures, "commit failed; blocked, retrying");
                                    if self.cancel.is_cancelled() && commit_failures > 3 {
                                        // Shutting down and the store is gone: nothing that
                                        // depends on the delta was sent; the server redelivers.
                                        let _ = ws.close(None).await;
                                        return ConnEnd::Shutdown;
                                    }
                                    tokio::select! {
                                        () = guard.lost().cancelled() => {
                                            let _ = ws.close(None).await;
                                            return ConnEnd::LeaseLost;
                                        }
                                        () = tokio::time::sleep(persist::commit_retry_delay(commit_failures)) => {}
                                    }
                                }
                            }
                        }
                        if let wa::Delta::Creds(c) = &delta
                            && c.is_paired()
                        {
                            self.creds = Some((**c).clone());
                        }
                        if inbox.is_some() {
                            if let Some((id, size)) = &kept {
                                self.inbox.add(id, *size);
                            }
                            self.received_inbox.push_back(kept.map(|(id, _)| id));
                        }
                    }
                    Output::Send(bytes) => {
                        if ws.send(Message::Binary(bytes.into())).await.is_err() {
                            client.handle_closed(clock::now());
                        }
                    }
                    Output::Event(ev) => self.on_event(client, ev, &mut logged_in_at).await,
                    Output::Close(reason) => {
                        let _ = ws.close(None).await;
                        if self.cancel.is_cancelled() {
                            return ConnEnd::Shutdown;
                        }
                        return ConnEnd::Closed { reason, connected_for: logged_in_at.map(|t| t.elapsed()) };
                    }
                }
            }
            let deadline = client.poll_timeout().map(tokio::time::Instant::from_std);
            // Watchdog: no inbound frame for two keepalive intervals → the socket is dead.
            let watchdog = last_inbound + keepalive * 2;
            tokio::select! {
                biased;
                () = self.cancel.cancelled(), if !closing => {
                    // Stop reading: close now; outputs queued before the close (and their
                    // deltas) are drained in order by the loop above.
                    closing = true;
                    client.disconnect(clock::now());
                }
                () = guard.lost().cancelled() => {
                    let _ = ws.close(None).await;
                    return ConnEnd::LeaseLost;
                }
                msg = ws.next(), if !closing => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        last_inbound = tokio::time::Instant::now();
                        client.handle_data(clock::now(), &b);
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => client.handle_closed(clock::now()),
                    Some(Ok(_)) => last_inbound = tokio::time::Instant::now(),
                },
                () = sleep_until_opt(deadline) => client.handle_timeout(clock::now()),
                () = tokio::time::sleep_until(watchdog), if !closing => {
                    tracing::warn!("watchdog: no inbound frame for two keepalive intervals");
                    client.handle_closed(clock::now());
                }
                cmd = self.commands.recv(), if !closing => match cmd {
                    Some(c) => self.live_command(client, c).await,
                    None => { closing = true; client.disconnect(clock::now()); }
                },
            }
        }
    }

    async fn live_command(&mut self, client: &mut Client, cmd: TenantCommand) {
        match cmd {
            TenantCommand::Link { method, reply } => {
                let r = if self.creds.is_some() {
                    Err(CommandError::AlreadyLinked)
                } else {
                    if let LinkMethod::Code { phone } = &method
                        && self.view.borrow().qr.is_some()
                    {
                        let _ = client.request_pair_code(clock::now(), phone);
                    }
                    self.link = Some(method);
                    Ok(())
                };
                let _ = reply.send(r);
            }
            TenantCommand::SendText { id, to, text, reply } => {
                match client.send_text(clock::now(), &id, &to, &text) {
                    // Answered when the stanza has left (`Event::Relayed`) or the send failed.
                    Ok(()) => {
                        self.pending_sends.insert(id, reply);
                    }
                    Err(wa::SendError::InvalidRecipient(r)) => {
                        let _ = reply.send(Err(CommandError::InvalidRecipient(r)));
                    }
                    // Not logged in yet, or the same id still in flight: retry later.
                    Err(_) => {
                        let _ = reply.send(Err(CommandError::NotConnected));
                    }
                }
            }
            TenantCommand::Configure { webhook_url, webhook_secret, pacing, push_name, presence, reply } => {
                let announce = push_name.is_some() || presence.is_some();
                let r = self.configure(webhook_url, webhook_secret, pacing, push_name, presence).await;
                if announce && r.is_ok() {
                    let available = self.status.presence == Some(PresenceType::Available);
                    client.set_presence(self.status.push_name.clone(), available);
                }
                let _ = reply.send(r);
            }
            TenantCommand::Typing { to, composing, reply } => {
                let r = match client.send_chatstate(clock::now(), &to, composing) {
                    Ok(()) => Ok(()),
                    Err(wa::SendError::InvalidRecipient(r)) => Err(CommandError::InvalidRecipient(r)),
                    Err(_) => Err(CommandError::NotConnected),
                };
                let _ = reply.send(r);
            }
            TenantCommand::Logout { reply } if self.creds.is_none() => {
                let _ = reply.send(Err(CommandError::NotLinked));
            }
            TenantCommand::Delete { reply } if self.creds.is_none() => {
                // Deleted while linking: abandon the link; the session deletes the stored state
                // once this connection has closed. Marked durably before the answer.
                if let Err(e) = self.mark_deleting().await {
                    let _ = reply.send(Err(e));
                    return;
                }
                self.delete_requested = true;
                self.link = None;
                client.disconnect(clock::now());
                let _ = reply.send(Ok(()));
            }
            cmd @ (TenantCommand::Logout { .. } | TenantCommand::Delete { .. }) => {
                let reply = match cmd {
                    TenantCommand::Delete { reply } => {
                        // Durable before the answer (a crash finishes the purge at restart).
                        if let Err(e) = self.mark_deleting().await {
                            let _ = reply.send(Err(e));
                            return;
                        }
                        self.delete_requested = true;
                        reply
                    }
                    TenantCommand::Logout { reply }
                    | TenantCommand::Link { reply, .. }
                    | TenantCommand::SendText { reply, .. }
                    | TenantCommand::Configure { reply, .. }
                    | TenantCommand::Typing { reply, .. } => reply,
                };
                // The connection ends with LocalLogout; keys are cleared by the policy step. Not
                // logged in yet: log out as soon as it is (a local-only close would leave the
                // device on the phone).
                if client.is_logged_in() {
                    client.logout(clock::now());
                } else {
                    self.logout_requested = true;
                }
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// A fresh inbox id and its time: ids sort in arrival order (`{unix_ms:013}-{seq:06}`).
    fn next_inbox_slot(&mut self) -> (String, u64) {
        self.inbox_seq = (self.inbox_seq + 1) % 1_000_000;
        let now = clock::unix_ms();
        (format!("{now:013}-{:06}", self.inbox_seq), now)
    }

    async fn on_event(
        &mut self,
        client: &mut Client,
        ev: Event,
        logged_in_at: &mut Option<tokio::time::Instant>,
    ) {
        match ev {
            Event::Qr(qr) => {
                let first = self.view.borrow().qr.is_none();
                let ttl = if first { wa::FIRST_QR_TTL } else { wa::NEXT_QR_TTL };
                let expires_at_ms = clock::unix_ms() + clock::ms(ttl);
                self.ctx.events.publish(&self.id, TenantEvent::Qr { qr: qr.clone() });
                self.view.send_modify(|v| v.qr = Some(QrView { qr, expires_at_ms }));
                if first && let Some(LinkMethod::Code { phone }) = &self.link {
                    let _ = client.request_pair_code(clock::now(), phone);
                }
                tracing::info!("qr ready");
            }
            Event::PairCode(code) => {
                self.ctx.events.publish(&self.id, TenantEvent::PairCode { code: code.clone() });
                self.view.send_modify(|v| v.pair_code = Some(code));
                tracing::info!("pair code ready");
            }
            Event::Paired { jid } => {
                self.ctx.metrics.count_pairing();
                self.link = None;
                let now = clock::unix_ms();
                if !self.status.devices_registered.contains(&jid) {
                    self.status.devices_registered.push(jid.clone());
                }
                self.status.me = Some(jid.clone());
                self.status.linked_at = Some(now);
                self.view.send_modify(|v| {
                    v.me = Some(jid.clone());
                    v.qr = None;
                    v.pair_code = None;
                    v.devices_registered.clone_from(&self.status.devices_registered);
                });
                tracing::info!("paired");
                self.write_status().await;
                self.event("paired", "device linked".to_owned()).await;
            }
            Event::LoggedIn => {
                *logged_in_at = Some(tokio::time::Instant::now());
                self.outdated_retried = false;
                if self.logged_in_before || self.status.last_connected_at.is_some() {
                    self.status.reconnects = self.status.reconnects.saturating_add(1);
                }
                self.logged_in_before = true;
                let now = clock::unix_ms();
                self.status.last_connected_at = Some(now);
                let reconnects = self.status.reconnects;
                self.view.send_modify(|v| {
                    v.reconnects = reconnects;
                    v.last_connected_at = Some(clock::rfc3339(now));
                });
                self.set_state(TenantState::Connected, None).await;
                if self.logout_requested {
                    client.logout(clock::now());
                }
            }
            Event::Ready { offline } => {
                self.ctx.metrics.count_offline_drained();
                tracing::debug!(offline, "ready");
            }
            // Wired by the messaging path (issue #7).
            Event::Message(message) => {
                // The preceding Persist(Received) committed the message (and its inbox item).
                let Some(slot) = self.received_inbox.pop_front() else {
                    tracing::error!("message event without a committed inbox item");
                    return;
                };
                // Rejected by the store: already reported as `message.failed`.
                let Some(inbox_id) = slot else { return };
                self.ctx
                    .events
                    .publish(&self.id, TenantEvent::MessageReceived { inbox_id, message: *message });
            }
            Event::Relayed { id, .. } => {
                if let Some(reply) = self.pending_sends.remove(&id) {
                    let _ = reply.send(Ok(()));
                }
            }
            Event::SendDeferred { id } => {
                if let Some(reply) = self.pending_sends.remove(&id) {
                    let _ = reply.send(Err(CommandError::NotConnected));
                }
            }
            Event::Status(update) => {
                if let wa::MessageStatus::Failed(reason) = &update.status
                    && let Some(reply) = self.pending_sends.remove(&update.id)
                {
                    let _ = reply.send(Err(CommandError::InvalidRecipient(reason.clone())));
                }
                self.ctx.events.publish(&self.id, TenantEvent::MessageStatus(update));
            }
        }
    }
}

/// How a wait for inbox space ended.
enum SpaceWait {
    /// The message fits now.
    Space,
    /// A logout or delete was requested meanwhile: give the message up.
    Abandon,
    /// Shutdown or lease loss: end the connection (nothing of the message was acknowledged).
    End(ConnEnd),
}

/// Safety re-check of the inbox while waiting for space (removals also wake the wait).
const INBOX_RECHECK: Duration = Duration::from_secs(5);

impl Actor {
    /// Drops the received message of `delta` from `batch` (its keys stay) and reports it lost
    /// with `reason`: a `message.failed` event, a metric and an error log.
    fn reject_received(&mut self, delta: &wa::Delta, batch: &mut store::DeltaBatch, reason: &str) {
        batch.deltas.retain(|d| !matches!(d, store::Delta::InboxPut(_)));
        self.ctx.metrics.count_message_rejected();
        let wa::Delta::Received { message, .. } = delta else { return };
        tracing::error!(msg_id = %message.id, reason, "received message cannot be stored; reported as message.failed");
        self.ctx.events.publish(
            &self.id,
            TenantEvent::MessageFailed {
                id: message.id.clone(),
                chat: message.chat.clone(),
                sender: message.sender.clone(),
                timestamp: message.timestamp,
                reason: reason.to_owned(),
            },
        );
    }

    /// Waits until an inbox item of `size` bytes fits under the tenant's caps, reporting
    /// `tenant.inbox_full` once per full spell. Commands are served meanwhile (a PATCH can fix
    /// the webhook that drains the inbox); a logout or delete abandons the message.
    async fn wait_inbox_space(&mut self, guard: &LeaseGuard, client: &mut Client, size: u64) -> SpaceWait {
        let inbox = std::sync::Arc::clone(&self.inbox);
        loop {
            let freed = inbox.freed();
            if inbox.fits(size) {
                if self.inbox_full_reported {
                    self.inbox_full_reported = false;
                    self.view.send_modify(|v| v.inbox_full = false);
                    tracing::info!("inbox has room again; taking inbound messages");
                }
                return SpaceWait::Space;
            }
            if !self.inbox_full_reported {
                self.inbox_full_reported = true;
                let (fill, caps) = (inbox.fill(), inbox.caps());
                self.ctx.metrics.count_inbox_full();
                self.view.send_modify(|v| v.inbox_full = true);
                tracing::warn!(
                    messages = fill.messages,
                    bytes = fill.bytes,
                    max_messages = caps.messages,
                    max_bytes = caps.bytes,
                    "inbox full; inbound messages wait at WhatsApp until deliveries or acks free space"
                );
                self.ctx.events.publish(
                    &self.id,
                    TenantEvent::InboxFull {
                        messages: fill.messages,
                        bytes: fill.bytes,
                        max_messages: caps.messages,
                        max_bytes: caps.bytes,
                    },
                );
            }
            tokio::select! {
                () = self.cancel.cancelled() => return SpaceWait::End(ConnEnd::Shutdown),
                () = guard.lost().cancelled() => return SpaceWait::End(ConnEnd::LeaseLost),
                () = freed => {}
                () = tokio::time::sleep(INBOX_RECHECK) => {}
                cmd = self.commands.recv() => match cmd {
                    Some(c) => {
                        let stop = matches!(c, TenantCommand::Logout { .. } | TenantCommand::Delete { .. });
                        self.live_command(client, c).await;
                        if stop {
                            return SpaceWait::Abandon;
                        }
                    }
                    None => return SpaceWait::Abandon,
                },
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
