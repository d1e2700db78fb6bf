//! Cross-layer newtypes shared by `store`, `host`, `api` and `sim`: [`TenantId`], [`FencingToken`],
//! and the one RFC 3339 formatter ([`rfc3339_utc`]) used in API and admin bodies.
//!
//! Owns validation of tenant ids. Must not depend on any other module of the crate.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest tenant id we accept.
pub const TENANT_ID_MAX_LEN: usize = 64;

/// A validated tenant id: 1..=64 characters of `[a-z0-9_-]`, not of the reserved form `__x__`.
///
/// The alphabet keeps the id safe as a Firestore document id, a redb key, a URL path segment
/// and a log field without any escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

/// Why a string is not a valid [`TenantId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TenantIdError {
    /// The id is empty (caller error: pick a name).
    #[error("tenant id is empty")]
    Empty,
    /// The id is longer than [`TENANT_ID_MAX_LEN`] (caller error: pick a shorter name).
    #[error("tenant id is {len} characters long, at most {max} are allowed")]
    TooLong {
        /// Length of the rejected id.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The id contains a character outside `[a-z0-9_-]` (caller error).
    #[error("tenant id contains {ch:?} at byte {offset}; only [a-z0-9_-] is allowed")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// The id starts and ends with `__`, a form Firestore reserves (caller error).
    #[error("tenant ids of the form __name__ are reserved")]
    Reserved,
}

impl TenantId {
    /// Validates `s` and wraps it.
    pub fn new(s: &str) -> Result<Self, TenantIdError> {
        if s.is_empty() {
            return Err(TenantIdError::Empty);
        }
        if s.len() > TENANT_ID_MAX_LEN {
            return Err(TenantIdError::TooLong { len: s.len(), max: TENANT_ID_MAX_LEN });
        }
        if let Some((offset, ch)) = s
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            return Err(TenantIdError::BadChar { ch, offset });
        }
        // Firestore reserves document ids matching `__.*__`; refuse them on every backend so
        // an id that works on one store works on all.
        if s.len() >= 4 && s.starts_with("__") && s.ends_with("__") {
            return Err(TenantIdError::Reserved);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The id as a string slice (for storage keys and logs).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", &*self.0)
    }
}

impl FromStr for TenantId {
    type Err = TenantIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for TenantId {
    type Error = TenantIdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The fencing token of a tenant lease: its epoch and a digest of the holder that acquired it.
/// Every acquisition (and every release) moves the epoch strictly upwards, so a commit carrying
/// an older token is recognisably stale; the holder digest also fences a stale process whose
/// epoch number happens to match a later incarnation's (a tenant deleted and re-created starts
/// its epochs again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FencingToken {
    /// The lease epoch.
    pub epoch: u64,
    /// FNV-1a digest of the holder id (see [`FencingToken::new`]).
    pub holder: u64,
}

impl FencingToken {
    /// The token of a lease with `epoch` held by `holder`.
    pub fn new(epoch: u64, holder: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in holder.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self { epoch, holder: h }
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.epoch)
    }
}

/// Formats unix seconds as RFC 3339 UTC with second precision (`YYYY-MM-DDTHH:MM:SSZ`), for
/// API and admin JSON bodies. Uses the civil-from-days conversion (proleptic Gregorian).
pub fn rfc3339_utc(unix_secs: u64) -> String {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(0);
    let secs = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, (secs / 60) % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3339 rendering matches known timestamps (epoch, a leap day, a recent date).
    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(1_800_000_000), "2027-01-15T08:00:00Z");
    }

    /// Valid ids are accepted, every kind of invalid id is rejected with its reason.
    #[test]
    fn tenant_id_validation() {
        assert!(TenantId::new("acme_01-x").is_ok());
        assert_eq!(TenantId::new(""), Err(TenantIdError::Empty));
        assert!(matches!(TenantId::new(&"a".repeat(65)), Err(TenantIdError::TooLong { len: 65, .. })));
        assert!(TenantId::new(&"a".repeat(64)).is_ok());
        assert_eq!(TenantId::new("aB"), Err(TenantIdError::BadChar { ch: 'B', offset: 1 }));
        assert!(matches!(TenantId::new("a/b"), Err(TenantIdError::BadChar { ch: '/', .. })));
        assert!(matches!(TenantId::new("é"), Err(TenantIdError::BadChar { .. })));
        for reserved in ["__x__", "____", "__a-b__"] {
            assert_eq!(TenantId::new(reserved), Err(TenantIdError::Reserved), "{reserved}");
        }
        for fine in ["__", "___", "__x", "x__", "_x_"] {
            assert!(TenantId::new(fine).is_ok(), "{fine}");
        }
    }

    /// Deserialising an invalid id fails instead of smuggling it past validation.
    #[test]
    fn tenant_id_serde_validates() {
        let ok: TenantId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(ok.as_str(), "abc");
        assert!(serde_json::from_str::<TenantId>("\"A B\"").is_err());
    }
}
