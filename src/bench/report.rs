//! The scale bench report: plain serialisable data plus its Markdown rendering
//! (`bench-reports/scale.{json,md}`). No measuring here.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Per-tenant latency figures (milliseconds from the start of the measured interval).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spread {
    /// How many tenants reached the point.
    pub count: u64,
    /// Median tenant.
    pub p50_ms: f64,
    /// 99th-percentile tenant.
    pub p99_ms: f64,
    /// The last tenant (the total).
    pub all_ms: f64,
}

impl Spread {
    /// From per-tenant times (ms, any order); `expected` tenants should have arrived.
    pub fn from_times(mut times: Vec<f64>) -> Self {
        times.sort_by(f64::total_cmp);
        let pick = |p: f64| {
            if times.is_empty() {
                return 0.0;
            }
            let idx = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            times.get(idx).copied().unwrap_or(0.0)
        };
        Self {
            count: times.len() as u64,
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            all_ms: times.last().copied().unwrap_or(0.0),
        }
    }
}

/// The machine the bench ran on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Memory in MiB.
    pub mem_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average when the bench started (other processes share the machine).
    pub load_at_start: f64,
    /// 1-minute load average when it ended.
    pub load_at_end: f64,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// Cold start of the gateway process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ColdStart {
    /// Process spawn → first HTTP answer.
    pub http_up_ms: Option<f64>,
    /// Process spawn → every tenant hydrated (`/readyz` `hydrated` = N).
    pub hydrated_all_ms: Option<f64>,
    /// The gateway's own `staylinked_hydration_seconds`, in ms.
    pub hydration_metric_ms: Option<f64>,
    /// Per tenant: process spawn → logged in (`<success>`; `/readyz` `connected`).
    pub logged_in: Spread,
    /// Per tenant: process spawn → ready (login + offline backlog marker; the Baileys-equivalent
    /// point; `staylinked_offline_drained_total`).
    pub ready: Spread,
    /// Tenants connected after the idle settle.
    pub connected_after_idle: u64,
    /// Whether every tenant got there before the timeout.
    pub complete: bool,
}

/// SIGTERM → exit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Shutdown {
    /// Connected tenants when the signal was sent.
    pub tenants: u64,
    /// Wall time from SIGTERM to process exit.
    pub wall_ms: f64,
    /// Exit code (`None`: did not exit by itself in time).
    pub exit_code: Option<i32>,
}

/// Delta durability latency (core `Persist` → store ack), from the gateway's commit histogram.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeltaLatency {
    /// What produced the deltas.
    pub workload: String,
    /// Commits observed.
    pub commits: u64,
    /// Commits that failed.
    pub failures: u64,
    /// Median (interpolated inside the histogram bucket).
    pub p50_ms: Option<f64>,
    /// 99th percentile (interpolated inside the histogram bucket).
    pub p99_ms: Option<f64>,
    /// Mean (exact: histogram sum / count).
    pub mean_ms: Option<f64>,
    /// SIGTERM right after the burst.
    pub shutdown: Option<Shutdown>,
}

/// The store's own commit latency (the `bench store` code, same backend, same run).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreWrite {
    /// Backend.
    pub backend: String,
    /// Sequential commits timed.
    pub commits: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Why it is missing, if it is.
    pub error: Option<String>,
}

/// The gateway's side of the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatewayReport {
    /// Store backend the gateway ran on.
    pub store: String,
    /// Cold start with N tenants.
    pub cold_start: ColdStart,
    /// RSS of the gateway with 0 tenants after the idle settle (KiB).
    pub rss_baseline_kib: u64,
    /// RSS with N connected tenants after the idle settle (KiB).
    pub rss_n_kib: u64,
    /// Peak RSS during the N-tenant run (KiB).
    pub rss_peak_kib: u64,
    /// (RSS at N − baseline) / N, in KiB.
    pub rss_per_tenant_kib: f64,
    /// SIGTERM with N idle connected tenants.
    pub shutdown: Shutdown,
    /// Delta latency during a prekey-upload burst.
    pub delta: Option<DeltaLatency>,
}

