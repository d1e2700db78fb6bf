//! Outbox task scenarios under paused tokio time (no sockets): a fake tenant actor records
//! every `SendText` hand-off with its virtual time and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::pacing::{Pacing, WINDOW};
use super::*;
use crate::host::state::{TenantState, TenantView};
use crate::store::crypt::{Keyring, MasterKey};
use crate::store::memory::MemoryStore;
use crate::store::{Store, SystemClock};
use crate::wa::client::MessageStatus;

/// Records published events.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<TenantEvent>>);

impl EventSink for Recorder {
    fn publish(&self, _tenant: &TenantId, event: TenantEvent) {
        self.0.lock().unwrap().push(event);
    }
}

/// One recorded hand-off: message id, recipient, virtual time.
type Sent = (String, String, tokio::time::Instant);

struct Fixture {
    store: Arc<dyn Store>,
    tenant: TenantId,
    view: watch::Sender<TenantView>,
    sent: Arc<Mutex<Vec<Sent>>>,
    /// Events the outbox published.
    events: Arc<Recorder>,
    /// Typing indicators shown: recipient, virtual time.
    typed: Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
    /// Answers to give, in order; `Ok` once the script is empty.
    script: Arc<Mutex<VecDeque<Result<(), CommandError>>>>,
    /// Whether the fake server acks what was handed over (default yes).
    acks: Arc<std::sync::atomic::AtomicBool>,
    cancel: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    limits: Limits,
}

impl Fixture {
    async fn new() -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(
            Arc::new(Keyring::new(&MasterKey::generate(), &[])),
            Arc::new(SystemClock),
        ));
        let tenant = TenantId::new("ob").unwrap();
        let lease = store.acquire_lease(&tenant, "h", Duration::from_secs(3600)).await.unwrap();
        let mut v = TenantView::new(tenant.clone(), TenantState::Backoff);
        v.me = Some("15550001:2@s.whatsapp.net".into());
        v.lease_epoch = Some(lease.epoch);
        v.lease_holder = Some(lease.holder.clone());
        let (view, _) = watch::channel(v);
        Self {
            store,
            tenant,
            view,
            sent: Arc::default(),
            events: Arc::default(),
            typed: Arc::default(),
            script: Arc::default(),
            acks: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            cancel: CancellationToken::new(),
            tasks: tokio::task::JoinSet::new(),
            limits: Limits::default(),
        }
    }

    /// Starts an outbox (from what the store holds now) and a fake actor answering its
    /// hand-offs.
    async fn start(&mut self, pacing: Pacing) -> OutboxHandle {
        let items = self.store.list_outbox(&self.tenant).await.unwrap();
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<TenantCommand>(8);
        let (handle, task) = start(
            Arc::clone(&self.store),
            OutboxStart {
                tenant: self.tenant.clone(),
                items,
                pacing,
                limits: self.limits,
                commands: cmd_tx,
                view: self.view.subscribe(),
                cancel: self.cancel.clone(),
                events: Arc::clone(&self.events) as Arc<dyn EventSink>,
            },
        );
        self.tasks.spawn(task);
        let (sent, script, typed) =
            (Arc::clone(&self.sent), Arc::clone(&self.script), Arc::clone(&self.typed));
        let acks = self.acks.clone();
        let server = handle.clone();
        self.tasks.spawn(async move {
            while let Some(cmd) = cmd_rx.recv().await {
                match cmd {
                    TenantCommand::SendText { id, to, reply, .. } => {
                        let answer = script.lock().unwrap().pop_front().unwrap_or(Ok(()));
                        sent.lock().unwrap().push((id.clone(), to.clone(), tokio::time::Instant::now()));
                        let ok = answer.is_ok();
                        let _ = reply.send(answer);
                        // The server acks what reached it (unless a test holds the acks back).
                        if ok && acks.load(std::sync::atomic::Ordering::SeqCst) {
                            server.status(StatusUpdate {
                                id,
                                chat: to,
                                from: None,
                                status: MessageStatus::Sent,
                            });
                        }
                    }
                    TenantCommand::Typing { to, composing: true, reply } => {
                        typed.lock().unwrap().push((to, tokio::time::Instant::now()));
                        let _ = reply.send(Ok(()));
                    }
                    _ => {}
                }
            }
        });
        handle
    }

    fn set_state(&self, state: TenantState) {
        self.view.send_modify(|v| v.state = state);
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Waits (virtual time) until `n` hand-offs were recorded; fails after `limit`.
    async fn wait_sent(&self, n: usize, limit: Duration) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let s = self.sent();
            if s.len() >= n {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} sends", s.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the outbox and the fake actor (the SIGTERM-like path flushes pending writes).
    async fn stop(&mut self) {
        self.cancel.cancel();
        self.view.send_modify(|_| {});
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.cancel = CancellationToken::new();
    }
}

