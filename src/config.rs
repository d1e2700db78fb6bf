//! Process configuration: every setting comes from the environment first, and each has a flag
//! that mirrors it (clap `env`). Validated once into typed values ([`Config`]); nothing else in
//! the crate reads configuration env vars (the store reads its own backend variables).
//!
//! No IO beyond reading the environment and the hostname.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::host::egress::EgressPolicy;
use crate::host::inbox::Limits;
use crate::host::outbox::pacing::Pacing;
use crate::host::version::VersionSetting;
use crate::host::webhook::WebhookConfig;
use crate::store::{StoreConfig, StoreError};
use crate::wa::client::KEEPALIVE_INTERVAL;
use crate::wa::noise::TrustAnchor;
use crate::wa::version::{DeviceName, WaVersion};

/// Flags of `staylinked run` (each mirrors an env var; `--help` lists them). Its `Debug`
/// output leaves the keys out.
#[derive(Clone, clap::Args)]
pub struct RunArgs {
    /// HTTP port of the API and health checks.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to bind the HTTP server on. Default: 0.0.0.0 when an API key is set (or
    /// STAYLINKED_INSECURE_NO_AUTH=1), else 127.0.0.1 only. A non-loopback address without an
    /// API key refuses to start unless STAYLINKED_INSECURE_NO_AUTH=1.
    #[arg(long, env = "STAYLINKED_BIND")]
    pub bind: Option<IpAddr>,
    /// Store backend: firestore | embedded | memory. Default: firestore when
    /// GOOGLE_CLOUD_PROJECT or FIRESTORE_EMULATOR_HOST is set, else embedded.
    #[arg(long, env = "STAYLINKED_STORE")]
    pub store: Option<String>,
    /// Embedded store file (redb). Default ./data/staylinked.redb.
    #[arg(long, env = "STAYLINKED_STORE_PATH")]
    pub store_path: Option<PathBuf>,
    /// API key required on /v1 routes (X-API-Key or Authorization: Bearer): at least 32
    /// printable ASCII characters (surrounding whitespace and newlines are trimmed). Unset: the
    /// API serves 127.0.0.1 only. Prefer the env var (flags show in the process list).
    #[arg(long, env = "STAYLINKED_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Key required on GET /metrics (same headers and rules as the API key). Unset: /metrics is
    /// open to whoever reaches the port.
    #[arg(long, env = "STAYLINKED_METRICS_KEY", hide_env_values = true)]
    pub metrics_key: Option<String>,
    /// Serve the API without a key on a non-loopback address (an open API: anyone who reaches
    /// the port controls every tenant). Only for networks you fully trust.
    #[arg(long, env = "STAYLINKED_INSECURE_NO_AUTH", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_auth: bool,
    /// Master key for secrets at rest: base64 of 32 random bytes. Required for Firestore;
    /// the embedded store creates a key file beside its database when unset.
    #[arg(long, env = "STAYLINKED_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Previous master keys (comma-separated base64) that still open values sealed before a
    /// rotation; new values are always sealed with the current key. `staylinked rekey`
    /// re-seals everything so the old keys can be dropped.
    #[arg(long, env = "STAYLINKED_MASTER_KEYS_OLD", hide_env_values = true)]
    pub master_keys_old: Option<String>,
    /// WhatsApp WebSocket URL (point at a simulator: ws://127.0.0.1:PORT/ws/chat).
    #[arg(long, env = "STAYLINKED_WA_URL", default_value = "wss://web.whatsapp.com/ws/chat")]
    pub wa_url: String,
    /// WhatsApp Web version announced to the server (`2.3000.N`), or `auto`: read
    /// `client_revision` from WA Web's sw.js (STAYLINKED_WA_VERSION_URL) at start, falling back
    /// to the built-in default with a warning. A server answer 405 ("client outdated") puts the
    /// tenant in state `outdated` (with `auto`: after one refetch and one retry); raise this
    /// and restart.
    #[arg(long, env = "STAYLINKED_WA_VERSION", default_value = "2.3000.1045649367")]
    pub wa_version: String,
    /// Where `--wa-version auto` reads the current version.
    #[arg(long, env = "STAYLINKED_WA_VERSION_URL", default_value = crate::host::version::DEFAULT_SW_JS_URL)]
    pub wa_version_url: String,
    /// Device name shown in the phone's linked-devices list, `Browser (OS)` (Browser: Chrome,
    /// Firefox, Safari, Edge, Opera or Desktop).
    #[arg(long, env = "STAYLINKED_DEVICE_NAME", default_value = "Chrome (Linux)")]
    pub device_name: String,
    /// Root public key (64 hex chars) the server certificate must chain to (the simulator
    /// prints its key). Default: WhatsApp's production root.
    #[arg(long, env = "STAYLINKED_WA_ROOT_KEY")]
    pub wa_root_key: Option<String>,
    /// Shutdown deadline on SIGTERM/SIGINT (`8`, `8s`, `7500ms`; keep it below the platform's
    /// grace period).
    #[arg(long, env = "STAYLINKED_SHUTDOWN_DEADLINE", default_value = "8s", value_parser = parse_duration)]
    pub shutdown_deadline: Duration,
    /// Lease holder id of this process. Default: hostname + pid + a random nonce (unique per
    /// process, so a restarted instance waits for the old lease to be released or expire).
    #[arg(long, env = "STAYLINKED_HOLDER_ID")]
    pub holder_id: Option<String>,
    /// Tenants hydrated concurrently at cold start.
    #[arg(long, env = "STAYLINKED_HYDRATE_CONCURRENCY", default_value_t = 16)]
    pub hydrate_concurrency: usize,
    /// Tenant lease time-to-live (`30s`; renewed every third of it).
    #[arg(long, env = "STAYLINKED_LEASE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// While another process holds a tenant's lease, check again this often (`5s`, plus jitter)
    /// so a released lease is taken over quickly; an expiring one is retried at expiry.
    #[arg(long, env = "STAYLINKED_HELD_RETRY", default_value = "5s", value_parser = parse_duration)]
    pub held_retry: Duration,
    /// Cold-start connect stagger per tenant in milliseconds (plus the same again as random
    /// jitter), so a thousand tenants do not dogpile the server.
    #[arg(long, env = "STAYLINKED_CONNECT_STAGGER_MS", default_value_t = 25)]
    pub connect_stagger_ms: u64,
    /// Keepalive interval (`30s`); the watchdog replaces a socket silent for two intervals.
    #[arg(long, env = "STAYLINKED_KEEPALIVE", default_value = "30s", value_parser = parse_duration)]
    pub keepalive: Duration,
    /// Log format: text or json (Cloud Logging). Filter with RUST_LOG (default info).
    #[arg(long, env = "STAYLINKED_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Outbox: at most this many sends per tenant in any 60-second window (1..=600).
    #[arg(long, env = "STAYLINKED_SEND_PER_MINUTE", default_value_t = crate::host::outbox::pacing::DEFAULT_PER_MINUTE)]
    pub send_per_minute: u32,
    /// Outbox: shortest random gap between two sends of a tenant.
    #[arg(long, env = "STAYLINKED_SEND_GAP_MIN", default_value = "1s", value_parser = parse_duration)]
    pub send_gap_min: Duration,
    /// Outbox: longest random gap between two sends of a tenant.
    #[arg(long, env = "STAYLINKED_SEND_GAP_MAX", default_value = "3s", value_parser = parse_duration)]
    pub send_gap_max: Duration,
    /// Outbox: nothing is sent for this long after each connect.
    #[arg(long, env = "STAYLINKED_SEND_WARMUP", default_value = "10s", value_parser = parse_duration)]
    pub send_warmup: Duration,
    /// Outbox: show "typing…" to the recipient before each message.
    #[arg(long, env = "STAYLINKED_SEND_TYPING", default_value_t = false)]
    pub send_typing: bool,
    /// Webhooks: per-request timeout.
    #[arg(long, env = "STAYLINKED_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
    /// Webhooks: first retry delay after a failed delivery (doubles per attempt, full jitter).
    #[arg(long, env = "STAYLINKED_WEBHOOK_RETRY_BASE", default_value = "1s", value_parser = parse_duration)]
    pub webhook_retry_base: Duration,
    /// Webhooks: longest retry delay.
    #[arg(long, env = "STAYLINKED_WEBHOOK_RETRY_MAX", default_value = "5m", value_parser = parse_duration)]
    pub webhook_retry_max: Duration,
    /// Most undelivered inbox messages per tenant (then inbound waits at WhatsApp).
    #[arg(long, env = "STAYLINKED_INBOX_MAX_MESSAGES", default_value_t = Limits::default().inbox_max_messages)]
    pub inbox_max_messages: u64,
    /// Most stored bytes of undelivered inbox messages per tenant.
    #[arg(long, env = "STAYLINKED_INBOX_MAX_BYTES", default_value_t = Limits::default().inbox_max_bytes)]
    pub inbox_max_bytes: u64,
    /// Most queued outbox messages per tenant (then `POST /messages` answers 429).
    #[arg(long, env = "STAYLINKED_OUTBOX_MAX_MESSAGES", default_value_t = Limits::default().outbox_max_messages)]
    pub outbox_max_messages: u64,
    /// Most bytes of queued outbox texts per tenant (then `POST /messages` answers 429).
    #[arg(long, env = "STAYLINKED_OUTBOX_MAX_BYTES", default_value_t = Limits::default().outbox_max_bytes)]
    pub outbox_max_bytes: u64,
    /// Webhooks: allow plain http and private, loopback and link-local destinations (local
    /// development and tests only; by default only https to public addresses).
    #[arg(long, env = "STAYLINKED_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_private: bool,
}