/// Baileys' side (written by `scripts/interop/bench-baileys.mjs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BaileysReport {
    /// Baileys version.
    #[serde(default)]
    pub baileys_version: String,
    /// Node version.
    #[serde(default)]
    pub node_version: String,
    /// Sockets started.
    #[serde(default)]
    pub sockets: u64,
    /// Per socket: restore start → `open`.
    #[serde(default)]
    pub open: Spread,
    /// Per socket: restore start → `open` + offline marker (ready).
    #[serde(default)]
    pub ready: Spread,
    /// Sockets that closed or failed before ready.
    #[serde(default)]
    pub failed: u64,
    /// Node process start → Baileys imported (not in the cold-start figures).
    #[serde(default)]
    pub import_ms: f64,
    /// RSS with 0 sockets (KiB).
    #[serde(default)]
    pub rss_baseline_kib: u64,
    /// RSS with N open sockets after the idle settle (KiB).
    #[serde(default)]
    pub rss_n_kib: u64,
    /// (RSS at N − RSS at 0) / N, KiB.
    #[serde(default)]
    pub rss_per_socket_kib: f64,
    /// (heapUsed at N − at 0) / N, KiB.
    #[serde(default)]
    pub heap_per_socket_kib: f64,
    /// Idle settle before the RSS reading (s).
    #[serde(default)]
    pub idle_s: f64,
}

