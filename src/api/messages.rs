//! `POST /v1/tenants/{id}/messages` (queue a text in the tenant's paced outbox; 202 once the
//! item is durable) and `GET /v1/tenants/{id}/messages/{msg}` (its status).
//!
//! Validates bodies and maps outbox errors to stable codes; sends nothing itself.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::routes::{ApiResult, handle, json_body, writes_allowed};
use crate::host::Registry;
use crate::host::outbox::{MAX_TEXT_BYTES, OutboxError};

/// How long a send request waits for a starting tenant to take its lease.
const READY_WAIT: Duration = Duration::from_secs(5);
/// Longest recipient accepted.
const MAX_TO: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    to: String,
    text: String,
}

/// Normalises a recipient: a JID (`user@server`) as given, or a phone number with country code
/// (digits, optionally with `+`, spaces, dashes, dots or parentheses) as bare digits.
pub(crate) fn normalize_recipient(raw: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_recipient",
            "to must be a phone number with country code (e.g. 15551234567) or a JID \
             (15551234567@s.whatsapp.net, 120363000000000000@g.us)",
        )
    };
    let to = raw.trim();
    if to.is_empty()
        || to.len() > MAX_TO
        || to.chars().any(|c| c.is_whitespace() && c != ' ' || c.is_control())
    {
        return Err(bad());
    }
    if let Some((user, server)) = to.split_once('@') {
        let ok_part =
            |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
        if ok_part(user) && ok_part(server) && !server.contains('@') {
            return Ok(to.to_owned());
        }
        return Err(bad());
    }
    let body = to.strip_prefix('+').unwrap_or(to);
    if !body.chars().all(|c| c.is_ascii_digit() || " -.()".contains(c)) {
        return Err(bad());
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    if !(5..=20).contains(&digits.len()) {
        return Err(bad());
    }
    Ok(digits)
}

fn outbox_error(e: OutboxError) -> ApiError {
    match e {
        OutboxError::NotLinked => ApiError::new(
            StatusCode::CONFLICT,
            "not_linked",
            "tenant has no linked device; link it before sending",
        ),
        OutboxError::LeaseHeld { holder } => ApiError::new(
            StatusCode::CONFLICT,
            "lease_held",
            format!("tenant is served by another instance ({holder}); send the request there"),
        ),
        OutboxError::NotReady => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "tenant is starting and cannot queue messages yet; retry in a moment",
        ),
        OutboxError::Full { max } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "outbox_full",
            format!("{max} messages are already queued for this tenant; wait for them to go out"),
        ),
        OutboxError::FullBytes { max_bytes } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "outbox_full",
            format!(
                "the queued texts of this tenant would exceed {max_bytes} bytes; wait for them to go out"
            ),
        ),
        OutboxError::Store(detail) => {
            tracing::warn!(error = %detail, "outbox write failed in the store");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store is unavailable; nothing was queued; retry later",
            )
        }
        OutboxError::Closed => ApiError::shutting_down(),
    }
}

/// `POST /v1/tenants/{id}/messages` `{"to","text"}` → 202 `{"id","status":"queued",...}`.
pub(super) async fn send(
    State(reg): State<Arc<Registry>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    writes_allowed(&reg)?;
    let (_, h) = handle(&reg, &id)?;
    let b: SendBody = json_body(&body)?;
    let to = normalize_recipient(&b.to)?;
    if b.text.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_text", "text must not be empty"));
    }
    if b.text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text_too_long",
            format!("text must be at most {MAX_TEXT_BYTES} bytes"),
        ));
    }
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    let mut view = h.view.clone();
    let msg = loop {
        match h.outbox.enqueue(to.clone(), b.text.clone()).await {
            Err(OutboxError::NotReady) if tokio::time::Instant::now() < deadline => {
                // A starting tenant takes its lease within moments: wait for the next view.
                let _ = tokio::time::timeout_at(deadline, view.changed()).await;
            }
            r => {
                break r.map_err(|e| {
                    if matches!(e, OutboxError::Full { .. } | OutboxError::FullBytes { .. }) {
                        reg.ctx().metrics.count_outbox_full();
                    }
                    outbox_error(e)
                })?;
            }
        }
    };
    Ok((StatusCode::ACCEPTED, Json(msg)).into_response())
}

/// `GET /v1/tenants/{id}/messages/{msg}`: the message's status.
pub(super) async fn get(
    State(reg): State<Arc<Registry>>,
    Path((id, msg)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, h) = handle(&reg, &id)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "message_not_found",
            format!(
                "no message {msg:?} in this tenant's outbox (settled messages are kept for a while only)"
            ),
        )
    };
    if msg.is_empty() || msg.len() > 64 || !msg.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(not_found());
    }
    match h.outbox.get(msg.clone()).await.map_err(outbox_error)? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Phone numbers normalise to digits; JIDs pass as given; everything else is rejected.
    #[test]
    fn recipients() {
        assert_eq!(normalize_recipient(" +1 (555) 123-4567 ").unwrap(), "15551234567");
        assert_eq!(normalize_recipient("15551234567@s.whatsapp.net").unwrap(), "15551234567@s.whatsapp.net");
        assert_eq!(normalize_recipient("120363000000000000@g.us").unwrap(), "120363000000000000@g.us");
        for bad in ["", "abc", "123", "1@", "@s.whatsapp.net", "a@b@c", "+1555\n1234567", "1555 12a34567"] {
            assert!(normalize_recipient(bad).is_err(), "{bad:?}");
        }
    }
}
