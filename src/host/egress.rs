//! Outbound HTTP to URLs that API clients choose (webhooks today; media fetched for sending
//! later): the URL rules, the address rules and the one HTTP client that enforces them.
//!
//! Rules (unless [`EgressPolicy::allow_private`], `STAYLINKED_WEBHOOK_ALLOW_PRIVATE=1`, which is
//! for local development and tests and lifts both the scheme and the address rules):
//! - `https` only, a host, no `user:password@`;
//! - the host must not be, or resolve to, a loopback, link-local (169.254.0.0/16 with the cloud
//!   metadata server, fe80::/10), private (RFC 1918), CGNAT (100.64.0.0/10), unique-local
//!   (fc00::/7), multicast, documentation or otherwise reserved address, nor a metadata or
//!   `localhost` name.
//!
//! Checked twice: when the URL is accepted ([`check_url`] + [`resolve_public`], a 400 at the
//! API) and at every connection: the [`client`] resolves names through [`PublicResolver`],
//! which hands the connector only public addresses, so a name that re-resolves to an inside
//! address later (DNS rebinding) cannot be reached; IP-literal URLs never reach a resolver and
//! are re-checked by [`check_url`] before each request. The client follows no redirects, sends
//! no `Referer` and ignores proxy environment variables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

/// How long a name may take to resolve when a URL is checked.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which destinations outbound requests may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allow plain `http` and private, loopback and link-local destinations
    /// (`STAYLINKED_WEBHOOK_ALLOW_PRIVATE=1`; local development and tests only).
    pub allow_private: bool,
}

/// Why a URL may not be used as an outbound destination. Messages name the host, never the
/// path or query (which may carry tokens).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// Not an absolute URL.
    #[error("it does not parse as an absolute URL")]
    Parse,
    /// Scheme other than `https` (or `http` when private destinations are allowed).
    #[error("scheme {0:?} is not allowed; use https")]
    Scheme(String),
    /// No host.
    #[error("it has no host")]
    NoHost,
    /// `user:password@` in the URL.
    #[error("it carries user:password credentials; put a token in the path or query instead")]
    Userinfo,
    /// A `localhost` or cloud metadata name.
    #[error("host {0:?} is an internal name")]
    InternalName(String),
    /// The host is, or resolves to, a non-public address.
    #[error(
        "host {host:?} is or resolves to {ip}, a {class} address (only public addresses are reachable; STAYLINKED_WEBHOOK_ALLOW_PRIVATE=1 lifts this for local development)"
    )]
    Blocked {
        /// The host as written.
        host: String,
        /// The offending address.
        ip: IpAddr,
        /// What kind of address it is.
        class: &'static str,
    },
    /// The name did not resolve (or not in time).
    #[error("host {0:?} does not resolve")]
    Unresolvable(String),
}

/// Why an address is not public (`None`: it is a public unicast address).
pub fn non_public_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (10, _, _) | (192, 168, _) => "private",
        (172, b, _) if (16..32).contains(&b) => "private",
        (100, b, _) if (64..128).contains(&b) => "carrier-grade NAT",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (cloud metadata)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay",
        (198, b, _) if b == 18 || b == 19 => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address: judge that one.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return v4_class(embedded_v4(hi, lo)),
        [0x2002, hi, lo, ..] => return v4_class(embedded_v4(hi, lo)),
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible (deprecated)",
        [0x100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0, ..] => "Teredo",
        [0x2001, 0xdb8, ..] => "documentation",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique-local",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local (deprecated)",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        // Global unicast is 2000::/3; everything else is unassigned or reserved.
        [x, ..] if x & 0xe000 != 0x2000 => "reserved",
        _ => return None,
    })
}

/// Names that point inside whatever they resolve to.
fn is_internal_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h == "metadata"
        || h == "metadata.google.internal"
        || h.ends_with(".metadata.google.internal")
}

/// Checks a URL without any IO: scheme, host, credentials, IP literals and internal names.
/// Returns the parsed URL.
///
/// # Errors
/// [`EgressError`] saying what is wrong.
pub fn check_url(raw: &str, policy: EgressPolicy) -> Result<Url, EgressError> {
    let raw = raw.trim();
    // WHATWG parsing reads `https:///name` as host `name`; insist on a written authority.
    match raw.split_once("://") {
        Some((_, rest)) if !rest.is_empty() && !rest.starts_with('/') => {}
        Some(_) => return Err(EgressError::NoHost),
        None => return Err(EgressError::Parse),
    }
    let url = Url::parse(raw).map_err(|_| EgressError::Parse)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_private => {}
        other => return Err(EgressError::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EgressError::Userinfo);
    }
    let host = match url.host() {
        None => return Err(EgressError::NoHost),
        Some(url::Host::Domain("")) => return Err(EgressError::NoHost),
        Some(h) => h,
    };
    if policy.allow_private {
        return Ok(url);
    }
    let ip = match host {
        url::Host::Domain(d) if is_internal_name(d) => return Err(EgressError::InternalName(d.to_owned())),
        url::Host::Domain(_) => None,
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
    };
    if let Some(ip) = ip
        && let Some(class) = non_public_class(ip)
    {
        return Err(EgressError::Blocked { host: host.to_string(), ip, class });
    }
    Ok(url)
}