/// One target line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// What.
    pub name: String,
    /// The target, as text.
    pub target: String,
    /// The measurement, as text.
    pub measured: String,
    /// Met? `None`: not measured.
    pub met: Option<bool>,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Tenants (and Baileys sockets).
    pub tenants: usize,
    /// Idle settle before RSS readings (s).
    pub idle_s: f64,
    /// Connect stagger the gateway ran with (ms per tenant).
    pub connect_stagger_ms: u64,
    /// Hydration concurrency the gateway ran with.
    pub hydrate_concurrency: usize,
    /// The machine.
    pub machine: Machine,
    /// The gateway.
    pub gateway: GatewayReport,
    /// The store's own write latency.
    pub store_write: Option<StoreWrite>,
    /// Baileys (absent when skipped).
    pub baileys: Option<BaileysReport>,
    /// Why Baileys was skipped or failed.
    pub baileys_error: Option<String>,
    /// Cold-start ratio Baileys ready (all) / gateway ready (all).
    pub cold_start_ratio: Option<f64>,
    /// Memory ratio Baileys per socket / gateway per tenant.
    pub memory_ratio: Option<f64>,
    /// Messages per second end to end through the simulator: not measured yet (the lead adds
    /// it once message routing lands).
    pub messages_per_sec: Option<f64>,
    /// Targets and whether they were met.
    pub targets: Vec<Target>,
    /// The command that produced the report.
    pub command: String,
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// The report as Markdown (the README's Performance table is pasted from this).
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let g = &r.gateway;
    let m = &r.machine;
    let _ = writeln!(s, "## Scale benchmark: {} tenants\n", r.tenants);
    let _ = writeln!(s, "Command: `{}`  ", r.command);
    let _ = writeln!(
        s,
        "Machine: {} CPUs ({}), {} MiB, Linux {}; load average {:.2} at start, {:.2} at end; {}.  ",
        m.cpus, m.cpu_model, m.mem_mib, m.kernel, m.load_at_start, m.load_at_end, m.at
    );
    let _ = writeln!(
        s,
        "Gateway: release binary as a child process, store `{}`, connect stagger {} ms, hydrate \
         concurrency {}; both sides against the same in-process `staylinked sim`; RSS after {:.0} s idle.\n",
        g.store, r.connect_stagger_ms, r.hydrate_concurrency, r.idle_s
    );
    let b = r.baileys.as_ref();
    let _ = writeln!(
        s,
        "| measure | staylinked | Baileys {} | ratio |",
        b.map_or("-", |b| b.baileys_version.as_str())
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let c = &g.cold_start;
    let ratio = |ours: f64, theirs: Option<f64>| match theirs {
        Some(t) if ours > 0.0 => format!("{:.1}x", t / ours),
        _ => "-".to_owned(),
    };
    let _ = writeln!(s, "| HTTP up (process start → first answer), ms | {} | - | - |", opt_ms(c.http_up_ms));
    let _ = writeln!(s, "| all hydrated, ms | {} | - | - |", opt_ms(c.hydrated_all_ms));
    let _ = writeln!(
        s,
        "| logged in p50 / p99 / all, ms | {:.0} / {:.0} / {:.0} | {} | - |",
        c.logged_in.p50_ms,
        c.logged_in.p99_ms,
        c.logged_in.all_ms,
        b.map_or("-".into(), |b| format!(
            "{:.0} / {:.0} / {:.0} (open)",
            b.open.p50_ms, b.open.p99_ms, b.open.all_ms
        ))
    );
    let _ = writeln!(
        s,
        "| ready (login + offline marker) p50 / p99 / all, ms | {:.0} / {:.0} / {:.0} | {} | {} |",
        c.ready.p50_ms,
        c.ready.p99_ms,
        c.ready.all_ms,
        b.map_or("-".into(), |b| format!(
            "{:.0} / {:.0} / {:.0}",
            b.ready.p50_ms, b.ready.p99_ms, b.ready.all_ms
        )),
        ratio(c.ready.all_ms, b.map(|b| b.ready.all_ms))
    );
    let _ = writeln!(
        s,
        "| tenants ready / failed | {} / {} | {} | - |",
        c.ready.count,
        r.tenants as u64 - c.ready.count.min(r.tenants as u64),
        b.map_or("-".into(), |b| format!("{} / {}", b.ready.count, b.failed))
    );
    let _ = writeln!(
        s,
        "| RSS baseline → with N, MiB | {:.1} → {:.1} | {} | - |",
        g.rss_baseline_kib as f64 / 1024.0,
        g.rss_n_kib as f64 / 1024.0,
        b.map_or("-".into(), |b| format!(
            "{:.1} → {:.1}",
            b.rss_baseline_kib as f64 / 1024.0,
            b.rss_n_kib as f64 / 1024.0
        ))
    );
    let _ = writeln!(
        s,
        "| RSS per idle connected tenant, KiB | {:.1} | {} | {} |",
        g.rss_per_tenant_kib,
        b.map_or("-".into(), |b| format!("{:.1} (heap {:.1})", b.rss_per_socket_kib, b.heap_per_socket_kib)),
        ratio(g.rss_per_tenant_kib, b.map(|b| b.rss_per_socket_kib))
    );
    let _ = writeln!(
        s,
        "| SIGTERM → exit with {} idle tenants, ms (exit code) | {:.0} ({}) | - | - |",
        g.shutdown.tenants,
        g.shutdown.wall_ms,
        g.shutdown.exit_code.map_or("killed".into(), |c| c.to_string())
    );
    if let Some(d) = &g.delta {
        let _ = writeln!(
            s,
            "| delta durability p50 / p99, ms ({} commits, {}) | {} / {} | - | - |",
            d.commits,
            d.workload,
            opt_ms(d.p50_ms),
            opt_ms(d.p99_ms)
        );
        if let Some(sd) = &d.shutdown {
            let _ = writeln!(
                s,
                "| SIGTERM → exit right after the burst, ms (exit code) | {:.0} ({}) | - | - |",
                sd.wall_ms,
                sd.exit_code.map_or("killed".into(), |c| c.to_string())
            );
        }
    }
    if let Some(w) = &r.store_write {
        let _ = writeln!(
            s,
            "| store's own commit p50 / p99, ms ({} sequential commits, `bench store` batch) | {:.2} / {:.2} | - | - |",
            w.commits, w.p50_ms, w.p99_ms
        );
    }
    let _ = writeln!(s, "| messages/s end to end through the simulator | not measured yet | - | - |");
    if let Some(e) = &r.baileys_error {
        let _ = writeln!(s, "\nBaileys: {e}");
    }
    let _ = writeln!(s, "\n| target | goal | measured | met |\n|---|---|---|---|");
    for t in &r.targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {} | {} |", t.name, t.target, t.measured, met);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles pick the ceil-rank element; the total is the last arrival.
    #[test]
    fn spread_percentiles() {
        let s = Spread::from_times((1..=100).rev().map(f64::from).collect());
        assert_eq!((s.count, s.p50_ms, s.p99_ms, s.all_ms), (100, 50.0, 99.0, 100.0));
        let e = Spread::from_times(vec![]);
        assert_eq!((e.count, e.all_ms), (0, 0.0));
    }

    /// The Markdown always carries the not-yet-measured messages/s row and every target.
    #[test]
    fn markdown_has_rows() {
        let r = Report {
            tenants: 3,
            targets: vec![Target {
                name: "x".into(),
                target: "≤ 1".into(),
                measured: "2".into(),
                met: Some(false),
            }],
            ..Report::default()
        };
        let md = markdown(&r);
        assert!(md.contains("not measured yet"));
        assert!(md.contains("| x | ≤ 1 | 2 | **no** |"));
    }
}
