//! The anti-ban pacing rules as a pure value: a sliding one-minute budget (the "token bucket":
//! at most `per_minute` sends in any 60-second window), a randomised gap between two sends,
//! and a warm-up window after each connect during which nothing is sent.
//!
//! Sans-IO: time and randomness come in as arguments, so a burst of a hundred messages is
//! checked deterministically in microseconds. No tokio, no clock reads, no store access here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window the per-minute budget counts over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Default sends per minute per tenant (the seed notes: "no more than 20–30 per minute").
pub const DEFAULT_PER_MINUTE: u32 = 20;
/// Default shortest gap between two sends ("wait 1–3 seconds between messages, randomised").
pub const DEFAULT_GAP_MIN: Duration = Duration::from_secs(1);
/// Default longest gap between two sends.
pub const DEFAULT_GAP_MAX: Duration = Duration::from_secs(3);
/// Default quiet window after each connect ("no bursts right after connecting").
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(10);
/// Most sends per minute a tenant may configure.
pub const MAX_PER_MINUTE: u32 = 600;
/// Longest gap or warm-up a tenant may configure.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// Pacing rules of one tenant (host defaults, possibly overridden per tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// At most this many sends in any 60-second window (≥ 1).
    pub per_minute: u32,
    /// Shortest gap between two sends.
    pub gap_min: Duration,
    /// Longest gap between two sends (≥ `gap_min`); each gap is uniform in between.
    pub gap_max: Duration,
    /// Nothing is sent for this long after each connect.
    pub warmup: Duration,
    /// Show "typing…" to the recipient before each message.
    pub typing: bool,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            per_minute: DEFAULT_PER_MINUTE,
            gap_min: DEFAULT_GAP_MIN,
            gap_max: DEFAULT_GAP_MAX,
            warmup: DEFAULT_WARMUP,
            typing: false,
        }
    }
}

pub use crate::store::model::PacingOverride;

/// Pacing values out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacingError {
    /// `per_minute` is 0 or above [`MAX_PER_MINUTE`] (caller error: pick a value in range).
    #[error("per_minute must be between 1 and {MAX_PER_MINUTE}, got {0}")]
    PerMinute(u32),
    /// The gap range is inverted (caller error).
    #[error("gap_min ({min_ms} ms) is greater than gap_max ({max_ms} ms)")]
    GapOrder {
        /// Shortest gap asked for.
        min_ms: u64,
        /// Longest gap asked for.
        max_ms: u64,
    },
    /// A gap or the warm-up is longer than [`MAX_PAUSE`] (caller error).
    #[error("{field} must be at most {max_ms} ms")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The limit.
        max_ms: u64,
    },
}