/// Resolves the URL's host (when it is a name) and refuses it if any address is not public.
/// A no-op with [`EgressPolicy::allow_private`] or for IP literals (see [`check_url`]).
///
/// # Errors
/// [`EgressError::Blocked`] or [`EgressError::Unresolvable`].
pub async fn resolve_public(url: &Url, policy: EgressPolicy) -> Result<(), EgressError> {
    if policy.allow_private {
        return Ok(());
    }
    let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await {
            Ok(Ok(a)) => a.collect(),
            _ => return Err(EgressError::Unresolvable(name.to_owned())),
        };
    if addrs.is_empty() {
        return Err(EgressError::Unresolvable(name.to_owned()));
    }
    for a in &addrs {
        if let Some(class) = non_public_class(a.ip()) {
            return Err(EgressError::Blocked { host: name.to_owned(), ip: a.ip(), class });
        }
    }
    Ok(())
}

/// [`check_url`] then [`resolve_public`]: the check made when a URL is accepted.
///
/// # Errors
/// [`EgressError`].
pub async fn validate(raw: &str, policy: EgressPolicy) -> Result<Url, EgressError> {
    let url = check_url(raw, policy)?;
    resolve_public(&url, policy).await?;
    Ok(url)
}

/// The client's resolver: the system resolver, keeping only public addresses, so the connector
/// can only ever connect to an address that passed the rules (no DNS-rebinding window between
/// a check and the connect).
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if is_internal_name(&host) {
                return Err(
                    Box::new(EgressError::InternalName(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| non_public_class(a.ip()).is_none()).collect();
            if public.is_empty() {
                let err = match all.first() {
                    Some(a) => EgressError::Blocked {
                        host,
                        ip: a.ip(),
                        class: non_public_class(a.ip()).unwrap_or("non-public"),
                    },
                    None => EgressError::Unresolvable(host),
                };
                return Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The outbound HTTP client: no redirects, no `Referer`, no proxy from the environment, and
/// (unless private destinations are allowed) `https` only through [`PublicResolver`].
///
/// # Errors
/// The client cannot be built (TLS set-up).
pub fn client(policy: EgressPolicy, user_agent: &str) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .no_proxy();
    if !policy.allow_private {
        b = b.https_only(true).dns_resolver(Arc::new(PublicResolver));
    }
    b.build()
}

/// A request error without its URL (reqwest's `Display` prints the URL, query tokens included).
pub fn scrub(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

/// A URL for logs: scheme, host and port only (path and query may carry tokens).
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/…", u.scheme()),
            (Some(h), None) => format!("{}://{h}/…", u.scheme()),
            _ => "<url>".to_owned(),
        },
        Err(_) => "<url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: EgressPolicy = EgressPolicy { allow_private: false };
    const DEV: EgressPolicy = EgressPolicy { allow_private: true };

    /// Every inside address the review listed (and their disguises) is refused; public ones pass.
    #[test]
    fn inside_addresses_are_refused() {
        for bad in [
            "https://127.0.0.1/x",
            "https://127.1.2.3:8443/x",
            "https://0x7f000001/",
            "https://2130706433/",
            "https://[::1]:18080/x",
            "https://169.254.169.254/computeMetadata/v1/",
            "https://10.0.0.1:8080/x",
            "https://172.16.5.4/",
            "https://172.31.255.255/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:c0a8:0101::1]/",
            "https://[ff02::1]/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
        ] {
            assert!(
                matches!(check_url(bad, STRICT), Err(EgressError::Blocked { .. })),
                "{bad}: {:?}",
                check_url(bad, STRICT)
            );
            assert!(check_url(bad, DEV).is_ok(), "{bad} with allow_private");
        }
        for ok in ["https://8.8.8.8/x", "https://[2606:4700::1111]/", "https://hooks.example.com/h?t=1"] {
            assert!(check_url(ok, STRICT).is_ok(), "{ok}: {:?}", check_url(ok, STRICT));
        }
    }

    /// Plain http, credentials, internal names and junk are refused; http is fine in dev mode.
    #[test]
    fn url_shapes() {
        assert_eq!(check_url("http://example.com/h", STRICT), Err(EgressError::Scheme("http".into())));
        assert!(check_url("http://127.0.0.1:9/h", DEV).is_ok());
        assert_eq!(check_url("ftp://example.com/h", DEV), Err(EgressError::Scheme("ftp".into())));
        assert_eq!(check_url("https://user:pass@example.com/", STRICT), Err(EgressError::Userinfo));
        for name in ["localhost", "LOCALHOST.", "a.localhost", "metadata.google.internal", "metadata"] {
            let u = format!("https://{name}/x");
            assert!(matches!(check_url(&u, STRICT), Err(EgressError::InternalName(_))), "{u}");
        }
        assert_eq!(check_url("not a url", STRICT), Err(EgressError::Parse));
        assert!(check_url("https:///nohost", STRICT).is_err());
    }

    /// A name resolving to loopback is refused at check time; the client's resolver hands the
    /// connector nothing for it.
    #[tokio::test]
    async fn names_are_resolved_and_judged() {
        let u = check_url("https://localhost.localdomain.invalid.test./", STRICT).unwrap();
        assert!(matches!(resolve_public(&u, STRICT).await, Err(EgressError::Unresolvable(_))));
        let r = reqwest::dns::Resolve::resolve(&PublicResolver, "localhost".parse().unwrap()).await;
        assert!(r.is_err());
        assert!(resolve_public(&u, DEV).await.is_ok());
    }

    /// Logged URLs keep scheme, host and port only.
    #[test]
    fn redacted_urls_drop_path_and_query() {
        assert_eq!(redact_url("https://h.example:8443/hook?token=tok_live_123"), "https://h.example:8443/…");
        assert_eq!(redact_url("nonsense"), "<url>");
    }
}
