//! The WA Web version every tenant announces (`STAYLINKED_WA_VERSION`): fixed, or `auto`,
//! read from WA Web's `sw.js` (`client_revision`) at start and again, at most once a minute,
//! when the server answers 405 "client outdated". Every failure of the fetch falls back to the
//! version in use (the built-in default at start) with a warning; the fetch never blocks a
//! tenant for longer than [`FETCH_TIMEOUT`].

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::wa::version::{WaVersion, client_revision_from_sw_js};

/// Where WA Web publishes its service worker (the default of `STAYLINKED_WA_VERSION_URL`).
pub const DEFAULT_SW_JS_URL: &str = "https://web.whatsapp.com/sw.js";
/// Longest wait for `sw.js`.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How the version is chosen (`STAYLINKED_WA_VERSION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSetting {
    /// This version, always.
    Fixed(WaVersion),
    /// Fetched from `sw.js` at this URL.
    Auto {
        /// The `sw.js` URL.
        url: String,
    },
}

/// Why `sw.js` gave no version.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request failed (DNS, connect, TLS, timeout) or answered a non-2xx status.
    #[error("fetching sw.js failed: {0}")]
    Http(String),
    /// The body has no `client_revision`.
    #[error("sw.js has no client_revision")]
    NoRevision,
}

/// Fetches `url` and reads `client_revision` from it.
///
/// # Errors
/// [`FetchError`].
pub async fn fetch_sw_js(http: &reqwest::Client, url: &str) -> Result<WaVersion, FetchError> {
    let resp = http
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
    let body = resp.text().await.map_err(|e| FetchError::Http(e.without_url().to_string()))?;
    client_revision_from_sw_js(&body).map(WaVersion::from_revision).ok_or(FetchError::NoRevision)
}

/// The version in use, shared by every tenant of the host.
#[derive(Debug)]
pub struct VersionSource {
    setting: VersionSetting,
    current: RwLock<WaVersion>,
    /// Fetches finished so far.
    fetches: AtomicU64,
    /// Held during a fetch: callers that waited for it reuse its answer.
    fetch_lock: tokio::sync::Mutex<()>,
}

impl VersionSource {
    /// A source starting at `setting`'s version (`auto`: the built-in default until
    /// [`Self::refresh`]).
    pub fn new(setting: VersionSetting) -> Self {
        let v = match &setting {
            VersionSetting::Fixed(v) => *v,
            VersionSetting::Auto { .. } => WaVersion::DEFAULT,
        };
        Self {
            setting,
            current: RwLock::new(v),
            fetches: AtomicU64::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The version to announce now.
    pub fn current(&self) -> WaVersion {
        self.current.read().map_or(WaVersion::DEFAULT, |v| *v)
    }

    /// True with `STAYLINKED_WA_VERSION=auto`.
    pub fn is_auto(&self) -> bool {
        matches!(self.setting, VersionSetting::Auto { .. })
    }

    /// `auto`: fetches `sw.js` and adopts its version; on failure keeps the current one and
    /// warns. Single flight: callers that arrive while a fetch runs take its answer (a fleet
    /// refused at once fetches once). Fixed: the fixed version. Returns the version now in use.
    pub async fn refresh(&self, http: &reqwest::Client) -> WaVersion {
        let VersionSetting::Auto { url } = &self.setting else { return self.current() };
        let seen = self.fetches.load(Ordering::Acquire);
        let _one = self.fetch_lock.lock().await;
        if self.fetches.load(Ordering::Acquire) != seen {
            return self.current();
        }
        let fetched = fetch_sw_js(http, url).await;
        self.fetches.fetch_add(1, Ordering::AcqRel);
        match fetched {
            Ok(v) => {
                if let Ok(mut cur) = self.current.write() {
                    *cur = v;
                }
                tracing::info!(version = %v, "WA Web version read from sw.js");
                v
            }
            Err(e) => {
                let v = self.current();
                tracing::warn!(error = %e, version = %v, "STAYLINKED_WA_VERSION=auto: sw.js gave no version; keeping {v}");
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `body` as `/sw.js` on 127.0.0.1; returns the URL.
    async fn serve(body: &'static str) -> String {
        let app = axum::Router::new().route("/sw.js", axum::routing::get(move || async move { body }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/sw.js")
    }

    /// A free port nobody listens on.
    async fn unreachable() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        format!("http://{addr}/sw.js")
    }

    /// `auto` adopts the `client_revision` of a good `sw.js`; a body without one and an
    /// unreachable URL keep the default (with a warning); a fixed version never fetches.
    #[tokio::test]
    async fn auto_fetch_and_fallbacks() {
        let http = reqwest::Client::new();
        let good = serve(r#"self.__swData=JSON.parse('{"dynamic_data":{"SiteData":{"client_revision":1099000001,"x":1}}}');"#).await;
        let s = VersionSource::new(VersionSetting::Auto { url: good });
        assert_eq!(s.current(), WaVersion::DEFAULT);
        assert_eq!(s.refresh(&http).await, WaVersion([2, 3000, 1_099_000_001]));
        assert_eq!(s.current(), WaVersion([2, 3000, 1_099_000_001]));

        let garbage = serve("<html>captcha</html>").await;
        let s = VersionSource::new(VersionSetting::Auto { url: garbage.clone() });
        assert_eq!(s.refresh(&http).await, WaVersion::DEFAULT);
        assert!(matches!(fetch_sw_js(&http, &garbage).await, Err(FetchError::NoRevision)));

        let down = unreachable().await;
        let s = VersionSource::new(VersionSetting::Auto { url: down.clone() });
        assert_eq!(s.refresh(&http).await, WaVersion::DEFAULT);
        assert!(matches!(fetch_sw_js(&http, &down).await, Err(FetchError::Http(_))));

        let fixed = VersionSource::new(VersionSetting::Fixed(WaVersion([2, 3000, 5])));
        assert!(!fixed.is_auto());
        assert_eq!(fixed.refresh(&http).await, WaVersion([2, 3000, 5]));
    }
}
