//! The durable inbox over HTTP, for tenants without a webhook (or to drain one by hand):
//! `GET /v1/tenants/{id}/inbox?after=…&limit=…` pages undelivered events in arrival order;
//! `POST /v1/tenants/{id}/inbox/ack {"ids":[…]}` deletes them (committed, fenced by the
//! tenant's lease) before answering, which frees inbox space at once.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::routes::{ApiResult, handle, json_body, writes_allowed};
use crate::host::Registry;
use crate::store::{Delta, DeltaBatch};

/// Items per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 50;
/// Most items per page (and ids per ack).
pub(super) const MAX_LIMIT: usize = 500;

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// Inbox ids are host-made (`{unix_ms}-{seq}`); anything else is refused before the store.
fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn store_unavailable(e: &crate::store::StoreError) -> ApiError {
    tracing::warn!(error = %e, "inbox read or delete failed in the store");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the store is unavailable; retry later",
    )
}

/// `GET /v1/tenants/{id}/inbox?after=<id>&limit=<n>` →
/// `{"items":[{"id","event","data","created_at"}],"next":<last id or null>}`.
pub(super) async fn list(
    State(reg): State<Arc<Registry>>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Response> {
    let (tid, _) = handle(&reg, &id)?;
    let mut after = None;
    let mut limit = DEFAULT_LIMIT;
    for kv in uri.query().unwrap_or_default().split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("after", v)) if valid_id(v) => after = Some(v.to_owned()),
            Some(("after", _)) => return Err(bad("invalid_after", "after must be an inbox item id")),
            Some(("limit", v)) => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("invalid_limit", format!("limit must be 1..={MAX_LIMIT}")))?;
            }
            _ => {}
        }
    }
    let items = reg
        .ctx()
        .store
        .list_inbox_page(&tid, after.as_deref(), limit)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let next = items.last().map(|i| i.id.clone());
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|i| {
            let v: serde_json::Value =
                serde_json::from_slice(i.payload.expose()).unwrap_or(serde_json::Value::Null);
            serde_json::json!({
                "id": i.id,
                "event": v.get("event").cloned().unwrap_or(serde_json::Value::Null),
                "data": v.get("data").cloned().unwrap_or(serde_json::Value::Null),
                "created_at": crate::host::clock::rfc3339(i.created_at),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items, "next": next })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    ids: Vec<String>,
}

/// `POST /v1/tenants/{id}/inbox/ack {"ids":[…]}` → `{"acked":n}` once the items are deleted
/// durably (unknown ids are fine). 503 `not_ready` while the tenant holds no lease here.
pub(super) async fn ack(
    State(reg): State<Arc<Registry>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    writes_allowed(&reg)?;
    let (tid, h) = handle(&reg, &id)?;
    let b: AckBody = json_body(&body)?;
    if b.ids.len() > MAX_LIMIT {
        return Err(bad("too_many_ids", format!("at most {MAX_LIMIT} ids per ack")));
    }
    if let Some(bad_id) = b.ids.iter().find(|i| !valid_id(i)) {
        return Err(bad("invalid_id", format!("{bad_id:?} is not an inbox item id")));
    }
    let Some(fence) = h.view.borrow().fence() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "tenant holds no lease on this instance right now; retry in a moment",
        ));
    };
    if !b.ids.is_empty() {
        let mut batch = DeltaBatch::new();
        for i in &b.ids {
            batch.push(Delta::InboxDelete(i.clone()));
        }
        reg.ctx().store.commit(&tid, fence, &batch).await.map_err(|e| {
            if e.is_fenced() {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "tenant lease moved; retry in a moment",
                )
            } else {
                store_unavailable(&e)
            }
        })?;
        h.inbox.remove(b.ids.iter().map(String::as_str));
    }
    Ok((StatusCode::OK, Json(serde_json::json!({ "acked": b.ids.len() }))).into_response())
}
