//! [`StoreError`]: every way a store operation fails, typed so callers decide by variant
//! (retry, stop the tenant, report) and never by reading message text.

use crate::types::{FencingToken, TenantId};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The commit or lease operation carried a fencing token that is no longer the tenant's
    /// current one: another process took the lease over (or it was released). Caller: stop
    /// the tenant's connection at once; never retry with the same token.
    #[error("tenant {tenant} is fenced: the lease epoch is {held}, the operation presented {presented}")]
    Fenced {
        /// The tenant.
        tenant: TenantId,
        /// The epoch the store holds now.
        held: FencingToken,
        /// The epoch the caller presented.
        presented: FencingToken,
    },
    /// Another holder owns a live lease on the tenant. Caller: do not connect; try again
    /// after `expires_at_ms`.
    #[error("tenant {tenant} lease is held by {holder} until {expires_at_ms} ms")]
    LeaseHeld {
        /// The tenant.
        tenant: TenantId,
        /// The current holder.
        holder: String,
        /// When that lease expires (unix milliseconds, store clock).
        expires_at_ms: u64,
    },
    /// The store could not be reached or timed out (network, emulator down, file locked).
    /// Nothing is known to have been applied. Caller: retry with backoff; never treat as
    /// "no data".
    #[error("store unavailable during {op}: {detail}")]
    Unavailable {
        /// The operation that failed.
        op: &'static str,
        /// What the backend reported.
        detail: String,
    },
    /// A concurrent writer conflicted (transaction aborted). Nothing was applied. Caller:
    /// retry.
    #[error("store contention during {op}: {detail}")]
    Contention {
        /// The operation that failed.
        op: &'static str,
        /// What the backend reported.
        detail: String,
    },
    /// A stored value for this tenant cannot be decoded or decrypted (tampered, moved,
    /// truncated, wrong master key). Only this tenant is affected. Caller: mark the tenant
    /// broken and alert; never fall back to fresh creds.
    /// `Display` masks long digit runs of the key (contacts' phone numbers in Signal key
    /// names), so the message can be logged.
    #[error("stored value {} of tenant {tenant} is corrupt: {reason}", mask_digits(.key))]
    Corrupt {
        /// The tenant.
        tenant: TenantId,
        /// The storage key (`creds/current`, `keys/session-...`, ...).
        key: String,
        /// Why it failed to open.
        reason: String,
    },
    /// The tenant (or item) does not exist in the store.
    #[error("{what} of tenant {tenant} not found")]
    NotFound {
        /// The tenant.
        tenant: TenantId,
        /// What was looked up.
        what: &'static str,
    },
    /// `create_tenant` found the tenant already stored (another request or instance created
    /// it first). Nothing was written. Caller: answer "exists".
    #[error("tenant {tenant} already exists")]
    AlreadyExists {
        /// The tenant.
        tenant: TenantId,
    },
    /// The batch or value is not acceptable (caller bug: e.g. over a backend size limit).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was rejected.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A fault injected by a test harness (fault-injecting store or backend hook).
    #[error("injected fault in {op}")]
    Injected {
        /// The operation that was made to fail.
        op: &'static str,
    },
    /// Configuration prevents the store from starting (missing master key, bad key).
    /// Operator error: fix the environment.
    #[error("store configuration: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// The backend failed in a way that retrying will not fix (permission denied, bad
    /// request, internal bug).
    #[error("store backend failed during {op}: {detail}")]
    Backend {
        /// The operation that failed.
        op: &'static str,
        /// What the backend reported.
        detail: String,
    },
}

impl StoreError {
    /// Whether retrying the same operation later may succeed. `Fenced`, `Corrupt`,
    /// `Invalid`, `Config` and `Backend` are permanent; `Unavailable`, `Contention`,
    /// `LeaseHeld` and injected faults are transient.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Contention { .. }
                | Self::LeaseHeld { .. }
                | Self::Injected { .. }
        )
    }

    /// Whether the store refused the batch itself (a value over a size limit, a value the
    /// backend calls invalid): the same batch can never land, whatever the caller waits for.
    /// Caller: do not retry it; drop or shrink what it carries and report the loss. (Other
    /// permanent errors — corruption, configuration, permissions — are not about the batch.)
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Invalid { .. })
    }

    /// Whether this error means the caller lost the tenant's lease.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    pub(crate) fn unavailable(op: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Unavailable { op, detail: detail.to_string() }
    }

    pub(crate) fn backend(op: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Backend { op, detail: detail.to_string() }
    }

    pub(crate) fn corrupt(tenant: &TenantId, key: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt { tenant: tenant.clone(), key: key.into(), reason: reason.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retryability is decided by variant: transient errors retry, fencing and corruption never.
    #[test]
    fn retryability_by_variant() {
        let t = TenantId::new("t").unwrap();
        assert!(StoreError::unavailable("commit", "down").is_retryable());
        assert!(StoreError::Contention { op: "commit", detail: String::new() }.is_retryable());
        let fenced = StoreError::Fenced {
            tenant: t.clone(),
            held: FencingToken::new(2, "h"),
            presented: FencingToken::new(1, "h"),
        };
        assert!(!fenced.is_retryable());
        assert!(fenced.is_fenced());
        assert!(!StoreError::corrupt(&t, "creds/current", "bad tag").is_retryable());
        assert!(!StoreError::backend("commit", "denied").is_retryable());
        let too_big = StoreError::Invalid { what: "inbox item", detail: "over the limit".into() };
        assert!(too_big.is_rejected() && !too_big.is_retryable());
        assert!(!StoreError::backend("commit", "denied").is_rejected());
        assert!(!StoreError::unavailable("commit", "down").is_rejected());
    }

    /// Messages are lowercase and carry the facts.
    #[test]
    fn messages_carry_facts() {
        let t = TenantId::new("acme").unwrap();
        let e = StoreError::Fenced {
            tenant: t,
            held: FencingToken::new(5, "h"),
            presented: FencingToken::new(4, "h"),
        };
        assert_eq!(e.to_string(), "tenant acme is fenced: the lease epoch is 5, the operation presented 4");
    }
}

/// `key` with every run of five or more digits cut to its last two (`session-15551234567.0` →
/// `session-…67.0`): storage keys name contacts by phone number, which logs must not show.
pub fn mask_digits(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 5 {
            out.push('…');
            out.push_str(&run[run.len() - 2..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in key.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    /// Phone numbers in corrupt-key messages are masked; short numbers (device ids) stay.
    #[test]
    fn corrupt_display_masks_phone_numbers() {
        assert_eq!(mask_digits("keys/session-15551234567.0"), "keys/session-…67.0");
        assert_eq!(mask_digits("creds/current"), "creds/current");
        assert_eq!(mask_digits("prekey-1234"), "prekey-1234");
        let e = StoreError::Corrupt {
            tenant: TenantId::new("acme").unwrap(),
            key: "keys/identity-15551234567.3".into(),
            reason: "bad tag".into(),
        };
        let shown = e.to_string();
        assert!(!shown.contains("15551234567"), "{shown}");
        assert!(shown.contains("acme") && shown.contains("bad tag"), "{shown}");
    }
}