async fn status_of(h: &OutboxHandle, id: &str) -> SendStatus {
    h.get(id.to_owned()).await.unwrap().unwrap_or_else(|| panic!("{id} unknown")).status
}

/// Waits (virtual time) until message `id` reaches `want`.
async fn wait_status(h: &OutboxHandle, id: &str, want: SendStatus) {
    for _ in 0..600 {
        if status_of(h, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never reached {want:?} (now {:?})", status_of(h, id).await);
}

/// Issue #8: a burst of 100 queued messages under the default pacing — nothing during the
/// warm-up after connect, no two hand-offs closer than the minimum gap, never more than 20 in
/// any 60-second window, queue order kept, each id handed over exactly once.
#[tokio::test(start_paused = true)]
async fn burst_of_100_is_paced() {
    let mut f = Fixture::new().await;
    let rules = Pacing::default();
    let h = f.start(rules).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        let m = h.enqueue(format!("1555{i:07}"), format!("hello {i}")).await.unwrap();
        assert_eq!(m.status, SendStatus::Queued);
        ids.push(m.id);
    }
    // Queued while not connected: nothing goes out, however long we wait.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(f.sent().is_empty(), "sent while disconnected");
    let connected_at = tokio::time::Instant::now();
    f.set_state(TenantState::Connected);
    let sent = f.wait_sent(100, Duration::from_secs(3600)).await;
    assert_eq!(sent.iter().map(|s| s.0.clone()).collect::<Vec<_>>(), ids, "order and exactly-once");
    assert!(sent.iter().all(|s| s.2 >= connected_at + rules.warmup), "a send during warm-up");
    for w in sent.windows(2) {
        assert!(w[1].2 - w[0].2 >= rules.gap_min, "gap {:?}", w[1].2 - w[0].2);
    }
    for (i, s) in sent.iter().enumerate() {
        let n = sent[i..].iter().take_while(|u| u.2 < s.2 + WINDOW).count();
        assert!(n <= 20, "{n} sends within a minute from send {i}");
    }
    wait_status(&h, &ids[99], SendStatus::Sent).await;
    f.stop().await;
}

/// Queued messages survive a restart of the outbox (SIGTERM-like stop and crash alike: the
/// item was durable before its id was returned), and after the restart each id is handed to
/// the actor exactly once, with the id assigned at enqueue.
#[tokio::test(start_paused = true)]
async fn queued_messages_survive_restart() {
    let mut f = Fixture::new().await;
    let fast = Pacing {
        gap_min: Duration::ZERO,
        gap_max: Duration::ZERO,
        warmup: Duration::ZERO,
        ..Pacing::default()
    };
    let h = f.start(fast).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(h.enqueue("15550002".into(), format!("m{i}")).await.unwrap().id);
    }
    f.stop().await;
    assert!(f.sent().is_empty());
    let h = f.start(fast).await;
    assert_eq!(status_of(&h, &ids[0]).await, SendStatus::Queued, "status survived");
    f.set_state(TenantState::Connected);
    let sent = f.wait_sent(5, Duration::from_secs(60)).await;
    assert_eq!(sent.iter().map(|s| s.0.clone()).collect::<Vec<_>>(), ids);
    for id in &ids {
        wait_status(&h, id, SendStatus::Sent).await;
    }
    // A second restart finds them sent: nothing is handed over again.
    f.stop().await;
    let h = f.start(fast).await;
    f.set_state(TenantState::Connected);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(f.sent().len(), 5, "resent after restart");
    assert_eq!(status_of(&h, &ids[4]).await, SendStatus::Sent);
    f.stop().await;
}

