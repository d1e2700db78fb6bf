//! The simulator's runtime settings (`GET`/`PUT /admin/config`, `staylinked sim` flags): knobs
//! of the simulated server's policy that tests change while it runs.
//!
//! Data only. To add a setting, add one field here (with its default in [`Settings::default`]
//! when it is not `None`/zero); `PUT /admin/config` accepts it at once (a body names only the
//! fields it changes) and `GET` shows it.

use serde::{Deserialize, Serialize};

use crate::wa::version::WaVersion;

/// Runtime settings of the simulated server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Oldest client version accepted: an older `ClientPayload.userAgent.appVersion` gets
    /// `<failure reason="405"/>` at registration and login, like the real server's floor.
    /// `None`: every version is accepted.
    pub min_version: Option<WaVersion>,
    /// Milliseconds a device has to ack each stanza pushed to it before the server ends the
    /// stream with `<stream:error><ack/>` (the real server's is about a minute). Applies to
    /// stanzas pushed after the change. Must be > 0.
    pub ack_timeout_ms: u64,
}

/// Default of [`Settings::ack_timeout_ms`].
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 60_000;

impl Default for Settings {
    fn default() -> Self {
        Self { min_version: None, ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS }
    }
}

/// Why a settings update was refused (the admin API answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {0}")]
pub struct SettingsError(pub String);

impl Settings {
    /// These settings with the fields present in `patch` (a JSON object) replaced; `null`
    /// resets a field to its default.
    ///
    /// # Errors
    /// [`SettingsError`] when `patch` is not an object, names an unknown field or holds a
    /// value of the wrong shape.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<Self, SettingsError> {
        let serde_json::Value::Object(fields) = patch else {
            return Err(SettingsError("expected a JSON object".into()));
        };
        let mut current = serde_json::to_value(self).map_err(|e| SettingsError(e.to_string()))?;
        let defaults = serde_json::to_value(Self::default()).map_err(|e| SettingsError(e.to_string()))?;
        if let serde_json::Value::Object(cur) = &mut current {
            for (k, v) in fields {
                let v = if v.is_null() {
                    defaults.get(k).cloned().unwrap_or(serde_json::Value::Null)
                } else {
                    v.clone()
                };
                cur.insert(k.clone(), v);
            }
        }
        let next: Self = serde_json::from_value(current).map_err(|e| SettingsError(e.to_string()))?;
        if next.ack_timeout_ms == 0 {
            return Err(SettingsError("ack_timeout_ms must be > 0".into()));
        }
        Ok(next)
    }

    /// True when a client announcing `version` (`None`: no version in its payload) is refused
    /// as outdated.
    pub fn refuses(&self, version: Option<WaVersion>) -> bool {
        match (self.min_version, version) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(min), Some(v)) => v < min,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A patch replaces only the fields it names; null resets; unknown fields and bad values
    /// are refused.
    #[test]
    fn merge_semantics() {
        let s = Settings::default();
        let s = s.merged(&json!({"min_version": "2.3000.5"})).unwrap();
        assert_eq!(s.min_version, Some(WaVersion([2, 3000, 5])));
        let same = s.merged(&json!({})).unwrap();
        assert_eq!(same, s);
        assert_eq!(s.merged(&json!({"min_version": null})).unwrap().min_version, None);
        assert!(s.merged(&json!({"nope": 1})).is_err());
        assert!(s.merged(&json!({"min_version": "2.x"})).is_err());
        assert!(s.merged(&json!([1])).is_err());
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"min_version": "2.3000.5", "ack_timeout_ms": 60000})
        );
        let s = s.merged(&json!({"ack_timeout_ms": 1500})).unwrap();
        assert_eq!((s.ack_timeout_ms, s.min_version), (1500, Some(WaVersion([2, 3000, 5]))));
        assert_eq!(
            s.merged(&json!({"ack_timeout_ms": null})).unwrap().ack_timeout_ms,
            DEFAULT_ACK_TIMEOUT_MS
        );
        assert!(s.merged(&json!({"ack_timeout_ms": 0})).is_err());
        assert!(s.merged(&json!({"ack_timeout_ms": -1})).is_err());
    }

    /// Only versions below the floor are refused.
    #[test]
    fn floor() {
        let s = Settings { min_version: Some(WaVersion([2, 3000, 10])), ..Settings::default() };
        assert!(s.refuses(Some(WaVersion([2, 3000, 9]))));
        assert!(!s.refuses(Some(WaVersion([2, 3000, 10]))));
        assert!(!s.refuses(Some(WaVersion([2, 3001, 1]))));
        assert!(s.refuses(None));
        assert!(!Settings::default().refuses(None));
    }
}