impl std::fmt::Debug for RunArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunArgs")
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field("store", &self.store)
            .field("store_path", &self.store_path)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("metrics_key", &self.metrics_key.as_ref().map(|_| "<redacted>"))
            .field("master_key", &self.master_key.as_ref().map(|_| "<redacted>"))
            .field("wa_url", &self.wa_url)
            .finish_non_exhaustive()
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (Cloud Logging).
    Json,
}

/// A configuration value is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value does not parse or is out of range (operator error: fix the variable).
    #[error("{var}: {detail}")]
    Invalid {
        /// The env var / flag.
        var: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The store settings are inconsistent.
    #[error("store configuration is invalid")]
    Store(#[source] StoreError),
}

/// Validated configuration of a host. Its `Debug` output redacts the keys.
#[derive(Clone)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Store backend.
    pub store: StoreConfig,
    /// API key (`None`: open API, which [`Config::from_args`] allows on loopback only).
    pub api_key: Option<String>,
    /// Key of `GET /metrics` (`None`: open).
    pub metrics_key: Option<String>,
    /// Master key (base64), when given.
    pub master_key: Option<String>,
    /// Older master keys (comma-separated base64) that still open values (rotation).
    pub master_keys_old: Option<String>,
    /// WhatsApp WebSocket URL.
    pub wa_url: String,
    /// Certificate root.
    pub wa_trust: TrustAnchor,
    /// Announced WA Web version (fixed or `auto`).
    pub wa_version: VersionSetting,
    /// Device name shown on the phone.
    pub device_name: DeviceName,
    /// Shutdown deadline.
    pub shutdown_deadline: Duration,
    /// Lease holder id.
    pub holder_id: String,
    /// Cold-start hydration concurrency.
    pub hydrate_concurrency: usize,
    /// Lease TTL.
    pub lease_ttl: Duration,
    /// Re-check interval for leases held elsewhere.
    pub held_retry: Duration,
    /// Connect stagger per tenant.
    pub connect_stagger: Duration,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Outbox pacing defaults (per-tenant overrides apply on top).
    pub pacing: Pacing,
    /// Webhook delivery settings.
    pub webhook: WebhookConfig,
    /// Per-tenant inbox and outbox caps.
    pub limits: Limits,
}

