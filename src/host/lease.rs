//! Tenant leases (invariant 2): acquire before any connection, renew in the background, and
//! signal loss at once so the tenant closes its socket; release on shutdown or when the tenant
//! goes idle.
//!
//! Owns the renewal task only; it never touches the socket (the actor watches
//! [`LeaseGuard::lost`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::metrics::Metrics;
use crate::store::{Lease, Store, StoreError};
use crate::types::{FencingToken, TenantId};

/// Outcome of an acquisition attempt.
#[derive(Debug)]
#[non_exhaustive]
pub enum Acquired {
    /// We hold it; renewal runs in the background.
    Held(LeaseGuard),
    /// Another live holder owns it until `expires_at_ms` (store clock, unix ms).
    Elsewhere {
        /// The holder.
        holder: String,
        /// When its lease expires.
        expires_at_ms: u64,
    },
}

/// A held lease with its renewal task.
#[derive(Debug)]
pub struct LeaseGuard {
    tenant: TenantId,
    lease: Lease,
    ttl: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

/// Acquires `tenant`'s lease for `holder` and starts renewing it every `ttl / 3`.
///
/// # Errors
/// Store failures other than `LeaseHeld` (which is [`Acquired::Elsewhere`]).
pub async fn acquire(ctx: &Ctx, tenant: &TenantId) -> Result<Acquired, StoreError> {
    let (store, holder, ttl) = (&ctx.store, ctx.config.holder_id.as_str(), ctx.config.lease_ttl);
    let sent = tokio::time::Instant::now();
    let lease = match store.acquire_lease(tenant, holder, ttl).await {
        Ok(l) => l,
        Err(StoreError::LeaseHeld { holder, expires_at_ms, .. }) => {
            return Ok(Acquired::Elsewhere { holder, expires_at_ms });
        }
        Err(e) => return Err(e),
    };
    tracing::info!(epoch = lease.epoch, "lease acquired");
    let guard = LeaseGuard {
        tenant: tenant.clone(),
        lease,
        ttl,
        lost: CancellationToken::new(),
        stop: CancellationToken::new(),
        store: Arc::clone(store),
        metrics: Arc::clone(&ctx.metrics),
    };
    ctx.spawn(renew_loop(Renewal {
        store: Arc::clone(store),
        tenant: tenant.clone(),
        lease: guard.lease.clone(),
        ttl,
        acquired_sent: sent,
        lost: guard.lost.clone(),
        stop: guard.stop.clone(),
        metrics: Arc::clone(&ctx.metrics),
    }));
    Ok(Acquired::Held(guard))
}

/// What the renewal task needs.
struct Renewal {
    store: Arc<dyn Store>,
    tenant: TenantId,
    lease: Lease,
    ttl: Duration,
    /// When the acquisition request was sent.
    acquired_sent: tokio::time::Instant,
    lost: CancellationToken,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

async fn renew_loop(r: Renewal) {
    let Renewal { store, tenant, lease, ttl, acquired_sent, lost, stop, metrics } = r;
    let every = ttl / 3;
    // The lease is valid until `ttl` after the *send* time of the last successful acquire or
    // renewal (the store computed the expiry no earlier than that), measured on the monotonic
    // clock, minus a margin for the store's and our clocks' drift. Every RPC is raced against
    // that deadline: when it passes, the lease counts as lost whatever is still in flight.
    let mut valid_until = validity_deadline(acquired_sent, ttl);
    let mut wait = every;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(valid_until) => {
                tracing::warn!(tenant_id = %tenant, "lease could not be renewed before expiry");
                signal_loss(&lost, &metrics);
                return;
            }
            () = tokio::time::sleep(wait) => {}
        }
        let sent = tokio::time::Instant::now();
        let r = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(valid_until) => {
                tracing::warn!(tenant_id = %tenant, "lease renewal still in flight at expiry; giving it up");
                signal_loss(&lost, &metrics);
                return;
            }
            r = store.renew_lease(&tenant, &lease, ttl) => r,
        };
        match r {
            Ok(_) => {
                valid_until = validity_deadline(sent, ttl);
                wait = every;
            }
            Err(e) if e.is_fenced() => {
                tracing::warn!(tenant_id = %tenant, epoch = lease.epoch, error = %e, "lease lost");
                signal_loss(&lost, &metrics);
                return;
            }
            Err(e) => {
                // We cannot prove we still hold it once it may have expired: give it up
                // before another process can take it over.
                if tokio::time::Instant::now() + every.min(Duration::from_secs(1)) >= valid_until {
                    tracing::warn!(tenant_id = %tenant, error = %e, "lease could not be renewed before expiry");
                    signal_loss(&lost, &metrics);
                    return;
                }
                tracing::warn!(tenant_id = %tenant, error = %e, "lease renewal failed; retrying");
                wait = Duration::from_secs(1).min(every);
            }
        }
    }
}

