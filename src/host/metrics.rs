//! Process metrics as plain atomics, rendered as Prometheus text by `GET /metrics`: tenants by
//! state (computed at render time from the registry), reconnects by reason code, commit latency
//! histogram, deltas committed, lease losses, hydration time.
//!
//! No IO and no locking across awaits; a `std::sync::Mutex` guards only the per-code map.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the commit latency histogram buckets. Fine below 25 ms so the
/// scale bench can read delta-latency percentiles off it (`staylinked bench scale`).
pub const COMMIT_BUCKETS: [f64; 21] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters shared by every tenant of one host.
#[derive(Debug, Default)]
pub struct Metrics {
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    commit_count: AtomicU64,
    commit_sum_us: AtomicU64,
    commit_failures: AtomicU64,
    deltas_committed: AtomicU64,
    lease_losses: AtomicU64,
    hydration_ms: AtomicU64,
    pairings: AtomicU64,
    offline_drained: AtomicU64,
    messages_rejected: AtomicU64,
    inbox_full: AtomicU64,
    outbox_full: AtomicU64,
    deletes_finished: AtomicU64,
    reconnects: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    /// Records one commit attempt.
    pub fn observe_commit(&self, took: Duration, ok: bool, deltas: usize) {
        if !ok {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let secs = took.as_secs_f64();
        for (i, le) in COMMIT_BUCKETS.iter().enumerate() {
            if secs <= *le
                && let Some(b) = self.commit_buckets.get(i)
            {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_sum_us.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.deltas_committed.fetch_add(u64::try_from(deltas).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts a reconnect after a disconnect with this code.
    pub fn count_reconnect(&self, code: u16) {
        if let Ok(mut m) = self.reconnects.lock() {
            *m.entry(code).or_default() += 1;
        }
    }

    /// Counts a lost lease.
    pub fn count_lease_loss(&self) {
        self.lease_losses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a completed pairing.
    pub fn count_pairing(&self) {
        self.pairings.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection whose offline backlog was delivered (the `<ib><offline>` marker:
    /// the tenant is fully ready).
    pub fn count_offline_drained(&self) {
        self.offline_drained.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a received message the store rejected for good (`message.failed`).
    pub fn count_message_rejected(&self) {
        self.messages_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a tenant inbox reaching its cap (`tenant.inbox_full`).
    pub fn count_inbox_full(&self) {
        self.inbox_full.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a `POST /messages` refused because the tenant's outbox is at its cap.
    pub fn count_outbox_full(&self) {
        self.outbox_full.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a tenant whose answered `DELETE` was finished after a restart.
    pub fn count_delete_finished(&self) {
        self.deletes_finished.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long cold-start hydration took.
    pub fn set_hydration(&self, took: Duration) {
        self.hydration_ms.store(u64::try_from(took.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Deltas committed so far.
    pub fn deltas_committed(&self) -> u64 {
        self.deltas_committed.load(Ordering::Relaxed)
    }

    /// Commits that failed so far.
    pub fn commit_failures(&self) -> u64 {
        self.commit_failures.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition, with `states` = tenants per state name.
    pub fn render(&self, states: &BTreeMap<&'static str, u64>) -> String {
        let mut o = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(o, "# HELP staylinked_tenants Tenants by lifecycle state.");
        let _ = writeln!(o, "# TYPE staylinked_tenants gauge");
        for (state, n) in states {
            let _ = writeln!(o, "staylinked_tenants{{state=\"{state}\"}} {n}");
        }
        let _ =
            writeln!(o, "# HELP staylinked_reconnects_total Reconnects by the disconnect code before them.");
        let _ = writeln!(o, "# TYPE staylinked_reconnects_total counter");
        if let Ok(m) = self.reconnects.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(o, "staylinked_reconnects_total{{code=\"{code}\"}} {n}");
            }
        }
        let _ = writeln!(o, "# HELP staylinked_commit_seconds Store commit latency.");
        let _ = writeln!(o, "# TYPE staylinked_commit_seconds histogram");
        for (le, b) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(o, "staylinked_commit_seconds_bucket{{le=\"{le}\"}} {}", load(b));
        }
        let count = load(&self.commit_count);
        let _ = writeln!(o, "staylinked_commit_seconds_bucket{{le=\"+Inf\"}} {count}");
        #[expect(clippy::cast_precision_loss, reason = "metrics text; microsecond sums fit f64 well")]
        let sum = load(&self.commit_sum_us) as f64 / 1e6;
        let _ = writeln!(o, "staylinked_commit_seconds_sum {sum}");
        let _ = writeln!(o, "staylinked_commit_seconds_count {count}");
        let counters = [
            ("staylinked_commit_failures_total", "Store commits that failed.", &self.commit_failures),
            ("staylinked_deltas_committed_total", "Store deltas committed.", &self.deltas_committed),
            ("staylinked_lease_losses_total", "Tenant leases lost while connected.", &self.lease_losses),
            ("staylinked_pairings_total", "Devices linked through this host.", &self.pairings),
            (
                "staylinked_offline_drained_total",
                "Connections whose offline backlog was delivered (ready).",
                &self.offline_drained,
            ),
            (
                "staylinked_messages_rejected_total",
                "Received messages the store rejected for good (message.failed).",
                &self.messages_rejected,
            ),
            (
                "staylinked_inbox_full_total",
                "Times a tenant inbox reached its cap (tenant.inbox_full).",
                &self.inbox_full,
            ),
            (
                "staylinked_outbox_full_total",
                "Sends refused because the tenant outbox was at its cap (429 outbox_full).",
                &self.outbox_full,
            ),
            (
                "staylinked_deletes_finished_total",
                "Deleted tenants purged after a restart (DELETE answered before the stop).",
                &self.deletes_finished,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", load(v));
        }
        #[expect(clippy::cast_precision_loss, reason = "metrics text")]
        let hyd = load(&self.hydration_ms) as f64 / 1e3;
        let _ = writeln!(
            o,
            "# HELP staylinked_hydration_seconds Cold-start hydration time.\n# TYPE staylinked_hydration_seconds gauge\nstaylinked_hydration_seconds {hyd}"
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition has every family, cumulative buckets and the per-state gauge.
    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.observe_commit(Duration::from_millis(3), true, 2);
        m.observe_commit(Duration::from_millis(300), true, 1);
        m.observe_commit(Duration::from_millis(1), false, 1);
        m.count_reconnect(428);
        m.count_lease_loss();
        let states = BTreeMap::from([("connected", 2u64), ("error", 1)]);
        let text = m.render(&states);
        assert!(text.contains("staylinked_tenants{state=\"connected\"} 2"));
        assert!(text.contains("staylinked_commit_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("staylinked_commit_seconds_bucket{le=\"0.5\"} 2"));
        assert!(text.contains("staylinked_commit_seconds_count 2"));
        assert!(text.contains("staylinked_deltas_committed_total 3"));
        assert!(text.contains("staylinked_commit_failures_total 1"));
        assert!(text.contains("staylinked_reconnects_total{code=\"428\"} 1"));
        assert!(text.contains("staylinked_lease_losses_total 1"));
    }
}
