//! The chaos run's report: what ran, what was measured, what broke. Serialised as JSON and
//! rendered as Markdown (`chaos.json`, `chaos.md`). Data and formatting only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// p50 / p99 / max of a set of durations, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: u64,
    /// 99th percentile (nearest rank).
    pub p99_ms: u64,
    /// Largest.
    pub max_ms: u64,
}

impl Spread {
    /// The spread of `samples` (ms).
    pub fn of(samples: &[u64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_unstable();
        let rank = |q: f64| -> u64 {
            if s.is_empty() {
                return 0;
            }
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "rank of a small vec"
            )]
            let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
            s.get(i).copied().unwrap_or(0)
        };
        Self { n: s.len(), p50_ms: rank(0.50), p99_ms: rank(0.99), max_ms: s.last().copied().unwrap_or(0) }
    }
}

/// Message accounting for one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Accepted by the sender side (phone admin 2xx / gateway API 202).
    pub sent: usize,
    /// Requests whose outcome is unknown (the process died mid-request): 0 or 1 delivery allowed.
    pub unknown: usize,
    /// Delivered exactly once.
    pub delivered: usize,
    /// Accepted but never delivered.
    pub lost: usize,
    /// Delivered more than once.
    pub duplicated: usize,
}

/// Messages both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageReport {
    /// True when traffic ran (`--messages`).
    pub enabled: bool,
    /// Peer phone → tenant (lands in the tenant's durable inbox).
    pub phone_to_tenant: Flow,
    /// Tenant → peer phone (through the gateway's message API).
    pub tenant_to_phone: Flow,
    /// Decrypt failures: messages the simulator's phones could not decrypt plus retry
    /// receipts (a device asking for a resend because it could not decrypt).
    pub decrypt_failures: u64,
    /// Why a direction was not exercised, when one was not.
    pub note: Option<String>,
}

/// What the simulator counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimCounts {
    /// Pairings once every tenant was linked.
    pub pairings_after_link: u64,
    /// Pairings at the end.
    pub pairings_end: u64,
    /// Logins answered with `<success>`.
    pub logins: u64,
    /// WebSocket connections accepted.
    pub connections: u64,
    /// Connections replaced by a newer one (440).
    pub replaced: u64,
    /// Stream errors by code.
    pub stream_errors: BTreeMap<String, u64>,
    /// Streams the simulator ended with `<stream:error><ack/>` because a pushed stanza was not
    /// acked in time (must stay 0).
    pub ack_stream_errors: u64,
    /// Stanzas pushed to companions and not acked yet, at the last check.
    pub unacked: u64,
    /// Message counters of the simulator (`messages_*`, `offline_redelivered`, `phone_*`,
    /// `retry_receipts`), as it reports them.
    pub messages: BTreeMap<String, u64>,
}

/// The machine the run used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Kernel (`uname -sr`).
    pub os: String,
    /// `release` or `debug` build of the driver.
    pub build: String,
}

impl Machine {
    /// Reads the facts of this machine.
    pub fn detect() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let os = std::fs::read_to_string("/proc/sys/kernel/ostype")
            .and_then(|t| {
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|r| format!("{} {}", t.trim(), r.trim()))
            })
            .unwrap_or_else(|_| std::env::consts::OS.to_owned());
        Self {
            cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            cpu_model,
            os,
            build: if cfg!(debug_assertions) { "debug" } else { "release" }.into(),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    /// True when no invariant broke and every planned cycle ran.
    pub ok: bool,
    /// The seed (replay with `--seed`).
    pub seed: u64,
    /// Tenants linked.
    pub tenants: usize,
    /// Store backend.
    pub store: String,
    /// Cycles planned.
    pub cycles_planned: usize,
    /// Cycles completed with every check passing.
    pub cycles_ok: usize,
    /// Cycles per disruption kind (planned).
    pub mix: BTreeMap<String, usize>,
    /// Gateway processes started (link phase included).
    pub processes_started: usize,
    /// SIGTERMs sent and SIGKILLs sent.
    pub sigterms: usize,
    /// SIGKILLs sent.
    pub sigkills: usize,
    /// Overlapping starts (new process running before the old one was signalled).
    pub overlaps: usize,
    /// SIGTERM → exit, per graceful stop.
    pub sigterm_exit: Spread,
    /// Signal to the old process → every tenant `connected` on the new one, per cycle.
    pub recovery: Spread,
    /// Recovery per disruption kind.
    pub recovery_by_kind: BTreeMap<String, Spread>,
    /// Re-pairs (pairings after the link phase).
    pub re_pairs: u64,
    /// Smallest and largest linked-device count over all phones and checks.
    pub devices_per_phone: (usize, usize),
    /// Lease-epoch checks passed (tenant × cycle).
    pub epoch_checks: usize,
    /// Simulator counters.
    pub sim: SimCounts,
    /// Message traffic.
    pub messages: MessageReport,
    /// Store contents checked at the end (creds of the phone's device, lease released).
    pub store_checked: usize,
    /// Every violation, with the cycle it was found in.
    pub violations: Vec<String>,
    /// Wall time of the whole run, s.
    pub elapsed_s: f64,
    /// The machine.
    pub machine: Machine,
    /// Command to replay this run.
    pub replay: String,
    /// Where the per-process logs are.
    pub log_dir: PathBuf,
}

