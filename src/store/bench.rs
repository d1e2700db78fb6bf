//! Store benchmark behind `staylinked bench store`: commit latency (p50/p99) of a typical delta
//! batch and hydration throughput of many tenants, per backend (memory, embedded redb file,
//! Firestore emulator). Writes `store-bench.json` and `store-bench.md` into the output dir.
//! Measures only; asserts nothing (no timed assertions in tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde::Serialize;

use super::conformance::{sample_creds, tenant};
use super::crypt::{Keyring, MasterKey};
use super::embedded::EmbeddedStore;
#[cfg(feature = "firestore")]
use super::firestore::{FirestoreOptions, FirestoreStore};
use super::memory::MemoryStore;
use super::{Delta, DeltaBatch, KeyRef, SecretBytes, Store, StoreError, SystemClock};

/// Which backend to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BenchBackend {
    /// In-memory.
    Memory,
    /// redb file in a temp dir under the output dir.
    Embedded,
    /// The emulator at `FIRESTORE_EMULATOR_HOST` (skipped when unset).
    FirestoreEmulator,
}

/// Benchmark parameters.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Tenants to hydrate.
    pub tenants: usize,
    /// One-time prekeys per tenant.
    pub prekeys: u32,
    /// Sessions per tenant.
    pub sessions: u32,
    /// Commits timed for the latency figures.
    pub commits: usize,
    /// `hydrate_all` concurrency (also used to populate).
    pub concurrency: usize,
    /// Backends to run.
    pub backends: Vec<BenchBackend>,
    /// Where the report goes.
    pub out_dir: PathBuf,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            tenants: 1000,
            prekeys: 30,
            sessions: 5,
            commits: 300,
            concurrency: 16,
            backends: vec![BenchBackend::Memory, BenchBackend::Embedded, BenchBackend::FirestoreEmulator],
            out_dir: PathBuf::from("bench-reports"),
        }
    }
}

/// Commit latency figures (milliseconds).
#[derive(Debug, Clone, Serialize)]
pub struct CommitFigures {
    /// Commits timed.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// Hydration figures.
#[derive(Debug, Clone, Serialize)]
pub struct HydrateFigures {
    /// Tenants hydrated.
    pub tenants: usize,
    /// Keys per tenant (prekeys + sessions + signed prekey).
    pub keys_per_tenant: usize,
    /// Wall time of `hydrate_all`.
    pub seconds: f64,
    /// Tenants per second.
    pub tenants_per_sec: f64,
    /// Time to populate (not part of the figure; for context).
    pub populate_seconds: f64,
}

/// One backend's results.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    /// Backend.
    pub backend: BenchBackend,
    /// Commit latency, if measured.
    pub commit: Option<CommitFigures>,
    /// Hydration throughput, if measured.
    pub hydrate: Option<HydrateFigures>,
    /// Why the backend was skipped or failed.
    pub error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Parameters used.
    pub options: BenchOptions,
    /// Per-backend results.
    pub results: Vec<BackendReport>,
    /// Files written (JSON, Markdown); empty if writing failed.
    pub files: Vec<PathBuf>,
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time; nothing else reads it
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    let idx = (sorted.len().saturating_mul(p) / 100).min(sorted.len().saturating_sub(1));
    sorted.get(idx).copied().map_or(0.0, ms)
}

fn tenant_batch(seed: usize, prekeys: u32, sessions: u32) -> DeltaBatch {
    let mut b = DeltaBatch::new().with(Delta::CredsPut(Box::new(sample_creds((seed % 251) as u8))));
    b.push(Delta::KeyPut { key: KeyRef::SignedPreKey(1), value: SecretBytes::new(vec![3; 100]) });
    for i in 0..prekeys {
        b.push(Delta::KeyPut { key: KeyRef::PreKey(i + 1), value: SecretBytes::new(vec![1; 70]) });
    }
    for i in 0..sessions {
        b.push(Delta::KeyPut {
            key: KeyRef::Session(format!("1555{seed:06}{i}.0:1")),
            value: SecretBytes::new(vec![2; 1200]),
        });
    }
    b
}

