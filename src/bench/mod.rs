//! `staylinked bench scale`: cold start, memory, SIGTERM flush and delta latency of the real
//! gateway binary with N linked tenants, next to N Baileys sockets on the same simulator.
//!
//! Runs an in-process simulator, provisions N linked tenants straight into the store (no QR
//! round trips, [`provision`]), then measures `staylinked run` as a child process
//! ([`gateway`]): an empty-store baseline, the N-tenant cold start + idle RSS + SIGTERM, and a
//! prekey-upload burst for the delta-latency histogram; then the store's own commit latency
//! (the `bench store` code) and the Baileys side ([`baileys`]). Writes
//! `scale.json` + `scale.md` ([`report`]).
//!
//! Measures only; asserts nothing (tests never assert timings). Not used by the gateway.

pub mod baileys;
pub mod gateway;
pub mod messages;
pub mod provision;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;

use self::gateway::{Gateway, GatewaySpec};
use self::report::{ColdStart, DeltaLatency, Machine, Report, Shutdown, Spread, StoreWrite, Target};
use crate::sim::{Server, SimConfig};
use crate::store::crypt::{Keyring, MasterKey};
use crate::store::{Store, StoreError, SystemClock};

#[expect(clippy::disallowed_methods, reason = "a benchmark measures wall time; nothing else reads it")]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Which store the gateway runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum ScaleStore {
    /// A redb file in the work directory (the default store of `staylinked run`).
    Embedded,
    /// The Firestore emulator at `FIRESTORE_EMULATOR_HOST` (a fresh project per run).
    Firestore,
}

impl ScaleStore {
    fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Firestore => "firestore (emulator)",
        }
    }
}

/// Parameters of `bench scale`.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Linked tenants (and Baileys sockets).
    pub tenants: usize,
    /// Store backend.
    pub store: ScaleStore,
    /// Idle settle before each RSS reading.
    pub idle: Duration,
    /// The `staylinked` binary to run as the gateway (default: this executable).
    pub bin: PathBuf,
    /// Directory for `scale.json` / `scale.md` (and a `scale-work/` scratch dir, removed after).
    pub out_dir: PathBuf,
    /// `STAYLINKED_CONNECT_STAGGER_MS` for the gateway (0: every tenant at once, like the Baileys
    /// side).
    pub connect_stagger_ms: u64,
    /// `STAYLINKED_HYDRATE_CONCURRENCY` for the gateway.
    pub hydrate_concurrency: usize,
    /// Run the Baileys side (`scripts/interop/bench-baileys.mjs`).
    pub baileys: bool,
    /// The Baileys script.
    pub baileys_script: PathBuf,
    /// Run the delta-latency burst.
    pub deltas: bool,
    /// Longest wait for all tenants to come up, per phase.
    pub timeout: Duration,
    /// The command line, for the report.
    pub command: String,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            tenants: 1000,
            store: ScaleStore::Embedded,
            idle: Duration::from_secs(30),
            bin: PathBuf::from("staylinked"),
            out_dir: PathBuf::from("bench-reports"),
            connect_stagger_ms: 0,
            hydrate_concurrency: 16,
            baileys: true,
            baileys_script: PathBuf::from("scripts/interop/bench-baileys.mjs"),
            deltas: true,
            timeout: Duration::from_secs(120),
            command: String::new(),
        }
    }
}

