//! Lease and fencing rules as pure functions, shared by every backend so they agree exactly.
//! Backends call these inside their own atomic read-modify-write (redb write transaction,
//! memory mutex, Firestore transaction). No IO here.
//!
//! `now_ms` is the clock expiry is judged by. Firestore passes the server's read time, since
//! its instances run on different hosts whose wall clocks may disagree (M7). The memory and
//! embedded backends pass their injected wall clock: one process (memory) or one file locked by
//! one process (embedded) means every lease on them is written and judged by the same clock.

use std::time::Duration;

use super::{Lease, StoreError};
use crate::types::{FencingToken, TenantId};

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// The lease after `holder` acquires it, or `LeaseHeld`.
pub(crate) fn acquire(
    tenant: &TenantId,
    current: Option<&Lease>,
    holder: &str,
    ttl: Duration,
    now_ms: u64,
) -> Result<Lease, StoreError> {
    if holder.is_empty() {
        return Err(StoreError::Invalid { what: "lease holder", detail: "empty holder id".into() });
    }
    if let Some(l) = current
        && l.is_live(now_ms)
        && l.holder != holder
    {
        return Err(StoreError::LeaseHeld {
            tenant: tenant.clone(),
            holder: l.holder.clone(),
            expires_at_ms: l.expires_at,
        });
    }
    let epoch = current.map_or(0, |l| l.epoch).saturating_add(1);
    Ok(Lease { holder: holder.to_owned(), epoch, expires_at: now_ms.saturating_add(ttl_ms(ttl)) })
}

/// Checks that `presented` is the current, held lease.
pub(crate) fn check_current(
    tenant: &TenantId,
    current: Option<&Lease>,
    presented: &Lease,
) -> Result<(), StoreError> {
    check_fence(tenant, current, presented.fence())?;
    match current {
        Some(l) if l.holder == presented.holder => Ok(()),
        _ => Err(fenced(tenant, current, presented.fence())),
    }
}

fn fenced(tenant: &TenantId, current: Option<&Lease>, presented: FencingToken) -> StoreError {
    StoreError::Fenced {
        tenant: tenant.clone(),
        held: current.map_or(FencingToken { epoch: 0, holder: 0 }, Lease::fence),
        presented,
    }
}

/// Checks that `fence` is the epoch of a held lease (expired but not taken over still counts).
pub(crate) fn check_fence(
    tenant: &TenantId,
    current: Option<&Lease>,
    fence: FencingToken,
) -> Result<(), StoreError> {
    match current {
        Some(l) if !l.holder.is_empty() && l.fence() == fence => Ok(()),
        _ => Err(fenced(tenant, current, fence)),
    }
}

/// The lease after renewing `presented`.
pub(crate) fn renew(
    tenant: &TenantId,
    current: Option<&Lease>,
    presented: &Lease,
    ttl: Duration,
    now_ms: u64,
) -> Result<Lease, StoreError> {
    check_current(tenant, current, presented)?;
    Ok(Lease { expires_at: now_ms.saturating_add(ttl_ms(ttl)), ..presented.clone() })
}

/// The lease after releasing `presented`: no holder, epoch bumped so old tokens are fenced.
pub(crate) fn release(
    tenant: &TenantId,
    current: Option<&Lease>,
    presented: &Lease,
) -> Result<Lease, StoreError> {
    check_current(tenant, current, presented)?;
    Ok(Lease { holder: String::new(), epoch: presented.epoch.saturating_add(1), expires_at: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TenantId {
        TenantId::new("t").unwrap()
    }
    const TTL: Duration = Duration::from_secs(10);

    /// Acquisition bumps the epoch; a live foreign lease blocks; an expired one is taken over.
    #[test]
    fn acquire_rules() {
        let a = acquire(&t(), None, "a", TTL, 1000).unwrap();
        assert_eq!((a.epoch, a.expires_at), (1, 11_000));
        assert!(matches!(acquire(&t(), Some(&a), "b", TTL, 5000), Err(StoreError::LeaseHeld { .. })));
        let b = acquire(&t(), Some(&a), "b", TTL, 11_000).unwrap();
        assert_eq!(b.epoch, 2);
        let b2 = acquire(&t(), Some(&b), "b", TTL, 12_000).unwrap();
        assert_eq!(b2.epoch, 3, "re-acquiring one's own lease still bumps the epoch");
        assert!(acquire(&t(), None, "", TTL, 0).is_err());
    }

    /// Only the current holder's epoch passes the fence; release bumps the epoch.
    #[test]
    fn fence_and_release() {
        let a = acquire(&t(), None, "a", TTL, 0).unwrap();
        assert!(check_fence(&t(), Some(&a), FencingToken::new(1, "a")).is_ok());
        assert!(check_fence(&t(), Some(&a), FencingToken::new(0, "a")).is_err());
        assert!(check_fence(&t(), Some(&a), FencingToken::new(1, "b")).is_err(), "another holder's epoch 1");
        assert!(check_fence(&t(), None, FencingToken::new(1, "a")).is_err());
        let r = release(&t(), Some(&a), &a).unwrap();
        assert_eq!(r.epoch, 2);
        assert!(check_fence(&t(), Some(&r), FencingToken::new(1, "a")).is_err());
        assert!(check_fence(&t(), Some(&r), r.fence()).is_err(), "a released lease has no holder");
        assert!(renew(&t(), Some(&r), &a, TTL, 0).is_err());
        let b = acquire(&t(), Some(&r), "b", TTL, 0).unwrap();
        assert_eq!(b.epoch, 3);
    }
}
