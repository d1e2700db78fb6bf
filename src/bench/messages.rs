//! `staylinked bench messages`: end-to-end messaging through the simulator. One hosted tenant
//! (the full host: actor, client, Signal, store commits) and a simulated phone that is a Signal
//! peer of its own. Measures send → delivered latency (the tenant hands the text to its
//! connection until the phone has decrypted it) one message at a time, then messages/s for a
//! burst in each direction (tenant → phone, phone → tenant until every message is durable in
//! the tenant's store inbox). Writes `messages.json` and `messages.md`.
//!
//! The outbox's anti-ban pacing is bypassed (the bench measures the pipeline, not the limiter).
//! Arrival is detected by polling the simulator every millisecond, so latencies carry ±1 ms.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::host::state::{CommandError, TenantCommand};
use crate::host::{Host, clock};
use crate::sim::{Server, SimConfig};
use crate::store::crypt::{Keyring, MasterKey};
use crate::store::{Store, SystemClock};
use crate::types::TenantId;

/// Options of `bench messages`.
#[derive(Debug, Clone)]
pub struct MessagesOptions {
    /// Messages sent one at a time for the latency figures.
    pub latency_samples: usize,
    /// Messages in each burst.
    pub burst: usize,
    /// Use the embedded store (fsync per commit) instead of the memory store.
    pub embedded: bool,
    /// Directory for messages.json / messages.md.
    pub out: PathBuf,
}

/// What `bench messages` measured.
#[derive(Debug, Clone, Serialize)]
pub struct MessagesReport {
    /// Store used by the tenant.
    pub store: &'static str,
    /// Samples of the latency run.
    pub latency_samples: usize,
    /// Send → delivered p50 (ms).
    pub latency_p50_ms: f64,
    /// Send → delivered p99 (ms).
    pub latency_p99_ms: f64,
    /// Messages per burst.
    pub burst: usize,
    /// Tenant → phone, messages/s (first hand-off → last decrypted at the phone).
    pub tenant_to_phone_per_s: f64,
    /// Phone → tenant, messages/s (first send → last durable in the tenant inbox).
    pub phone_to_tenant_per_s: f64,
    /// Decrypt failures at the phone plus retry receipts seen by the simulator (must be 0).
    pub failures: u64,
    /// CPUs of the machine.
    pub cpus: usize,
}

/// Errors of the messaging bench.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagesBenchError {
    /// A step failed.
    #[error("{0}")]
    Step(String),
    /// A report file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn step(e: impl std::fmt::Display) -> MessagesBenchError {
    MessagesBenchError::Step(e.to_string())
}

const TENANT: &str = "bench-msg";
const OWN: &str = "15550200001";
const PEER: &str = "15550200002";
/// Upper bound of any wait.
const WAIT: Duration = Duration::from_secs(120);

/// Runs the bench and writes the report files.
///
/// # Errors
/// [`MessagesBenchError`] when a step fails or times out.
pub async fn run(o: &MessagesOptions) -> Result<(MessagesReport, Vec<PathBuf>), MessagesBenchError> {
    let sim =
        Server::start(SimConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))).await.map_err(step)?;
    let ring = Arc::new(Keyring::new(&MasterKey::generate(), &[]));
    let dir = std::env::temp_dir().join(format!("staylinked-bench-messages-{}", std::process::id()));
    let store: Arc<dyn Store> = if o.embedded {
        std::fs::create_dir_all(&dir).map_err(step)?;
        Arc::new(
            crate::store::embedded::EmbeddedStore::open(&dir.join("s.redb"), ring, Arc::new(SystemClock))
                .await
                .map_err(step)?,
        )
    } else {
        Arc::new(crate::store::memory::MemoryStore::new(ring, Arc::new(SystemClock)))
    };
    let config = Config::for_simulator(sim.ws_url(), sim.root_public_key(), "bench-messages");
    let host = Host::start(config, Arc::clone(&store)).await.map_err(step)?;
    let result = measure(o, &sim, &host, &store).await;
    host.shutdown().await;
    sim.shutdown().await;
    if o.embedded {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result?;
    let files = write(&report, &o.out)?;
    Ok((report, files))
}