/// Transient refusals are retried with the same id (never a second id on the wire) and
/// backoff; an invalid recipient fails the message for good and the queue moves on.
#[tokio::test(start_paused = true)]
async fn retries_reuse_the_id_and_invalid_recipient_fails() {
    let mut f = Fixture::new().await;
    f.script.lock().unwrap().extend([
        Err(CommandError::NotConnected),
        Err(CommandError::Store("down".into())),
        Ok(()),
        Err(CommandError::InvalidRecipient("no such user".into())),
    ]);
    let fast = Pacing {
        gap_min: Duration::ZERO,
        gap_max: Duration::ZERO,
        warmup: Duration::ZERO,
        ..Pacing::default()
    };
    let h = f.start(fast).await;
    f.set_state(TenantState::Connected);
    let a = h.enqueue("15550003".into(), "a".into()).await.unwrap().id;
    let b = h.enqueue("15550004".into(), "b".into()).await.unwrap().id;
    let c = h.enqueue("15550005".into(), "c".into()).await.unwrap().id;
    let sent = f.wait_sent(5, Duration::from_secs(120)).await;
    let order: Vec<&str> = sent.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(order, [a.as_str(), &a, &a, &b, &c]);
    assert!(sent[1].2 > sent[0].2 && sent[2].2 > sent[1].2, "retries wait (backoff)");
    wait_status(&h, &b, SendStatus::Failed).await;
    let v = h.get(b.clone()).await.unwrap().unwrap();
    assert!(v.reason.unwrap_or_default().contains("invalid recipient"));
    let published = f.events.0.lock().unwrap().clone();
    assert!(
        matches!(published.as_slice(), [TenantEvent::MessageStatus(u)] if u.id == b && matches!(u.status, MessageStatus::Failed(_))),
        "{published:?}"
    );
    wait_status(&h, &a, SendStatus::Sent).await;
    assert_eq!(h.get(a).await.unwrap().unwrap().attempts, 3);
    f.stop().await;
}

/// Statuses reported by the connection move the message forward (never back) and survive a
/// restart.
#[tokio::test(start_paused = true)]
async fn statuses_apply_and_persist() {
    let mut f = Fixture::new().await;
    let fast = Pacing {
        gap_min: Duration::ZERO,
        gap_max: Duration::ZERO,
        warmup: Duration::ZERO,
        ..Pacing::default()
    };
    let h = f.start(fast).await;
    f.set_state(TenantState::Connected);
    let id = h.enqueue("15550006".into(), "x".into()).await.unwrap().id;
    f.wait_sent(1, Duration::from_secs(10)).await;
    let st = |s: MessageStatus| StatusUpdate { id: id.clone(), chat: "c".into(), from: None, status: s };
    h.status(st(MessageStatus::Delivered));
    wait_status(&h, &id, SendStatus::Delivered).await;
    h.status(st(MessageStatus::Sent));
    h.status(st(MessageStatus::Read));
    wait_status(&h, &id, SendStatus::Read).await;
    f.stop().await;
    let h = f.start(fast).await;
    assert_eq!(status_of(&h, &id).await, SendStatus::Read);
    f.stop().await;
}

/// Without a lease nothing is queued (`NotReady`), an unlinked tenant is `NotLinked`, and
/// another holder's tenant is `LeaseHeld`.
#[tokio::test(start_paused = true)]
async fn enqueue_needs_link_and_lease() {
    let mut f = Fixture::new().await;
    let h = f.start(Pacing::default()).await;
    f.view.send_modify(|v| v.lease_epoch = None);
    assert_eq!(h.enqueue("15550007".into(), "x".into()).await, Err(OutboxError::NotReady));
    f.view.send_modify(|v| v.me = None);
    assert_eq!(h.enqueue("15550007".into(), "x".into()).await, Err(OutboxError::NotLinked));
    f.view.send_modify(|v| {
        v.state = TenantState::HeldElsewhere;
        v.lease_holder = Some("other".into());
    });
    assert_eq!(
        h.enqueue("15550007".into(), "x".into()).await,
        Err(OutboxError::LeaseHeld { holder: "other".into() })
    );
    assert!(f.store.list_outbox(&f.tenant).await.unwrap().is_empty());
    f.stop().await;
}