impl Pacing {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`PacingError`] naming the offending value.
    pub fn validate(self) -> Result<Self, PacingError> {
        if self.per_minute == 0 || self.per_minute > MAX_PER_MINUTE {
            return Err(PacingError::PerMinute(self.per_minute));
        }
        let max_ms = ms(MAX_PAUSE);
        for (field, d) in [("gap_max", self.gap_max), ("warmup", self.warmup)] {
            if d > MAX_PAUSE {
                return Err(PacingError::TooLong { field, max_ms });
            }
        }
        if self.gap_min > self.gap_max {
            return Err(PacingError::GapOrder { min_ms: ms(self.gap_min), max_ms: ms(self.gap_max) });
        }
        Ok(self)
    }

    /// These defaults with `o` applied, validated.
    ///
    /// # Errors
    /// [`PacingError`] when the result is out of range.
    pub fn with_override(self, o: &PacingOverride) -> Result<Self, PacingError> {
        Self {
            per_minute: o.per_minute.unwrap_or(self.per_minute),
            gap_min: o.gap_min_ms.map_or(self.gap_min, Duration::from_millis),
            gap_max: o.gap_max_ms.map_or(self.gap_max, Duration::from_millis),
            warmup: o.warmup_ms.map_or(self.warmup, Duration::from_millis),
            typing: o.typing.unwrap_or(self.typing),
        }
        .validate()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The pacing state of one tenant: when the next send may happen.
///
/// Call order: [`Pacer::connected`] / [`Pacer::disconnected`] as the connection changes;
/// [`Pacer::next_send_at`] to learn when to try; [`Pacer::record_send`] after each send the
/// tenant accepted (a refused attempt is not recorded: it never reached the wire). `now` must
/// not go backwards.
#[derive(Debug, Clone)]
pub struct Pacer {
    rules: Pacing,
    /// Times of the sends inside the last [`WINDOW`], oldest first (at most `per_minute`).
    recent: VecDeque<Instant>,
    /// When the last send happened and the gap drawn after it.
    last: Option<(Instant, Duration)>,
    /// When the current connection came up (`None`: not connected, nothing may be sent).
    connected_at: Option<Instant>,
}

impl Pacer {
    /// A pacer with `rules`, not connected.
    pub fn new(rules: Pacing) -> Self {
        Self { rules, recent: VecDeque::new(), last: None, connected_at: None }
    }

    /// The rules in force.
    pub fn rules(&self) -> Pacing {
        self.rules
    }

    /// Replaces the rules (a per-tenant override changed); history is kept.
    pub fn set_rules(&mut self, rules: Pacing) {
        self.rules = rules;
    }

    /// The tenant logged in at `now`: the warm-up window starts. Repeated calls while already
    /// connected keep the first time.
    pub fn connected(&mut self, now: Instant) {
        if self.connected_at.is_none() {
            self.connected_at = Some(now);
        }
    }

    /// The tenant is not logged in: nothing is due until [`Self::connected`].
    pub fn disconnected(&mut self) {
        self.connected_at = None;
    }

    /// Whether the tenant is connected as far as pacing knows.
    pub fn is_connected(&self) -> bool {
        self.connected_at.is_some()
    }

    /// The earliest instant the next send may happen, or `None` while disconnected.
    pub fn next_send_at(&self, now: Instant) -> Option<Instant> {
        let connected_at = self.connected_at?;
        let mut at = connected_at + self.rules.warmup;
        if let Some((last, gap)) = self.last {
            at = at.max(last + gap);
        }
        let limit = usize::try_from(self.rules.per_minute).unwrap_or(usize::MAX).max(1);
        if self.recent.len() >= limit {
            // The send that must leave the window before another fits.
            let idx = self.recent.len() - limit;
            if let Some(t) = self.recent.get(idx) {
                at = at.max(*t + WINDOW);
            }
        }
        Some(at.max(now))
    }

    /// Whether a send may happen at `now`.
    pub fn may_send(&self, now: Instant) -> bool {
        self.next_send_at(now).is_some_and(|at| at <= now)
    }

    /// Records a send at `now`; `jitter` (uniform in `[0, 1)`) picks the gap to the next one.
    pub fn record_send(&mut self, now: Instant, jitter: f64) {
        let span = self.rules.gap_max.saturating_sub(self.rules.gap_min);
        let gap = self.rules.gap_min + span.mul_f64(jitter.clamp(0.0, 1.0));
        self.last = Some((now, gap));
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW) {
            self.recent.pop_front();
        }
        let limit = usize::try_from(self.rules.per_minute).unwrap_or(usize::MAX).max(1);
        while self.recent.len() > limit {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _};

    use super::*;

    /// Drives a burst of `n` queued messages through a pacer with a virtual clock: every send
    /// happens at the earliest allowed instant; returns the send times.
    fn burst(rules: Pacing, n: usize, connect_at: Duration, seed: u64) -> (Instant, Vec<Instant>) {
        let t0 = crate::host::clock::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut p = Pacer::new(rules);
        let mut now = t0;
        assert_eq!(p.next_send_at(now), None, "nothing is due while disconnected");
        now += connect_at;
        p.connected(now);
        let mut sent = Vec::new();
        for _ in 0..n {
            let at = p.next_send_at(now).unwrap();
            assert!(at >= now);
            now = at;
            assert!(p.may_send(now));
            p.record_send(now, rng.r#gen());
            sent.push(now);
        }
        (t0 + connect_at, sent)
    }

    /// A burst of 100 queued messages with the defaults: nothing during warm-up, no two sends
    /// closer than the minimum gap, never more than `per_minute` in any 60-second window, and
    /// the gaps really vary.
    #[test]
    fn burst_of_100_respects_every_rule() {
        let rules = Pacing::default();
        let (connected, sent) = burst(rules, 100, Duration::from_secs(5), 42);
        assert!(sent.iter().all(|t| *t >= connected + rules.warmup), "a send during warm-up");
        for w in sent.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= rules.gap_min, "gap {gap:?} below {:?}", rules.gap_min);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|u| **u < *t + WINDOW).count();
            assert!(in_window <= 20, "{in_window} sends in one minute from send {i}");
        }
        let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().any(|g| *g != gaps[0]), "gaps are randomised");
        // The budget is actually used: 100 messages take at least four full windows.
        assert!(sent[99] - sent[0] >= WINDOW * 4);
    }

    /// A tight budget with no gap: the window, not the gap, limits (5 per minute).
    #[test]
    fn window_limits_without_gap() {
        let rules = Pacing {
            per_minute: 5,
            gap_min: Duration::ZERO,
            gap_max: Duration::ZERO,
            warmup: Duration::ZERO,
            typing: false,
        };
        let (_, sent) = burst(rules, 12, Duration::ZERO, 1);
        assert!(sent[..5].iter().all(|t| *t == sent[0]), "the first five go at once");
        assert_eq!(sent[5] - sent[0], WINDOW);
        assert_eq!(sent[10] - sent[0], WINDOW * 2);
    }

    /// A reconnect restarts the warm-up; a disconnect stops sending.
    #[test]
    fn reconnect_restarts_warmup() {
        let rules = Pacing { warmup: Duration::from_secs(10), ..Pacing::default() };
        let t0 = crate::host::clock::now();
        let mut p = Pacer::new(rules);
        p.connected(t0);
        assert_eq!(p.next_send_at(t0), Some(t0 + Duration::from_secs(10)));
        p.connected(t0 + Duration::from_secs(3));
        assert_eq!(p.next_send_at(t0), Some(t0 + Duration::from_secs(10)), "repeat keeps the first");
        p.disconnected();
        assert!(!p.may_send(t0 + Duration::from_secs(60)));
        let back = t0 + Duration::from_secs(100);
        p.connected(back);
        assert!(!p.may_send(back + Duration::from_secs(9)));
        assert!(p.may_send(back + Duration::from_secs(10)));
    }

    /// Overrides apply field by field and are range-checked.
    #[test]
    fn overrides_validate() {
        let d = Pacing::default();
        let o = PacingOverride { per_minute: Some(5), gap_min_ms: Some(0), ..PacingOverride::default() };
        let p = d.with_override(&o).unwrap();
        assert_eq!((p.per_minute, p.gap_min, p.gap_max), (5, Duration::ZERO, d.gap_max));
        let bad = PacingOverride { per_minute: Some(0), ..PacingOverride::default() };
        assert_eq!(d.with_override(&bad), Err(PacingError::PerMinute(0)));
        let bad = PacingOverride { gap_min_ms: Some(5000), ..PacingOverride::default() };
        assert!(matches!(d.with_override(&bad), Err(PacingError::GapOrder { .. })));
        let bad = PacingOverride { warmup_ms: Some(u64::MAX), ..PacingOverride::default() };
        assert!(matches!(d.with_override(&bad), Err(PacingError::TooLong { .. })));
    }
}