async fn open(backend: BenchBackend, dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    let ring = Arc::new(Keyring::new(&MasterKey::generate(), &[]));
    Ok(match backend {
        BenchBackend::Memory => Arc::new(MemoryStore::new(ring, Arc::new(SystemClock))),
        BenchBackend::Embedded => {
            let path = dir.join(format!("bench-{}.redb", MasterKey::generate().key_id()));
            Arc::new(EmbeddedStore::open(&path, ring, Arc::new(SystemClock)).await?)
        }
        #[cfg(not(feature = "firestore"))]
        BenchBackend::FirestoreEmulator => {
            return Err(StoreError::Config { detail: "built without the `firestore` feature".into() });
        }
        #[cfg(feature = "firestore")]
        BenchBackend::FirestoreEmulator => {
            if std::env::var("FIRESTORE_EMULATOR_HOST").map_or(true, |v| v.is_empty()) {
                return Err(StoreError::Config {
                    detail: "FIRESTORE_EMULATOR_HOST is unset; skipped".into(),
                });
            }
            let project = format!("sl-bench-{}", MasterKey::generate().key_id());
            Arc::new(
                FirestoreStore::connect(FirestoreOptions::new(project), ring, Arc::new(SystemClock)).await?,
            )
        }
    })
}

async fn bench_commit(store: &dyn Store, o: &BenchOptions) -> Result<CommitFigures, StoreError> {
    let t = tenant("bench-commit");
    let lease = store.acquire_lease(&t, "bench", Duration::from_secs(600)).await?;
    let prekeys = u32::try_from(o.commits).unwrap_or(u32::MAX).saturating_add(1);
    store.commit(&t, lease.fence(), &tenant_batch(0, prekeys, 1)).await?;
    let mut creds = sample_creds(0);
    let mut times = Vec::with_capacity(o.commits);
    for i in 0..o.commits {
        creds.next_pre_key_id = creds.next_pre_key_id.wrapping_add(1);
        // The typical hot-path batch: one session advanced, one prekey consumed, creds counter.
        let b = DeltaBatch::new()
            .with(Delta::KeyPut {
                key: KeyRef::Session("15550000000.0:1".into()),
                value: SecretBytes::new(vec![i as u8; 1200]),
            })
            .with(Delta::KeyDelete(KeyRef::PreKey(u32::try_from(i).unwrap_or(0) + 1)))
            .with(Delta::CredsPut(Box::new(creds.clone())));
        let start = now();
        store.commit(&t, lease.fence(), &b).await?;
        times.push(start.elapsed());
    }
    times.sort();
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len().max(1) as f64;
    Ok(CommitFigures {
        n: times.len(),
        p50_ms: percentile(&times, 50),
        p99_ms: percentile(&times, 99),
        mean_ms: mean,
    })
}

