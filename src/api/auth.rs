//! API-key authentication for `/v1` routes: `X-API-Key: KEY` or `Authorization: Bearer KEY`,
//! compared in constant time. Health routes are mounted outside this layer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::error::ApiError;
use crate::host::Registry;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// Middleware: rejects requests without the configured key (open when none is configured).
pub(super) async fn require_key(State(reg): State<Arc<Registry>>, req: Request, next: Next) -> Response {
    if let Some(key) = reg.ctx().config.api_key.as_deref() {
        let ok = presented(&req).is_some_and(|p| constant_time_eq(p.as_bytes(), key.as_bytes()));
        if !ok {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys compare equal only when identical.
    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
