//! Key authentication: `/v1` routes need the API key, `/metrics` the metrics key when one is
//! configured; either is presented as `X-API-Key: KEY` or `Authorization: Bearer KEY`.
//!
//! Keys are compared as SHA-256 digests with a constant-time equality, so neither the content
//! nor the length of the configured key leaks through timing. Health routes are mounted outside
//! these layers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use crate::host::Registry;

/// Whether `presented` equals `expected`: both are hashed to 32 bytes first, then compared in
/// constant time (the time depends on neither key's content nor on the configured length).
pub(crate) fn key_matches(presented: &[u8], expected: &[u8]) -> bool {
    let (p, e) = (Sha256::digest(presented), Sha256::digest(expected));
    p.as_slice().ct_eq(e.as_slice()).into()
}

/// The key presented by a request, if any.
fn presented(req: &Request) -> Option<&str> {
    let h = req.headers();
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

fn check(req: &Request, key: Option<&str>) -> bool {
    key.is_none_or(|key| presented(req).is_some_and(|p| key_matches(p.as_bytes(), key.as_bytes())))
}

/// Middleware of `/v1`: rejects requests without the configured API key. Without one the API is
/// open, which `Config::from_args` allows only on a loopback bind (or by explicit opt-in).
pub(super) async fn require_key(State(reg): State<Arc<Registry>>, req: Request, next: Next) -> Response {
    if !check(&req, reg.ctx().config.api_key.as_deref()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

/// Middleware of `/metrics`: rejects requests without the metrics key when one is configured.
pub(super) async fn require_metrics_key(
    State(reg): State<Arc<Registry>>,
    req: Request,
    next: Next,
) -> Response {
    if !check(&req, reg.ctx().config.metrics_key.as_deref()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys match only when identical, whatever their lengths.
    #[test]
    fn keys_compare_by_digest() {
        let k = b"0123456789abcdef0123456789abcdef";
        assert!(key_matches(k, k));
        assert!(!key_matches(b"0123456789abcdef0123456789abcdeg", k));
        assert!(!key_matches(b"0123456789abcdef0123456789abcde", k));
        assert!(!key_matches(b"0123456789abcdef0123456789abcdef0", k));
        assert!(!key_matches(b"", k));
    }
}