async fn bench_hydrate(store: &dyn Store, o: &BenchOptions) -> Result<HydrateFigures, StoreError> {
    let start = now();
    let results: Vec<Result<(), StoreError>> = futures::stream::iter(0..o.tenants)
        .map(|i| async move {
            let t = tenant(&format!("bench-{i:05}"));
            let lease = store.acquire_lease(&t, "bench", Duration::from_secs(600)).await?;
            store.commit(&t, lease.fence(), &tenant_batch(i, o.prekeys, o.sessions)).await
        })
        .buffer_unordered(o.concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let populate = start.elapsed();
    let start = now();
    let mut stream = store.hydrate_all(o.concurrency).await?;
    let mut n = 0usize;
    while let Some((_, r)) = stream.next().await {
        r?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(HydrateFigures {
        tenants: n,
        keys_per_tenant: o.prekeys as usize + o.sessions as usize + 1,
        seconds: secs,
        tenants_per_sec: if secs > 0.0 { n as f64 / secs } else { 0.0 },
        populate_seconds: populate.as_secs_f64(),
    })
}

/// Runs the benchmark and writes `store-bench.json` + `store-bench.md` into `out_dir`.
pub async fn run(options: BenchOptions) -> Report {
    let tmp = options.out_dir.join("tmp");
    let mut results = Vec::new();
    for &backend in &options.backends {
        let mut r = BackendReport { backend, commit: None, hydrate: None, error: None };
        // Each phase gets a fresh store, so hydration counts exactly the populated tenants.
        match open(backend, &tmp).await {
            Err(e) => r.error = Some(e.to_string()),
            Ok(store) => match bench_commit(store.as_ref(), &options).await {
                Ok(c) => r.commit = Some(c),
                Err(e) => r.error = Some(format!("commit: {e}")),
            },
        }
        if r.error.is_none() {
            match open(backend, &tmp).await {
                Err(e) => r.error = Some(e.to_string()),
                Ok(store) => match bench_hydrate(store.as_ref(), &options).await {
                    Ok(h) => r.hydrate = Some(h),
                    Err(e) => r.error = Some(format!("hydrate: {e}")),
                },
            }
        }
        tracing::info!(backend = ?backend, error = ?r.error, "store bench backend done");
        results.push(r);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let mut report = Report { options, results, files: Vec::new() };
    match write(&report) {
        Ok(files) => report.files = files,
        Err(e) => tracing::error!(error = %e, "writing the store bench report failed"),
    }
    report
}

fn write(report: &Report) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&report.options.out_dir)?;
    let json = report.options.out_dir.join("store-bench.json");
    std::fs::write(&json, serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?)?;
    let md = report.options.out_dir.join("store-bench.md");
    std::fs::write(&md, markdown(report))?;
    Ok(vec![json, md])
}

/// The report as a Markdown table.
pub fn markdown(report: &Report) -> String {
    let o = &report.options;
    let mut s = format!(
        "## Store benchmark\n\nCommit batch: 1 session put (1.2 KB) + 1 prekey delete + creds update; {} commits.\n\
         Hydration: {} tenants × (creds + {} prekeys + {} sessions + 1 signed prekey), concurrency {}.\n\n\
         | backend | commit p50 (ms) | commit p99 (ms) | hydrate (s) | tenants/s | note |\n|---|---|---|---|---|---|\n",
        o.commits, o.tenants, o.prekeys, o.sessions, o.concurrency
    );
    for r in &report.results {
        let c = r.commit.as_ref();
        let h = r.hydrate.as_ref();
        s.push_str(&format!(
            "| {:?} | {} | {} | {} | {} | {} |\n",
            r.backend,
            c.map_or("-".into(), |c| format!("{:.3}", c.p50_ms)),
            c.map_or("-".into(), |c| format!("{:.3}", c.p99_ms)),
            h.map_or("-".into(), |h| format!("{:.2}", h.seconds)),
            h.map_or("-".into(), |h| format!("{:.0}", h.tenants_per_sec)),
            r.error.clone().unwrap_or_default()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny run on memory and embedded produces figures and writes both report files.
    #[tokio::test]
    async fn small_run_writes_report() {
        let dir = tempfile::tempdir().unwrap();
        let o = BenchOptions {
            tenants: 5,
            prekeys: 3,
            sessions: 2,
            commits: 5,
            concurrency: 2,
            backends: vec![BenchBackend::Memory, BenchBackend::Embedded],
            out_dir: dir.path().to_path_buf(),
        };
        let r = run(o).await;
        assert_eq!(r.results.len(), 2);
        for b in &r.results {
            assert!(b.error.is_none(), "{:?}", b.error);
            assert_eq!(b.hydrate.as_ref().map(|h| h.tenants), Some(5));
            assert_eq!(b.commit.as_ref().map(|c| c.n), Some(5));
        }
        assert!(dir.path().join("store-bench.json").exists() && dir.path().join("store-bench.md").exists());
    }
}