fn at_least_one(var: &'static str, n: u64) -> Result<u64, ConfigError> {
    if n == 0 {
        return Err(ConfigError::Invalid { var, detail: "must be at least 1".into() });
    }
    Ok(n)
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |k: &Option<String>| if k.is_some() { "Some(<redacted>)" } else { "None" };
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field("api_key", &format_args!("{}", redacted(&self.api_key)))
            .field("metrics_key", &format_args!("{}", redacted(&self.metrics_key)))
            .field("master_key", &format_args!("{}", redacted(&self.master_key)))
            .field("master_keys_old", &format_args!("{}", redacted(&self.master_keys_old)))
            .field("wa_url", &self.wa_url)
            .field("wa_trust", &self.wa_trust)
            .field("wa_version", &self.wa_version)
            .field("device_name", &self.device_name)
            .field("shutdown_deadline", &self.shutdown_deadline)
            .field("holder_id", &self.holder_id)
            .field("hydrate_concurrency", &self.hydrate_concurrency)
            .field("lease_ttl", &self.lease_ttl)
            .field("held_retry", &self.held_retry)
            .field("connect_stagger", &self.connect_stagger)
            .field("keepalive", &self.keepalive)
            .field("pacing", &self.pacing)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

/// Shortest API or metrics key accepted (characters; `openssl rand -hex 24` gives 48).
pub const MIN_KEY_LEN: usize = 32;

/// Validates an API or metrics key: surrounding whitespace (a trailing newline from a secret
/// file) is trimmed; empty means unset; otherwise at least [`MIN_KEY_LEN`] printable ASCII
/// characters without spaces (anything else could never be sent in a header).
///
/// # Errors
/// [`ConfigError::Invalid`] naming `var`, never echoing the key.
pub fn parse_key(var: &'static str, raw: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(k) = raw.map(str::trim).filter(|k| !k.is_empty()) else { return Ok(None) };
    if !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Invalid {
            var,
            detail: "must be printable ASCII without spaces or control characters".into(),
        });
    }
    if k.len() < MIN_KEY_LEN {
        return Err(ConfigError::Invalid {
            var,
            detail: format!(
                "is {} characters long; at least {MIN_KEY_LEN} are required (e.g. `openssl rand -hex 24`)",
                k.len()
            ),
        });
    }
    Ok(Some(k.to_owned()))
}