/// With typing presence on, each message is preceded by a typing indicator to the same chat,
/// shown for `typing_time(text)` before the hand-off; with it off, none is shown.
#[tokio::test(start_paused = true)]
async fn typing_precedes_each_message() {
    let mut f = Fixture::new().await;
    let rules = Pacing { warmup: Duration::ZERO, typing: true, ..Pacing::default() };
    let h = f.start(rules).await;
    f.set_state(TenantState::Connected);
    for to in ["15550011", "15550012"] {
        h.enqueue(to.into(), "a short text".into()).await.unwrap();
    }
    let sent = f.wait_sent(2, Duration::from_secs(60)).await;
    let typed = f.typed.lock().unwrap().clone();
    assert_eq!(typed.len(), 2);
    for (s, t) in sent.iter().zip(&typed) {
        assert_eq!(s.1, t.0, "typing shown in another chat");
        assert!(s.2 - t.1 >= typing_time("a short text"), "typed for {:?}", s.2 - t.1);
    }
    f.stop().await;
    let mut g = Fixture::new().await;
    let h = g.start(Pacing { warmup: Duration::ZERO, ..Pacing::default() }).await;
    g.set_state(TenantState::Connected);
    h.enqueue("15550013".into(), "x".into()).await.unwrap();
    g.wait_sent(1, Duration::from_secs(60)).await;
    assert!(g.typed.lock().unwrap().is_empty());
    g.stop().await;
}

/// A message handed to the connection but never acked by the server (the process died or the
/// socket dropped right after the hand-off) stays `queued` and goes again with the same id
/// after a reconnect and after a restart, until the server acks it.
#[tokio::test(start_paused = true)]
async fn unacked_hand_off_is_resent_with_the_same_id() {
    let mut f = Fixture::new().await;
    let fast = Pacing {
        gap_min: Duration::ZERO,
        gap_max: Duration::ZERO,
        warmup: Duration::ZERO,
        ..Pacing::default()
    };
    f.acks.store(false, std::sync::atomic::Ordering::SeqCst);
    let h = f.start(fast).await;
    f.set_state(TenantState::Connected);
    let id = h.enqueue("15550009".into(), "x".into()).await.unwrap().id;
    f.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!(status_of(&h, &id).await, SendStatus::Queued);
    // Reconnect: the unacked message goes again, same id.
    f.set_state(TenantState::Backoff);
    tokio::time::sleep(Duration::from_millis(10)).await;
    f.view.send_modify(|v| {
        v.state = TenantState::Connected;
        v.reconnects += 1;
    });
    let s = f.wait_sent(2, Duration::from_secs(10)).await;
    assert_eq!(s[1].0, id);
    // Restart from the store: still queued, goes again; this time the server acks it.
    f.stop().await;
    f.acks.store(true, std::sync::atomic::Ordering::SeqCst);
    let h = f.start(fast).await;
    let s = f.wait_sent(3, Duration::from_secs(10)).await;
    assert_eq!(s[2].0, id);
    wait_status(&h, &id, SendStatus::Sent).await;
    f.stop().await;
}

/// The per-tenant caps hold before anything is written: by count (`Full`) and by bytes of
/// queued text (`FullBytes`); refused messages leave nothing in the store; a message that goes
/// out frees its space.
#[tokio::test]
async fn caps_by_count_and_bytes() {
    let mut f = Fixture::new().await;
    f.limits.outbox_max_messages = 3;
    f.limits.outbox_max_bytes = 10;
    let ob = f.start(Pacing::default()).await;
    ob.enqueue("15550002222@s.whatsapp.net".into(), "aaaa".into()).await.unwrap();
    ob.enqueue("15550002222@s.whatsapp.net".into(), "bbbb".into()).await.unwrap();
    let r = ob.enqueue("15550002222@s.whatsapp.net".into(), "ccc".into()).await;
    assert_eq!(r.unwrap_err(), OutboxError::FullBytes { max_bytes: 10 }, "8 + 3 bytes > 10");
    ob.enqueue("15550002222@s.whatsapp.net".into(), "cc".into()).await.unwrap();
    let r = ob.enqueue("15550002222@s.whatsapp.net".into(), "d".into()).await;
    assert_eq!(r.unwrap_err(), OutboxError::Full { max: 3 });
    assert_eq!(f.store.list_outbox(&f.tenant).await.unwrap().len(), 3, "refused messages are not stored");
}