/// Renders the report as Markdown.
pub fn markdown(r: &ChaosReport) -> String {
    let mut s = String::new();
    let verdict = if r.ok { "PASS" } else { "FAIL" };
    s.push_str(&format!(
        "## Chaos: {verdict} — {} tenants × {} cycles ({} store, seed {})\n\n",
        r.tenants, r.cycles_planned, r.store, r.seed
    ));
    s.push_str("| | |\n|---|---|\n");
    let mix: Vec<String> = r.mix.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let rows: Vec<(&str, String)> = vec![
        ("cycles completed", format!("{} / {}", r.cycles_ok, r.cycles_planned)),
        ("mix", mix.join(", ")),
        ("gateway processes started", r.processes_started.to_string()),
        ("SIGTERM / SIGKILL sent", format!("{} / {}", r.sigterms, r.sigkills)),
        ("overlapping starts", r.overlaps.to_string()),
        ("re-pairs", r.re_pairs.to_string()),
        (
            "linked devices per phone (min–max)",
            format!("{}–{}", r.devices_per_phone.0, r.devices_per_phone.1),
        ),
        ("`replaced` (440) events", r.sim.replaced.to_string()),
        ("stream errors", format!("{:?}", r.sim.stream_errors)),
        (
            "ack stream errors / unacked at the end",
            format!("{} / {}", r.sim.ack_stream_errors, r.sim.unacked),
        ),
        ("lease-epoch checks (all increasing)", r.epoch_checks.to_string()),
        ("logins / connections", format!("{} / {}", r.sim.logins, r.sim.connections)),
        ("simulator message counters", format!("{:?}", r.sim.messages)),
        (
            "SIGTERM → exit p50 / p99 / max",
            format!("{} / {} / {} ms", r.sigterm_exit.p50_ms, r.sigterm_exit.p99_ms, r.sigterm_exit.max_ms),
        ),
        (
            "signal → all connected p50 / p99 / max",
            format!("{} / {} / {} ms", r.recovery.p50_ms, r.recovery.p99_ms, r.recovery.max_ms),
        ),
        ("tenants checked in the store at the end", r.store_checked.to_string()),
    ];
    for (k, v) in rows {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    let m = &r.messages;
    if m.enabled {
        for (name, f) in [("phone → tenant", &m.phone_to_tenant), ("tenant → phone", &m.tenant_to_phone)]
        {
            s.push_str(&format!(
                "| messages {name} (sent / delivered / lost / duplicated / unknown) | {} / {} / {} / {} / {} |\n",
                f.sent, f.delivered, f.lost, f.duplicated, f.unknown
            ));
        }
        s.push_str(&format!("| decrypt failures | {} |\n", m.decrypt_failures));
        if let Some(n) = &m.note {
            s.push_str(&format!("| messages note | {n} |\n"));
        }
    } else {
        s.push_str("| messages | not checked (run with `--messages`) |\n");
    }
    s.push_str("\nRecovery by kind (signal → every tenant connected on the new process):\n\n");
    s.push_str("| kind | cycles | p50 | p99 | max |\n|---|---|---|---|---|\n");
    for (k, sp) in &r.recovery_by_kind {
        s.push_str(&format!("| {k} | {} | {} ms | {} ms | {} ms |\n", sp.n, sp.p50_ms, sp.p99_ms, sp.max_ms));
    }
    s.push_str(&format!(
        "\nMachine: {} CPUs, {}, {}; {} build. Wall time {:.0} s.\n\nReplay: `{}`\n",
        r.machine.cpus, r.machine.cpu_model, r.machine.os, r.machine.build, r.elapsed_s, r.replay
    ));
    if !r.violations.is_empty() {
        s.push_str("\nViolations:\n\n");
        for v in &r.violations {
            s.push_str(&format!("- {v}\n"));
        }
    }
    s
}

/// Writes `chaos.json` and `chaos.md` into `dir`; returns their paths.
///
/// # Errors
/// The directory or a file could not be written.
pub fn write(r: &ChaosReport, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("chaos.json");
    let md = dir.join("chaos.md");
    let text = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
    std::fs::write(&json, text + "\n")?;
    std::fs::write(&md, markdown(r))?;
    Ok(vec![json, md])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest-rank percentiles; an empty sample set is all zeros.
    #[test]
    fn spread_percentiles() {
        let s = Spread::of(&(1..=100).collect::<Vec<u64>>());
        assert_eq!((s.n, s.p50_ms, s.p99_ms, s.max_ms), (100, 50, 99, 100));
        assert_eq!(Spread::of(&[]), Spread::default());
        assert_eq!(Spread::of(&[7]).p99_ms, 7);
    }

    /// The Markdown names the verdict and lists violations.
    #[test]
    fn markdown_shows_verdict_and_violations() {
        let mut r = ChaosReport { seed: 3, tenants: 2, ..Default::default() };
        r.violations.push("cycle 4: boom".into());
        let md = markdown(&r);
        assert!(md.contains("FAIL") && md.contains("cycle 4: boom") && md.contains("seed 3"), "{md}");
    }
}