/// The listen address: an explicit bind, else 0.0.0.0 with a key (or the explicit insecure
/// opt-in) and 127.0.0.1 without. A non-loopback bind without a key is refused unless
/// `insecure_no_auth`.
///
/// # Errors
/// [`ConfigError::Invalid`] for `STAYLINKED_BIND` explaining the three ways out.
pub fn listen_ip(bind: Option<IpAddr>, has_key: bool, insecure_no_auth: bool) -> Result<IpAddr, ConfigError> {
    match bind {
        Some(ip) if !has_key && !ip.is_loopback() && !insecure_no_auth => Err(ConfigError::Invalid {
            var: "STAYLINKED_BIND",
            detail: format!(
                "{ip} is not a loopback address and STAYLINKED_API_KEY is not set, so anyone who reaches \
                 the port would control every tenant; set STAYLINKED_API_KEY (at least {MIN_KEY_LEN} \
                 characters), bind 127.0.0.1, or set STAYLINKED_INSECURE_NO_AUTH=1 to serve an open API \
                 on purpose"
            ),
        }),
        Some(ip) => Ok(ip),
        None if has_key || insecure_no_auth => Ok(IpAddr::from([0, 0, 0, 0])),
        None => Ok(IpAddr::from([127, 0, 0, 1])),
    }
}

fn positive(var: &'static str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::Invalid { var, detail: "must be greater than zero".into() });
    }
    Ok(d)
}

