//! The per-tenant side tasks started beside each tenant actor: the paced outbox
//! (`host::outbox`) and the webhook delivery task (`host::webhook::worker`), attached to the
//! host's dispatcher so the tenant's events and message statuses reach them.
//!
//! Both follow the actor's `watch` view (connection state, lease epoch, webhook settings) and
//! end when the actor is gone or the host shuts down. No protocol or connection logic here.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::inbox::InboxIndex;
use super::outbox::{self, OutboxHandle, OutboxStart};
use super::state::{TenantCommand, TenantView};
use super::webhook::worker::{Pending, Worker};
use crate::store::OutboxItem;
use crate::types::TenantId;

/// What the side tasks of one tenant start from (from its hydrated snapshot).
#[derive(Debug, Default)]
pub(crate) struct SideStart {
    /// Outbox items (`TenantSnapshot.outbox`).
    pub(crate) outbox: Vec<OutboxItem>,
    /// Undelivered events (`TenantSnapshot.inbox`), oldest first.
    pub(crate) backlog: Vec<Pending>,
}

/// The undelivered inbox items of a hydrated tenant as webhook backlog, oldest first (ids sort
/// in arrival order): ids only, bodies are read from the inbox when each one's turn comes.
pub(crate) fn backlog(inbox: &std::collections::BTreeMap<String, u64>) -> Vec<Pending> {
    inbox.keys().map(|id| Pending::stored(id.clone())).collect()
}

/// Spawns the outbox and webhook tasks of `id` on the host tracker; returns the outbox handle.
pub(crate) fn spawn(
    ctx: &Arc<Ctx>,
    id: &TenantId,
    start: SideStart,
    inbox: &Arc<InboxIndex>,
    commands: &mpsc::Sender<TenantCommand>,
    view: &watch::Receiver<TenantView>,
    cancel: &CancellationToken,
) -> OutboxHandle {
    let (handle, task) = outbox::start(
        Arc::clone(&ctx.store),
        OutboxStart {
            tenant: id.clone(),
            items: start.outbox,
            pacing: ctx.config.pacing,
            limits: ctx.config.limits,
            commands: commands.clone(),
            view: view.clone(),
            cancel: cancel.clone(),
            events: Arc::clone(&ctx.events),
        },
    );
    let lane = ctx.webhooks.attach(id.clone(), Some(handle.clone()));
    let worker = Worker {
        tenant: id.clone(),
        store: Arc::clone(&ctx.store),
        client: ctx.http.clone(),
        config: ctx.config.webhook,
        view: view.clone(),
        lane,
        cancel: cancel.clone(),
        backlog: start.backlog,
        inbox: Arc::clone(inbox),
    };
    let span = tracing::info_span!("outbox", tenant_id = %id);
    ctx.spawn(tracing::Instrument::instrument(task, span));
    let span = tracing::info_span!("webhook", tenant_id = %id);
    let dispatcher = Arc::clone(&ctx.webhooks);
    let tid = id.clone();
    ctx.spawn(tracing::Instrument::instrument(
        async move {
            worker.run().await;
            dispatcher.detach_closed(&tid);
        },
        span,
    ));
    handle
}
