//! The seeded cycle plan: which disruption each cycle applies and how long the gateway sleeps.
//! Pure (no IO): the same seed gives the same plan, so a failing run can be replayed.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

/// How one cycle stops the running gateway and starts the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Disruption {
    /// SIGTERM, wait for the exit, sleep, start a new process (scale to zero and wake).
    Sigterm,
    /// SIGKILL, sleep, start a new process (crash, OOM kill, host loss).
    Sigkill,
    /// Start the new process first, then SIGTERM the old one (rolling deploy).
    OverlapSigterm,
    /// Start the new process first, then SIGKILL the old one (deploy whose old instance dies hard).
    OverlapSigkill,
}

impl Disruption {
    /// Every kind, in report order.
    pub const ALL: [Self; 4] = [Self::Sigterm, Self::Sigkill, Self::OverlapSigterm, Self::OverlapSigkill];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sigterm => "sigterm",
            Self::Sigkill => "sigkill",
            Self::OverlapSigterm => "overlap_sigterm",
            Self::OverlapSigkill => "overlap_sigkill",
        }
    }

    /// True when the new process starts before the old one is signalled.
    pub fn is_overlap(self) -> bool {
        matches!(self, Self::OverlapSigterm | Self::OverlapSigkill)
    }

    /// True when the old process is killed without a flush.
    pub fn is_kill(self) -> bool {
        matches!(self, Self::Sigkill | Self::OverlapSigkill)
    }
}

/// One planned cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cycle {
    /// The disruption.
    pub disruption: Disruption,
    /// How long no process runs (non-overlap kinds), in ms: the container's "sleep".
    pub asleep_ms: u64,
    /// Which tenants send messages this cycle: a seed for the traffic picker.
    pub traffic_seed: u64,
}

/// Longest simulated sleep between two processes.
pub const MAX_ASLEEP_MS: u64 = 400;

/// The plan of `cycles` cycles for `seed`: the four kinds in equal shares, shuffled, with a
/// random sleep for each.
pub fn plan(seed: u64, cycles: usize) -> Vec<Cycle> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds: Vec<Disruption> =
        (0..cycles).map(|i| Disruption::ALL[i % Disruption::ALL.len()]).collect();
    // Fisher-Yates with the seeded rng (rand's shuffle would do the same; spelled out so the
    // plan stays stable across rand versions).
    for i in (1..kinds.len()).rev() {
        let j = rng.gen_range(0..=i);
        kinds.swap(i, j);
    }
    kinds
        .into_iter()
        .map(|disruption| Cycle {
            disruption,
            asleep_ms: if disruption.is_overlap() { 0 } else { rng.gen_range(0..=MAX_ASLEEP_MS) },
            traffic_seed: rng.r#gen(),
        })
        .collect()
}

/// How many cycles of each kind `plan` holds.
pub fn mix(plan: &[Cycle]) -> std::collections::BTreeMap<Disruption, usize> {
    let mut m = std::collections::BTreeMap::new();
    for c in plan {
        *m.entry(c.disruption).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same seed gives the same plan; another seed a different one; shares are equal.
    #[test]
    fn plan_is_seeded_and_balanced() {
        let a = plan(7, 200);
        assert_eq!(a, plan(7, 200));
        assert_ne!(a, plan(8, 200));
        let m = mix(&a);
        assert!(Disruption::ALL.iter().all(|k| m.get(k) == Some(&50)), "{m:?}");
        assert!(a.iter().all(|c| c.asleep_ms <= MAX_ASLEEP_MS));
        assert!(a.iter().filter(|c| c.disruption.is_overlap()).all(|c| c.asleep_ms == 0));
    }

    /// A short plan still contains every kind (the CI run's 20 cycles cover all four).
    #[test]
    fn short_plan_covers_every_kind() {
        let m = mix(&plan(1, 20));
        assert_eq!(m.len(), 4, "{m:?}");
    }
}