/// Parses a duration: a number of seconds (`8`, `2.5`) or a number with a unit (`500ms`, `8s`,
/// `2m`).
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v * scale).ok())
        .ok_or_else(|| format!("{text:?} is not a duration (use e.g. 8, 8s, 500ms, 2m)"))
}

/// Parses 64 hex characters into a 32-byte key.
///
/// # Errors
/// [`ConfigError::Invalid`] for any other input.
pub fn parse_root_key(text: &str) -> Result<[u8; 32], ConfigError> {
    let bad =
        |detail: &str| ConfigError::Invalid { var: "STAYLINKED_WA_ROOT_KEY", detail: detail.to_owned() };
    let t = text.trim();
    if t.len() != 64 || !t.is_ascii() {
        return Err(bad("expected 64 hex characters"));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = t.get(i * 2..i * 2 + 2).ok_or_else(|| bad("expected 64 hex characters"))?;
        *o = u8::from_str_radix(pair, 16).map_err(|_| bad("not hex"))?;
    }
    Ok(out)
}

/// `STAYLINKED_WA_VERSION`: `auto` (with the sw.js URL) or `2.3000.N`.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the variable and the expected form.
pub fn parse_wa_version(text: &str, url: &str) -> Result<VersionSetting, ConfigError> {
    if text.trim().eq_ignore_ascii_case("auto") {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                var: "STAYLINKED_WA_VERSION_URL",
                detail: format!("{url:?} is not an http(s) URL"),
            });
        }
        return Ok(VersionSetting::Auto { url: url.to_owned() });
    }
    text.parse::<WaVersion>()
        .map(VersionSetting::Fixed)
        .map_err(|e| ConfigError::Invalid { var: "STAYLINKED_WA_VERSION", detail: format!("{e}, or `auto`") })
}

/// `hostname-pid-nonce`, the default lease holder id. The random nonce matters in containers,
/// where pid 1 and a reused hostname would otherwise give a new instance the old one's
/// identity during a deploy overlap (and let it re-acquire a lease that is still live).
pub fn default_holder_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "staylinked".to_owned());
    let nonce: u32 = rand::Rng::r#gen(&mut rand::rngs::OsRng);
    format!("{host}-{}-{nonce:08x}", std::process::id())
}

/// A configured holder id made unique per process: `{id}-{nonce}`. A fixed
/// `STAYLINKED_HOLDER_ID` (say the service name) would otherwise let a new revision's process
/// re-acquire, and so take over at once, the live lease of the old one still running.
pub fn unique_holder_id(configured: &str) -> String {
    let nonce: u32 = rand::Rng::r#gen(&mut rand::rngs::OsRng);
    format!("{configured}-{nonce:08x}")
}