/// The bench could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The simulator did not start.
    #[error("simulator failed to start")]
    Sim(#[source] crate::sim::StartError),
    /// The store could not be opened.
    #[error("cannot open the {what} store")]
    Store {
        /// Which store.
        what: &'static str,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Provisioning failed.
    #[error("provisioning tenants failed")]
    Provision(#[source] provision::ProvisionError),
    /// Files or processes.
    #[error("{what} failed")]
    Io {
        /// What was attempted.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The gateway did not come up.
    #[error("gateway {0}")]
    Gateway(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// Where the gateway's store lives in one phase.
struct StoreSite {
    env: Vec<(String, String)>,
}

/// Everything the phases share.
struct Setup {
    sim: Server,
    master_key: String,
    work: PathBuf,
    project: String,
    o: ScaleOptions,
}

impl Setup {
    fn site(&self, label: &str) -> StoreSite {
        let mut env = Vec::new();
        match self.o.store {
            ScaleStore::Embedded => {
                env.push(("STAYLINKED_STORE".into(), "embedded".into()));
                let path = self.work.join(format!("{label}.redb"));
                env.push(("STAYLINKED_STORE_PATH".into(), path.display().to_string()));
            }
            ScaleStore::Firestore => {
                env.push(("STAYLINKED_STORE".into(), "firestore".into()));
                env.push(("GOOGLE_CLOUD_PROJECT".into(), format!("{}-{label}", self.project)));
                if let Ok(h) = std::env::var("FIRESTORE_EMULATOR_HOST") {
                    env.push(("FIRESTORE_EMULATOR_HOST".into(), h));
                }
            }
        }
        StoreSite { env }
    }

    async fn open_store(&self, label: &str) -> Result<Arc<dyn Store>, BenchError> {
        let ring = Arc::new(Keyring::new(
            &MasterKey::from_base64(&self.master_key)
                .map_err(|source| BenchError::Store { what: "bench", source })?,
            &[],
        ));
        let clock = Arc::new(SystemClock);
        let store: Arc<dyn Store> = match self.o.store {
            ScaleStore::Embedded => Arc::new(
                crate::store::embedded::EmbeddedStore::open(
                    &self.work.join(format!("{label}.redb")),
                    ring,
                    clock,
                )
                .await
                .map_err(|source| BenchError::Store { what: "embedded", source })?,
            ),
            #[cfg(feature = "firestore")]
            ScaleStore::Firestore => {
                let opts =
                    crate::store::firestore::FirestoreOptions::new(format!("{}-{label}", self.project));
                Arc::new(
                    crate::store::firestore::FirestoreStore::connect(opts, ring, clock)
                        .await
                        .map_err(|source| BenchError::Store { what: "firestore", source })?,
                )
            }
            #[cfg(not(feature = "firestore"))]
            ScaleStore::Firestore => {
                return Err(BenchError::Store {
                    what: "firestore",
                    source: StoreError::Config { detail: "built without the `firestore` feature".into() },
                });
            }
        };
        Ok(store)
    }

    fn spawn(&self, site: &StoreSite, label: &str) -> Result<Gateway, BenchError> {
        let root: String = self.sim.root_public_key().iter().map(|b| format!("{b:02x}")).collect();
        let mut env = site.env.clone();
        env.extend([
            ("STAYLINKED_WA_URL".to_owned(), self.sim.ws_url()),
            ("STAYLINKED_WA_ROOT_KEY".to_owned(), root),
            ("STAYLINKED_MASTER_KEY".to_owned(), self.master_key.clone()),
            ("STAYLINKED_HOLDER_ID".to_owned(), "staylinked-bench".to_owned()),
            ("STAYLINKED_CONNECT_STAGGER_MS".to_owned(), self.o.connect_stagger_ms.to_string()),
            ("STAYLINKED_HYDRATE_CONCURRENCY".to_owned(), self.o.hydrate_concurrency.to_string()),
            ("STAYLINKED_SHUTDOWN_DEADLINE".to_owned(), "8s".to_owned()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
        ]);
        let spec = GatewaySpec {
            bin: self.o.bin.clone(),
            env,
            port: gateway::free_port().map_err(io("picking a port"))?,
            api_key: "bench-key-0123456789abcdef0123456789".to_owned(),
            log: self.work.join(format!("gateway-{label}.log")),
        };
        Gateway::spawn(&spec).map_err(io(format!("starting {}", self.o.bin.display())))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Fills `times[prev..count]` with `at` (the k-th tenant arrived by `at`).
fn arrive(times: &mut Vec<f64>, count: u64, n: usize, at: f64) {
    let count = usize::try_from(count).unwrap_or(usize::MAX).min(n);
    while times.len() < count {
        times.push(at);
    }
}

/// Polls the gateway until every tenant is ready (or the timeout), recording when each
/// count was reached.
async fn watch_cold_start(gw: &mut Gateway, n: usize, timeout: Duration) -> ColdStart {
    let mut c = ColdStart::default();
    let (mut hydrated, mut logged_in, mut ready) = (Vec::new(), Vec::new(), Vec::new());
    let poll = Duration::from_millis(10);
    loop {
        let at = gw.started.elapsed();
        if at > timeout || !gw.is_running() {
            break;
        }
        // `/readyz` until hydration is done, then `/metrics` alone (it has the connected gauge
        // too): every request walks the tenant registry, so the observer stays cheap.
        if c.hydrated_all_ms.is_none()
            && let Some(r) = gw.readyz().await
        {
            let t = ms(gw.started.elapsed());
            c.http_up_ms.get_or_insert(t);
            arrive(&mut hydrated, r.hydrated, n, t);
            if r.hydrated as usize >= n && r.ready {
                c.hydrated_all_ms.get_or_insert(t);
            }
        }
        if let Some(m) = gw.metrics().await {
            let t = ms(gw.started.elapsed());
            let connected = gateway::metric(&m, "staylinked_tenants{state=\"connected\"}").unwrap_or(0.0);
            arrive(&mut logged_in, connected as u64, n, t);
            let drained = gateway::metric(&m, "staylinked_offline_drained_total").unwrap_or(0.0);
            arrive(&mut ready, drained as u64, n, t);
            if let Some(h) = gateway::metric(&m, "staylinked_hydration_seconds").filter(|h| *h > 0.0) {
                c.hydration_metric_ms = Some(h * 1000.0);
            }
        }
        if ready.len() >= n && logged_in.len() >= n && c.hydrated_all_ms.is_some() {
            c.complete = true;
            break;
        }
        tokio::time::sleep(poll).await;
    }
    c.logged_in = Spread::from_times(logged_in);
    c.ready = Spread::from_times(ready);
    c
}

/// Waits until `/readyz` says ready (the baseline with no tenants).
async fn wait_ready(gw: &mut Gateway, timeout: Duration) -> Result<(), BenchError> {
    loop {
        if gw.started.elapsed() > timeout || !gw.is_running() {
            return Err(BenchError::Gateway("did not become ready (see its log in the work dir)".into()));
        }
        if gw.readyz().await.is_some_and(|r| r.ready) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn connected(gw: &Gateway) -> u64 {
    gw.readyz().await.map_or(0, |r| r.connected)
}

fn machine(load_at_start: f64) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default(),
        mem_mib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        load_at_start,
        load_at_end: load(),
        at: crate::types::rfc3339_utc(crate::host::clock::unix_secs()),
    }
}

fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Runs the whole bench and writes the report.
///
/// # Errors
/// [`BenchError`] when the simulator, the store, provisioning or the gateway fail outright
/// (partial figures are still reported where they exist).
pub async fn run(o: ScaleOptions) -> Result<(Report, Vec<PathBuf>), BenchError> {
    let load_at_start = load();
    let n = o.tenants;
    let work = o.out_dir.join("scale-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    let sim = Server::start(SimConfig::new(([127, 0, 0, 1], 0).into())).await.map_err(BenchError::Sim)?;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let setup = Setup {
        sim,
        master_key: base64::engine::general_purpose::STANDARD.encode(key),
        project: format!("staylinked-bench-{}", crate::host::clock::unix_ms()),
        work: work.clone(),
        o: o.clone(),
    };
    let mut report = Report {
        tenants: n,
        idle_s: o.idle.as_secs_f64(),
        connect_stagger_ms: o.connect_stagger_ms,
        hydrate_concurrency: o.hydrate_concurrency,
        command: o.command.clone(),
        ..Report::default()
    };
    report.gateway.store = o.store.name().to_owned();

    // 1. Provision N linked tenants into the store and the simulator.
    tracing::info!(tenants = n, store = o.store.name(), "provisioning");
    let t = now();
    let tenants = {
        let store = setup.open_store("tenants").await?;
        let r =
            provision::provision(&setup.sim, &store, n, "1555", 32).await.map_err(BenchError::Provision)?;
        // The embedded file must be closed before the gateway opens it.
        drop(store);
        r
    };
    tracing::info!(elapsed_ms = ms(t.elapsed()), "provisioned");

    // 2. Baseline: the same binary with an empty store.
    {
        let site = setup.site("empty");
        if o.store == ScaleStore::Embedded {
            // Create the empty file with our master key, as the N-tenant store was.
            drop(setup.open_store("empty").await?);
        }
        let mut gw = setup.spawn(&site, "baseline")?;
        wait_ready(&mut gw, o.timeout).await?;
        tokio::time::sleep(o.idle).await;
        report.gateway.rss_baseline_kib = gw.rss_kib().map_or(0, |r| r.0);
        let _ = gw.sigterm(Duration::from_secs(15)).await;
        tracing::info!(rss_kib = report.gateway.rss_baseline_kib, "baseline measured");
    }

    // 3. Cold start with N tenants, idle RSS, SIGTERM.
    let site = setup.site("tenants");
    {
        let mut gw = setup.spawn(&site, "cold-start")?;
        let mut cold = watch_cold_start(&mut gw, n, o.timeout).await;
        tracing::info!(
            ready_all_ms = cold.ready.all_ms,
            logged_in_all_ms = cold.logged_in.all_ms,
            complete = cold.complete,
            "cold start measured"
        );
        tokio::time::sleep(o.idle).await;
        cold.connected_after_idle = connected(&gw).await;
        let (rss, peak) = gw.rss_kib().unwrap_or((0, 0));
        report.gateway.rss_n_kib = rss;
        report.gateway.rss_peak_kib = peak;
        if n > 0 {
            report.gateway.rss_per_tenant_kib =
                (rss.saturating_sub(report.gateway.rss_baseline_kib)) as f64 / n as f64;
        }
        let tenants_now = connected(&gw).await;
        let exit = gw.sigterm(Duration::from_secs(15)).await;
        report.gateway.shutdown =
            Shutdown { tenants: tenants_now, wall_ms: ms(exit.wall), exit_code: exit.code };
        report.gateway.cold_start = cold;
        tracing::info!(rss_kib = rss, shutdown_ms = ms(exit.wall), "idle RSS and SIGTERM measured");
    }

    // 4. Delta latency: every device's server-side prekeys are gone, so each tenant uploads a
    //    batch at login (2 persisted deltas each: the prekeys, then the advanced creds).
    if o.deltas && n > 0 {
        let phones: Vec<String> = tenants.iter().map(|t| t.phone.clone()).collect();
        let _ = setup
            .sim
            .with_sim(move |s, _| {
                for p in &phones {
                    let _ = s.set_server_prekeys(p, 0);
                }
            })
            .await;
        let mut gw = setup.spawn(&site, "deltas")?;
        let want = 2 * n as u64;
        let mut text = String::new();
        while gw.started.elapsed() < o.timeout && gw.is_running() {
            if let Some(m) = gw.metrics().await {
                let count = gateway::metric(&m, "staylinked_commit_seconds_count").unwrap_or(0.0) as u64;
                let failures = gateway::metric(&m, "staylinked_commit_failures_total").unwrap_or(0.0) as u64;
                text = m;
                if count + failures >= want {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let buckets = gateway::histogram(&text, "staylinked_commit_seconds");
        let count = gateway::metric(&text, "staylinked_commit_seconds_count").unwrap_or(0.0);
        let sum = gateway::metric(&text, "staylinked_commit_seconds_sum").unwrap_or(0.0);
        let tenants_now = connected(&gw).await;
        let exit = gw.sigterm(Duration::from_secs(15)).await;
        let d = DeltaLatency {
            workload: format!("{n} tenants each persisting a 30-prekey upload + creds at login, all at once"),
            commits: count as u64,
            failures: gateway::metric(&text, "staylinked_commit_failures_total").unwrap_or(0.0) as u64,
            p50_ms: gateway::histogram_quantile_ms(&buckets, 0.50),
            p99_ms: gateway::histogram_quantile_ms(&buckets, 0.99),
            mean_ms: (count > 0.0).then(|| sum / count * 1000.0),
            shutdown: Some(Shutdown { tenants: tenants_now, wall_ms: ms(exit.wall), exit_code: exit.code }),
        };
        tracing::info!(p50_ms = ?d.p50_ms, p99_ms = ?d.p99_ms, commits = d.commits, "delta latency measured");
        report.gateway.delta = Some(d);
    }

    // 5. The store's own commit latency, same backend, same machine, same run.
    report.store_write = Some(store_write(&o, &work).await);

    // 6. Baileys on the same simulator.
    if o.baileys {
        match baileys::unavailable(&o.baileys_script) {
            Some(why) => report.baileys_error = Some(why),
            None => {
                let run = baileys::BaileysRun {
                    script: o.baileys_script.clone(),
                    ws_url: setup.sim.ws_url(),
                    admin_url: setup.sim.admin_url(),
                    sockets: n,
                    idle: o.idle,
                    phone_prefix: "1556".into(),
                    dir: work.join("baileys"),
                };
                tracing::info!(sockets = n, "running Baileys");
                match tokio::task::spawn_blocking(move || baileys::run(&run)).await {
                    Ok(Ok(b)) => report.baileys = Some(b),
                    Ok(Err(e)) => report.baileys_error = Some(e),
                    Err(e) => report.baileys_error = Some(format!("baileys runner panicked: {e}")),
                }
            }
        }
    } else {
        report.baileys_error = Some("skipped (--no-baileys)".into());
    }
    setup.sim.shutdown().await;

    report.machine = machine(load_at_start);
    derive(&mut report);
    let files = write(&report, &o.out_dir).map_err(io("writing the report"))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok((report, files))
}

async fn store_write(o: &ScaleOptions, work: &std::path::Path) -> StoreWrite {
    use crate::store::bench::{BenchBackend, BenchOptions};
    let backend = match o.store {
        ScaleStore::Embedded => BenchBackend::Embedded,
        ScaleStore::Firestore => BenchBackend::FirestoreEmulator,
    };
    let r = crate::store::bench::run(BenchOptions {
        tenants: 20,
        commits: 300,
        backends: vec![backend],
        out_dir: work.join("store-bench"),
        ..BenchOptions::default()
    })
    .await;
    let b = r.results.first();
    let c = b.and_then(|b| b.commit.as_ref());
    StoreWrite {
        backend: o.store.name().to_owned(),
        commits: c.map_or(0, |c| c.n),
        p50_ms: c.map_or(0.0, |c| c.p50_ms),
        p99_ms: c.map_or(0.0, |c| c.p99_ms),
        error: b.and_then(|b| b.error.clone()),
    }
}

/// Ratios and the target table.
fn derive(r: &mut Report) {
    let g = &r.gateway;
    let c = &g.cold_start;
    let b = r.baileys.as_ref();
    r.cold_start_ratio = b.filter(|_| c.ready.all_ms > 0.0).map(|b| b.ready.all_ms / c.ready.all_ms);
    r.memory_ratio =
        b.filter(|_| g.rss_per_tenant_kib > 0.0).map(|b| b.rss_per_socket_kib / g.rss_per_tenant_kib);
    let all = c.complete && c.ready.count as usize >= r.tenants;
    let mut t = vec![
        Target {
            name: format!("{} tenants hydrated + connected (ready)", r.tenants),
            target: "≤ 1500 ms".into(),
            measured: if all {
                format!("{:.0} ms", c.ready.all_ms)
            } else {
                format!("only {} ready", c.ready.count)
            },
            met: Some(all && c.ready.all_ms <= 1500.0),
        },
        Target {
            name: "cold start vs Baileys (same sim, same run)".into(),
            target: "≥ 4x faster".into(),
            measured: r.cold_start_ratio.map_or_else(|| "no Baileys figure".into(), |x| format!("{x:.1}x")),
            met: r.cold_start_ratio.map(|x| x >= 4.0 && all),
        },
        Target {
            name: "RSS per idle connected tenant".into(),
            target: "≤ 50 KiB".into(),
            measured: format!("{:.1} KiB", g.rss_per_tenant_kib),
            met: Some(g.rss_per_tenant_kib <= 50.0),
        },
        Target {
            name: format!("SIGTERM → exit with {} tenants", g.shutdown.tenants),
            target: "≤ 1000 ms, exit 0".into(),
            measured: format!(
                "{:.0} ms, exit {}",
                g.shutdown.wall_ms,
                g.shutdown.exit_code.map_or_else(|| "by kill".to_owned(), |c| c.to_string())
            ),
            met: Some(g.shutdown.wall_ms <= 1000.0 && g.shutdown.exit_code == Some(0)),
        },
    ];
    let store_p99 = r.store_write.as_ref().filter(|w| w.error.is_none() && w.commits > 0).map(|w| w.p99_ms);
    let delta_p99 = g.delta.as_ref().and_then(|d| d.p99_ms);
    t.push(Target {
        name: "delta durability p99 vs the store's own commit p99".into(),
        target: "≤ 2x".into(),
        measured: match (delta_p99, store_p99) {
            (Some(d), Some(s)) => format!("{d:.2} ms vs {s:.2} ms ({:.1}x)", d / s.max(1e-9)),
            _ => "missing".into(),
        },
        met: match (delta_p99, store_p99) {
            (Some(d), Some(s)) => Some(d <= 2.0 * s),
            _ => None,
        },
    });
    t.push(Target {
        name: "messages/s end to end through the simulator".into(),
        target: "(lead adds)".into(),
        measured: "not measured yet".into(),
        met: None,
    });
    r.targets = t;
}

fn write(r: &Report, dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("scale.json");
    std::fs::write(&json, serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?)?;
    let md = dir.join("scale.md");
    std::fs::write(&md, report::markdown(r))?;
    Ok(vec![json, md])
}