async fn measure(
    o: &MessagesOptions,
    sim: &Server,
    host: &Host,
    store: &Arc<dyn Store>,
) -> Result<MessagesReport, MessagesBenchError> {
    let id = TenantId::new(TENANT).map_err(step)?;
    host.registry().create(id.clone(), None).await.map_err(step)?;
    crate::demo::link_by_qr(sim, host.registry(), &id, OWN, WAIT).await.map_err(step)?;
    sim.with_sim(|s, _| s.add_phone(PEER, "peer")).await.map_err(step)?.map_err(step)?;
    let handle = host.registry().get(&id).ok_or_else(|| step("tenant vanished"))?;

    let send = |n: usize| {
        let commands = handle.commands.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            let msg_id = format!("3EB0BE{n:014}");
            let cmd = TenantCommand::SendText {
                id: msg_id.clone(),
                to: PEER.into(),
                text: format!("bench {n}"),
                reply,
            };
            commands.send(cmd).await.map_err(step)?;
            rx.await.map_err(step)?.map_err(|e: CommandError| step(e))?;
            Ok::<String, MessagesBenchError>(msg_id)
        }
    };
    let phone_count = || async {
        sim.with_sim(|s, _| s.phone_inbox(PEER).map(|v| v.len())).await.map_err(step)?.map_err(step)
    };
    // Warm-up: the first message builds the sessions (usync, bundles, pkmsg).
    send(0).await?;
    wait_for(|| async { Ok(phone_count().await? >= 1) }).await?;

    // Latency, one at a time.
    let mut lat = Vec::with_capacity(o.latency_samples);
    for n in 1..=o.latency_samples {
        let before = phone_count().await?;
        let t0 = clock::now();
        send(n).await?;
        wait_for(|| async { Ok(phone_count().await? > before) }).await?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);

    // Burst tenant → phone.
    let base = phone_count().await?;
    let t0 = clock::now();
    for n in 0..o.burst {
        send(100_000 + n).await?;
    }
    wait_for(|| async { Ok(phone_count().await? >= base + o.burst) }).await?;
    let out_rate = o.burst as f64 / t0.elapsed().as_secs_f64();

    // Burst phone → tenant (durable in the tenant's inbox).
    let inbox_base = store.list_inbox(&id).await.map_err(step)?.len();
    let own_user = format!("{OWN}@s.whatsapp.net");
    let t0 = clock::now();
    for n in 0..o.burst {
        let (to, text) = (own_user.clone(), format!("in {n}"));
        sim.with_sim(move |s, now| s.phone_send(now, PEER, &to, &text)).await.map_err(step)?.map_err(step)?;
    }
    wait_for(|| async { Ok(store.list_inbox(&id).await.map_err(step)?.len() >= inbox_base + o.burst) })
        .await?;
    let in_rate = o.burst as f64 / t0.elapsed().as_secs_f64();

    let s = sim.with_sim(|s, _| s.stats()).await.map_err(step)?;
    Ok(MessagesReport {
        store: if o.embedded { "embedded" } else { "memory" },
        latency_samples: o.latency_samples,
        latency_p50_ms: percentile(&lat, 0.50),
        latency_p99_ms: percentile(&lat, 0.99),
        burst: o.burst,
        tenant_to_phone_per_s: out_rate,
        phone_to_tenant_per_s: in_rate,
        failures: s.phone_decrypt_failures + s.retry_receipts,
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    })
}

async fn wait_for<F, Fut>(mut f: F) -> Result<(), MessagesBenchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, MessagesBenchError>>,
{
    let deadline = clock::now() + WAIT;
    while !f().await? {
        if clock::now() > deadline {
            return Err(step("timed out waiting for messages to arrive"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// The Markdown table of a report.
pub fn markdown(r: &MessagesReport) -> String {
    format!(
        "## Messaging end to end through the simulator ({store} store, {cpus} CPUs)\n\n\
         | | |\n|---|---|\n\
         | send → delivered (decrypted at the phone), p50 / p99 over {n} sequential messages | {p50:.1} / {p99:.1} ms |\n\
         | tenant → phone, burst of {b} | {out:.0} messages/s |\n\
         | phone → tenant (durable in the inbox), burst of {b} | {inn:.0} messages/s |\n\
         | decrypt failures + retry receipts | {f} |\n",
        store = r.store,
        cpus = r.cpus,
        n = r.latency_samples,
        p50 = r.latency_p50_ms,
        p99 = r.latency_p99_ms,
        b = r.burst,
        out = r.tenant_to_phone_per_s,
        inn = r.phone_to_tenant_per_s,
        f = r.failures,
    )
}

fn write(r: &MessagesReport, out: &Path) -> Result<Vec<PathBuf>, MessagesBenchError> {
    let w = |path: PathBuf, body: String| {
        std::fs::write(&path, body)
            .map_err(|source| MessagesBenchError::Write { path: path.clone(), source })?;
        Ok::<PathBuf, MessagesBenchError>(path)
    };
    std::fs::create_dir_all(out)
        .map_err(|source| MessagesBenchError::Write { path: out.to_path_buf(), source })?;
    let json = serde_json::to_string_pretty(r).map_err(step)?;
    Ok(vec![w(out.join("messages.json"), json)?, w(out.join("messages.md"), markdown(r))?])
}