impl Config {
    /// Validates parsed flags/env into a config.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending variable.
    pub fn from_args(a: &RunArgs) -> Result<Self, ConfigError> {
        let firestore_env = std::env::var_os("GOOGLE_CLOUD_PROJECT").is_some()
            || std::env::var_os("FIRESTORE_EMULATOR_HOST").is_some();
        let embedded = || StoreConfig::Embedded {
            path: a.store_path.clone().unwrap_or_else(|| crate::store::DEFAULT_EMBEDDED_PATH.into()),
        };
        let store = match a.store.as_deref() {
            Some("memory") => StoreConfig::Memory,
            Some("embedded") => embedded(),
            None if !firestore_env => embedded(),
            Some("firestore") if !firestore_env => {
                return Err(ConfigError::Invalid {
                    var: "STAYLINKED_STORE",
                    detail: "firestore needs GOOGLE_CLOUD_PROJECT or FIRESTORE_EMULATOR_HOST".into(),
                });
            }
            Some("firestore") | None => StoreConfig::from_env().map_err(ConfigError::Store)?,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "STAYLINKED_STORE",
                    detail: format!("{other:?} is not one of firestore, embedded, memory"),
                });
            }
        };
        if a.hydrate_concurrency == 0 {
            return Err(ConfigError::Invalid {
                var: "STAYLINKED_HYDRATE_CONCURRENCY",
                detail: "must be at least 1".into(),
            });
        }
        let wa_trust = match &a.wa_root_key {
            Some(k) => TrustAnchor { root_public: parse_root_key(k)?, root_serial: 0 },
            None => TrustAnchor::whatsapp(),
        };
        let api_key = parse_key("STAYLINKED_API_KEY", a.api_key.as_deref())?;
        let metrics_key = parse_key("STAYLINKED_METRICS_KEY", a.metrics_key.as_deref())?;
        let ip = listen_ip(a.bind, api_key.is_some(), a.insecure_no_auth)?;
        let wa_version = parse_wa_version(&a.wa_version, &a.wa_version_url)?;
        let device_name = a
            .device_name
            .parse::<DeviceName>()
            .map_err(|e| ConfigError::Invalid { var: "STAYLINKED_DEVICE_NAME", detail: e.to_string() })?;
        Ok(Self {
            listen: SocketAddr::new(ip, a.port),
            store,
            api_key,
            metrics_key,
            master_key: a.master_key.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned),
            master_keys_old: a.master_keys_old.clone().filter(|k| !k.trim().is_empty()),
            wa_url: a.wa_url.clone(),
            wa_trust,
            wa_version,
            device_name,
            shutdown_deadline: positive("STAYLINKED_SHUTDOWN_DEADLINE", a.shutdown_deadline)?,
            holder_id: a
                .holder_id
                .as_deref()
                .filter(|h| !h.is_empty())
                .map_or_else(default_holder_id, unique_holder_id),
            hydrate_concurrency: a.hydrate_concurrency,
            lease_ttl: positive("STAYLINKED_LEASE_TTL", a.lease_ttl)?,
            held_retry: positive("STAYLINKED_HELD_RETRY", a.held_retry)?,
            connect_stagger: Duration::from_millis(a.connect_stagger_ms),
            keepalive: positive("STAYLINKED_KEEPALIVE", a.keepalive)?,
            pacing: Pacing {
                per_minute: a.send_per_minute,
                gap_min: a.send_gap_min,
                gap_max: a.send_gap_max,
                warmup: a.send_warmup,
                typing: a.send_typing,
            }
            .validate()
            .map_err(|e| ConfigError::Invalid { var: "STAYLINKED_SEND_*", detail: e.to_string() })?,
            webhook: WebhookConfig {
                timeout: positive("STAYLINKED_WEBHOOK_TIMEOUT", a.webhook_timeout)?,
                retry_base: positive("STAYLINKED_WEBHOOK_RETRY_BASE", a.webhook_retry_base)?,
                retry_max: positive("STAYLINKED_WEBHOOK_RETRY_MAX", a.webhook_retry_max)?
                    .max(a.webhook_retry_base),
                egress: EgressPolicy { allow_private: a.webhook_allow_private },
            },
            limits: Limits {
                inbox_max_messages: at_least_one("STAYLINKED_INBOX_MAX_MESSAGES", a.inbox_max_messages)?,
                inbox_max_bytes: at_least_one("STAYLINKED_INBOX_MAX_BYTES", a.inbox_max_bytes)?,
                outbox_max_messages: at_least_one("STAYLINKED_OUTBOX_MAX_MESSAGES", a.outbox_max_messages)?,
                outbox_max_bytes: at_least_one("STAYLINKED_OUTBOX_MAX_BYTES", a.outbox_max_bytes)?,
            },
        })
    }

    /// A config for tests and the demo: memory store, open API, 127.0.0.1:0, the given
    /// simulator. Webhooks follow the production rules (https to public addresses only); tests
    /// that post to a local listener set `webhook.egress.allow_private` themselves.
    pub fn for_simulator(wa_url: String, root_public: [u8; 32], holder_id: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            store: StoreConfig::Memory,
            api_key: None,
            metrics_key: None,
            master_key: None,
            master_keys_old: None,
            wa_url,
            wa_trust: TrustAnchor { root_public, root_serial: 0 },
            wa_version: VersionSetting::Fixed(WaVersion::DEFAULT),
            device_name: DeviceName::default(),
            shutdown_deadline: Duration::from_secs(8),
            holder_id: holder_id.to_owned(),
            hydrate_concurrency: 16,
            lease_ttl: Duration::from_secs(30),
            held_retry: Duration::from_millis(250),
            connect_stagger: Duration::from_millis(5),
            keepalive: KEEPALIVE_INTERVAL,
            // Fast pacing so the demo and tests do not wait for minutes; production uses
            // the defaults (see `Pacing::default`).
            pacing: Pacing {
                per_minute: 600,
                gap_min: Duration::from_millis(20),
                gap_max: Duration::from_millis(60),
                warmup: Duration::from_millis(200),
                typing: false,
            },
            webhook: WebhookConfig {
                timeout: Duration::from_secs(5),
                retry_base: Duration::from_millis(50),
                retry_max: Duration::from_secs(2),
                egress: EgressPolicy { allow_private: false },
            },
            limits: Limits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root keys parse from 64 hex characters and nothing else.
    #[test]
    fn root_key_parsing() {
        let k = parse_root_key(&"ab".repeat(32)).unwrap();
        assert_eq!(k, [0xab; 32]);
        assert!(parse_root_key("abc").is_err());
        assert!(parse_root_key(&"zz".repeat(32)).is_err());
        assert!(parse_root_key(&"é".repeat(32)).is_err());
    }

    /// Durations parse with or without a unit (the deploy files write `8s`).
    #[test]
    fn duration_parsing() {
        assert_eq!(parse_duration("8"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("7500ms"), Ok(Duration::from_millis(7500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 2.5 "), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    /// `STAYLINKED_WA_VERSION` takes `2.3000.N` or `auto`; anything else is refused with a
    /// message naming the variable and the form; the default is the built-in version.
    #[test]
    fn wa_version_setting() {
        let url = crate::host::version::DEFAULT_SW_JS_URL;
        assert_eq!(
            parse_wa_version("2.3000.1050000000", url).unwrap(),
            VersionSetting::Fixed(WaVersion([2, 3000, 1_050_000_000]))
        );
        assert_eq!(parse_wa_version("AUTO", url).unwrap(), VersionSetting::Auto { url: url.to_owned() });
        let e = parse_wa_version("2.3000", url).unwrap_err().to_string();
        assert!(e.contains("STAYLINKED_WA_VERSION") && e.contains("2.3000.") && e.contains("auto"), "{e}");
        assert!(parse_wa_version("auto", "ftp://x").is_err());
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(
            parse_wa_version(&cli.run.wa_version, &cli.run.wa_version_url).unwrap(),
            VersionSetting::Fixed(WaVersion::DEFAULT)
        );
        assert_eq!(cli.run.device_name.parse::<DeviceName>().unwrap(), DeviceName::default());
    }

    /// Two processes on one host (or two containers with pid 1 and one hostname) never share a
    /// default holder id.
    /// M7: a configured holder id is made unique per process, so a second process with the
    /// same `STAYLINKED_HOLDER_ID` can never re-acquire (take over) the first one's live lease.
    #[test]
    fn configured_holder_ids_are_unique_per_process() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let args = Cli::parse_from(["x", "--holder-id", "svc", "--store", "memory"]).run;
        let (a, b) = (Config::from_args(&args).unwrap(), Config::from_args(&args).unwrap());
        assert_ne!(a.holder_id, b.holder_id, "two processes with one configured id got the same holder");
        assert!(a.holder_id.starts_with("svc-") && b.holder_id.starts_with("svc-"));
    }

    #[test]
    fn default_holder_ids_are_unique() {
        assert_ne!(default_holder_id(), default_holder_id());
    }
}
