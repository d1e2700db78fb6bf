//! `staylinked rekey`: re-seals every stored value under the current master key, tenant by
//! tenant, printing progress, so the keys in `STAYLINKED_MASTER_KEYS_OLD` can be retired.
//!
//! Resumable by construction: [`Store::rekey`] leaves values already under the current key
//! alone and replaces each stale value atomically, so an interrupted run loses nothing and a
//! rerun finishes the job. Never prints a key or a value.

use std::collections::BTreeMap;
use std::io::Write;

use super::{Store, StoreError};

/// Totals of a `rekey` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeySummary {
    /// Tenants visited.
    pub tenants: usize,
    /// Tenants whose rekey failed (store error or a value no key opens).
    pub failed: usize,
    /// Sealed values found.
    pub values: usize,
    /// Values re-sealed by this run.
    pub resealed: usize,
    /// Stale values that changed meanwhile and were left for a rerun.
    pub skipped: usize,
    /// Values found per key id before this run.
    pub by_key_id: BTreeMap<String, usize>,
}

impl RekeySummary {
    /// Whether every value is now under the current key (old keys can be dropped).
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.skipped == 0
    }
}

/// Re-seals every tenant's values under `current_kid` (the ring's current key id), writing
/// one progress line per tenant and a summary to `out`.
///
/// # Errors
/// Listing the tenants failed (per-tenant failures are counted, not returned).
pub async fn rekey_all(
    store: &dyn Store,
    current_kid: &str,
    out: &mut dyn Write,
) -> Result<RekeySummary, StoreError> {
    let tenants = store.list_tenants().await?;
    let mut sum = RekeySummary { tenants: tenants.len(), ..RekeySummary::default() };
    let _ = writeln!(out, "rekey: {} tenants, sealing under key id {current_kid}", tenants.len());
    for (i, t) in tenants.iter().enumerate() {
        match store.rekey(t).await {
            Ok(r) => {
                let kids: Vec<String> = r.by_key_id.iter().map(|(k, n)| format!("{k}:{n}")).collect();
                let _ = writeln!(
                    out,
                    "[{}/{}] {t}: {} values ({}), {} re-sealed, {} changed meanwhile",
                    i + 1,
                    tenants.len(),
                    r.values,
                    kids.join(" "),
                    r.resealed,
                    r.skipped
                );
                sum.values += r.values;
                sum.resealed += r.resealed;
                sum.skipped += r.skipped;
                for (k, n) in r.by_key_id {
                    *sum.by_key_id.entry(k).or_default() += n;
                }
            }
            Err(e) => {
                sum.failed += 1;
                tracing::error!(tenant_id = %t, error = %e, "rekey failed");
                let _ = writeln!(out, "[{}/{}] {t}: FAILED ({})", i + 1, tenants.len(), error_kind(&e));
            }
        }
    }
    let _ = writeln!(
        out,
        "rekey done: {} values, {} re-sealed, {} changed meanwhile, {} tenants failed",
        sum.values, sum.resealed, sum.skipped, sum.failed
    );
    if sum.complete() {
        let _ = writeln!(out, "every value is sealed under {current_kid}; old keys can be removed");
    } else {
        let _ = writeln!(out, "not complete: run `staylinked rekey` again (it resumes)");
    }
    Ok(sum)
}

/// A short, secret-free description of a rekey error for the progress line.
fn error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Corrupt { .. } => "a value no configured key opens",
        StoreError::Unavailable { .. } => "store unavailable",
        StoreError::Contention { .. } => "contention",
        _ => "store error",
    }
}
