//! Webhook signatures: `t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret, "<t>." + raw
//! body)>`. The timestamp is inside the MAC, so a receiver that rejects old timestamps gets
//! replay protection (the README samples allow 5 minutes). Pure functions; no IO.

use hmac::{Hmac, Mac as _};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;

/// Name of the signature scheme inside the header (`v1=<hex>`).
pub const SIGNATURE_SCHEME: &str = "v1";
/// How far a receiver should let a signature's timestamp drift from its clock (seconds).
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` only fails for fixed-size MACs.
    let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The signature header value of `body` sent at `timestamp` (unix seconds) under `secret`:
/// `t=<timestamp>,v1=<hex>`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!("t={t},{SIGNATURE_SCHEME}={}", hex(&mac(secret, &t, body).finalize().into_bytes()))
}

/// The timestamp and raw MAC of a header value (`None` if malformed).
fn parse(header: &str) -> Option<(&str, u64, Vec<u8>)> {
    let mut t = None;
    let mut sig = None;
    for part in header.trim().split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some((SIGNATURE_SCHEME, v)) => sig = Some(v),
            _ => {}
        }
    }
    let (t, sig) = (t?, sig?);
    let secs: u64 = t.parse().ok()?;
    let bytes = sig.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut raw = Vec::with_capacity(32);
    for pair in bytes.chunks(2) {
        let text = std::str::from_utf8(pair).ok()?;
        raw.push(u8::from_str_radix(text, 16).ok()?);
    }
    Some((t, secs, raw))
}

/// Checks a signature header value (MAC over its own timestamp and the body) in constant time;
/// does not judge freshness (see [`verify_fresh`]).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    parse(header).is_some_and(|(t, _, raw)| mac(secret, t, body).verify_slice(&raw).is_ok())
}

/// [`verify`] plus freshness: the signed timestamp is within `tolerance_secs` of `now_secs`.
pub fn verify_fresh(secret: &[u8], body: &[u8], header: &str, now_secs: u64, tolerance_secs: u64) -> bool {
    parse(header).is_some_and(|(t, secs, raw)| {
        secs.abs_diff(now_secs) <= tolerance_secs && mac(secret, t, body).verify_slice(&raw).is_ok()
    })
}

/// A new webhook secret: `whsec_` + 64 hex characters (32 random bytes). The HMAC key is the
/// whole string's UTF-8 bytes, so receivers use it exactly as shown.
pub fn new_secret(rng: &mut (impl RngCore + CryptoRng)) -> String {
    let mut raw = [0u8; 32];
    rng.fill_bytes(&mut raw);
    format!("whsec_{}", hex(&raw))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    /// RFC 4231 test case 2 ("Jefe") with the signed payload `"<t>." + body`: standard
    /// HMAC-SHA256 in lowercase hex, header `t=<t>,v1=<hex>`.
    #[test]
    fn known_vector() {
        // HMAC-SHA256("Jefe", "1700000000.what do ya want for nothing?"), computed independently.
        let s = sign(b"Jefe", 1_700_000_000, b"what do ya want for nothing?");
        let expected = {
            let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(b"Jefe").unwrap();
            m.update(b"1700000000.what do ya want for nothing?");
            hex(&m.finalize().into_bytes())
        };
        assert_eq!(s, format!("t=1700000000,v1={expected}"));
        assert!(verify(b"Jefe", b"what do ya want for nothing?", &s));
        // Plain RFC 4231 case 2 still checks the primitive.
        let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// A changed body, timestamp or secret, or a malformed header never verifies.
    #[test]
    fn tampering_fails() {
        let s = sign(b"k", 100, b"{\"a\":1}");
        assert!(verify(b"k", b"{\"a\":1}", &s));
        assert!(!verify(b"k", b"{\"a\":2}", &s));
        assert!(!verify(b"other", b"{\"a\":1}", &s));
        let moved = s.replacen("t=100", "t=101", 1);
        assert!(!verify(b"k", b"{\"a\":1}", &moved), "the timestamp is signed");
        for bad in ["", "t=100", "v1=00", "t=x,v1=00", "sha256=00", &s[..s.len() - 1], "t=100,v1=é"] {
            assert!(!verify(b"k", b"{\"a\":1}", bad), "{bad:?}");
        }
    }

    /// Freshness: within the tolerance either way passes, outside fails.
    #[test]
    fn freshness_window() {
        let s = sign(b"k", 1_000, b"x");
        assert!(verify_fresh(b"k", b"x", &s, 1_000 + 300, DEFAULT_TOLERANCE_SECS));
        assert!(verify_fresh(b"k", b"x", &s, 1_000 - 300, DEFAULT_TOLERANCE_SECS));
        assert!(!verify_fresh(b"k", b"x", &s, 1_000 + 301, DEFAULT_TOLERANCE_SECS));
    }

    /// Secrets are unique and shaped `whsec_<64 hex>`.
    #[test]
    fn secrets_are_fresh() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (a, b) = (new_secret(&mut rng), new_secret(&mut rng));
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 64);
        assert!(a.starts_with("whsec_") && a[6..].bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