/// Until when a lease renewed (or acquired) by a request sent at `sent` is surely still ours:
/// `sent + ttl - margin`, the margin (a tenth of the TTL, at most 3 s) covering clock drift
/// between this process and the store.
fn validity_deadline(sent: tokio::time::Instant, ttl: Duration) -> tokio::time::Instant {
    let margin = (ttl / 10).min(Duration::from_secs(3));
    sent + ttl.saturating_sub(margin)
}

/// Cancels `lost` and counts the loss once, whoever notices it first.
fn signal_loss(lost: &CancellationToken, metrics: &Metrics) {
    if !lost.is_cancelled() {
        metrics.count_lease_loss();
        lost.cancel();
    }
}

impl LeaseGuard {
    /// Marks the lease lost (a fenced commit proved another holder took over).
    pub fn mark_lost(&self) {
        signal_loss(&self.lost, &self.metrics);
    }

    /// The fencing token every commit under this lease carries.
    pub fn fence(&self) -> FencingToken {
        self.lease.fence()
    }

    /// The lease as acquired.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Stops renewing without releasing: for after the tenant (and with it the lease) was
    /// deleted, when a renewal or release would only fail.
    pub fn stop_renewal(&self) {
        self.stop.cancel();
    }

    /// Cancelled the moment the lease is lost.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Renews now (after a 440): `Ok(true)` while we still hold it; `Ok(false)` and
    /// [`lost`](Self::lost) cancelled when another holder took over.
    ///
    /// # Errors
    /// Transient store failures.
    pub async fn recheck(&self) -> Result<bool, StoreError> {
        match self.store.renew_lease(&self.tenant, &self.lease, self.ttl).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_fenced() => {
                self.mark_lost();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Stops renewing and gives the lease up (bumping the epoch, so nothing of ours can land
    /// afterwards). A lease already lost is not released.
    ///
    /// # Errors
    /// The store's release error.
    pub async fn release(self) -> Result<(), StoreError> {
        self.stop.cancel();
        if self.lost.is_cancelled() {
            return Ok(());
        }
        let r = self.store.release_lease(&self.tenant, &self.lease).await;
        if r.is_ok() {
            tracing::info!(epoch = self.lease.epoch, "lease released");
        }
        r
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // A guard dropped without release (crash path) still stops its renewal, so the lease
        // expires and another process can take over.
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ManualClock;
    use crate::store::crypt::{Keyring, MasterKey};
    use crate::store::memory::MemoryStore;
    use crate::store::testing::FaultyStore;

    /// M7: a renewal stuck in flight does not keep the lease "held": loss is signalled when
    /// the validity deadline (from the last successful send, monotonic clock) passes, while
    /// the RPC is still pending — before another process can take the lease over by expiry.
    #[tokio::test(start_paused = true)]
    async fn stuck_renewal_loses_the_lease_by_the_deadline() {
        let mem = MemoryStore::new(
            Arc::new(Keyring::new(&MasterKey::generate(), &[])),
            Arc::new(ManualClock::new(1_000)),
        );
        let store = Arc::new(FaultyStore::new(Arc::new(mem)));
        let tenant = TenantId::new("stuck").unwrap();
        let ttl = Duration::from_secs(30);
        let sent = tokio::time::Instant::now();
        let lease = store.acquire_lease(&tenant, "h", ttl).await.unwrap();
        let (lost, stop) = (CancellationToken::new(), CancellationToken::new());
        let metrics = Arc::new(Metrics::default());
        store.set_renewals_hang(true);
        let task = tokio::spawn(renew_loop(Renewal {
            store: store.clone(),
            tenant,
            lease,
            ttl,
            acquired_sent: sent,
            lost: lost.clone(),
            stop: stop.clone(),
            metrics,
        }));
        let in_time = tokio::time::timeout(ttl, lost.cancelled()).await;
        assert!(in_time.is_ok(), "a stuck renewal kept the lease past its expiry");
        assert!(sent.elapsed() < ttl, "loss must be signalled before the store's expiry");
        stop.cancel();
        let _ = task.await;
    }
}
