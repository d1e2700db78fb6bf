//! Route handlers. Each maps its failure to an [`ApiError`] with a stable code; none starts a
//! connection except `link` (which asks the tenant actor to link).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::qr;
use crate::host::Registry;
use crate::host::clock;
use crate::host::egress::{self, EgressPolicy};
use crate::host::state::{CommandError, LinkMethod, TenantCommand, TenantView};
use crate::host::supervisor::CreateError;
use crate::host::tenant::TenantHandle;
use crate::store::SecretBytes;
use crate::store::model::{PacingOverride, PresenceType};
use crate::types::TenantId;

/// How long a handler waits for a tenant actor to answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type ApiResult<T> = Result<T, ApiError>;

fn parse_id(id: &str) -> ApiResult<TenantId> {
    TenantId::new(id).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_tenant_id", e.to_string()))
}

pub(super) fn handle(reg: &Registry, id: &str) -> ApiResult<(TenantId, TenantHandle)> {
    let tid = parse_id(id)?;
    let h = reg.get(&tid).ok_or_else(|| ApiError::tenant_not_found(id))?;
    Ok((tid, h))
}

pub(super) fn json_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(ApiError::invalid_body)
}

pub(super) fn writes_allowed(reg: &Registry) -> ApiResult<()> {
    if reg.is_accepting() { Ok(()) } else { Err(ApiError::shutting_down()) }
}

fn command_error(e: CommandError) -> ApiError {
    match e {
        CommandError::AlreadyLinked => ApiError::new(
            StatusCode::CONFLICT,
            "already_linked",
            "tenant already has a linked device; POST /logout first to link a new one",
        ),
        CommandError::NotLinked => {
            ApiError::new(StatusCode::CONFLICT, "not_linked", "tenant has no linked device")
        }
        CommandError::LeaseHeld { holder } => ApiError::new(
            StatusCode::CONFLICT,
            "lease_held",
            format!("tenant is served by another instance ({holder}); send the request there"),
        ),
        CommandError::ShuttingDown => ApiError::shutting_down(),
        CommandError::NotConnected => {
            ApiError::new(StatusCode::CONFLICT, "not_connected", "tenant is not connected right now")
        }
        CommandError::InvalidRecipient(detail) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_recipient", detail)
        }
        CommandError::Store(detail) => {
            tracing::warn!(error = %detail, "command failed in the store");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store is unavailable; retry later",
            )
        }
    }
}

/// Sends a command and waits for the answer.
async fn call(
    h: &TenantHandle,
    make: impl FnOnce(oneshot::Sender<Result<(), CommandError>>) -> TenantCommand,
) -> ApiResult<Result<(), CommandError>> {
    let (tx, rx) = oneshot::channel();
    let timeout =
        || ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "the tenant did not answer in time; retry");
    tokio::time::timeout(COMMAND_TIMEOUT, h.commands.send(make(tx)))
        .await
        .map_err(|_| timeout())?
        .map_err(|_| ApiError::shutting_down())?;
    tokio::time::timeout(COMMAND_TIMEOUT, rx)
        .await
        .map_err(|_| timeout())?
        .map_err(|_| ApiError::shutting_down())
}

/// `GET /healthz`: the process is up (never touches tenants or the store).
pub(super) async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: 200 once cold-start hydration is done, 503 before; body shows progress.
pub(super) async fn readyz(State(reg): State<Arc<Registry>>) -> Response {
    let p = reg.progress();
    let status = if p.ready && reg.is_accepting() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(p)).into_response()
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(State(reg): State<Arc<Registry>>) -> Response {
    let body = reg.ctx().metrics.render(&reg.states());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Unknown route.
pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
}

/// Known route, wrong method.
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: String,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    pacing: Option<PacingOverride>,
    #[serde(default)]
    push_name: Option<String>,
    #[serde(default)]
    presence: Option<PresenceType>,
}

/// Longest push name accepted (characters).
const PUSH_NAME_MAX: usize = 64;

/// Checks a push name: 1..=64 characters after trimming, no control characters. Returns it
/// trimmed.
fn validate_push_name(raw: &str) -> ApiResult<String> {
    let n = raw.trim();
    if n.is_empty() || n.chars().count() > PUSH_NAME_MAX || n.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_push_name",
            format!("push_name must be 1 to {PUSH_NAME_MAX} characters without control characters"),
        ));
    }
    Ok(n.to_owned())
}

/// Checks per-tenant pacing overrides against the host defaults.
fn validate_pacing(reg: &Registry, p: &PacingOverride) -> ApiResult<()> {
    reg.ctx().config.pacing.with_override(p).map(|_| ()).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_pacing", format!("pacing is invalid: {e}"))
    })
}

/// A view as JSON with the webhook secret added (shown once, at creation or rotation).
fn with_secret(view: &TenantView, secret: Option<String>) -> ApiResult<serde_json::Value> {
    let mut v = serde_json::to_value(view).map_err(ApiError::internal)?;
    if let (Some(secret), Some(obj)) = (secret, v.as_object_mut()) {
        obj.insert("webhook_secret".to_owned(), serde_json::Value::String(secret));
    }
    Ok(v)
}

/// Longest webhook URL accepted (it is stored in the status doc).
const WEBHOOK_URL_MAX: usize = 2048;

/// Checks a webhook URL: at most [`WEBHOOK_URL_MAX`] bytes without spaces or control
/// characters, then the egress rules (`host::egress`: https to a public address, resolved now;
/// with `STAYLINKED_WEBHOOK_ALLOW_PRIVATE=1` also http and private addresses). Returns it
/// trimmed.
async fn validate_webhook_url(raw: &str, policy: EgressPolicy) -> ApiResult<String> {
    let url = raw.trim();
    let bad = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_webhook_url",
            format!("webhook_url is not accepted: {why}"),
        )
    };
    if url.is_empty() {
        return Err(bad("it is empty"));
    }
    if url.len() > WEBHOOK_URL_MAX {
        return Err(bad(&format!("it is longer than {WEBHOOK_URL_MAX} bytes")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace or control characters"));
    }
    egress::validate(url, policy).await.map_err(|e| bad(&e.to_string()))?;
    Ok(url.to_owned())
}

/// `POST /v1/tenants`.
pub(super) async fn create(State(reg): State<Arc<Registry>>, body: Bytes) -> ApiResult<Response> {
    writes_allowed(&reg)?;
    let b: CreateBody = json_body(&body)?;
    let id = parse_id(&b.id)?;
    let policy = reg.ctx().config.webhook.egress;
    let webhook_url = match b.webhook_url.as_deref() {
        Some(u) => Some(validate_webhook_url(u, policy).await?),
        None => None,
    };
    if let Some(p) = &b.pacing {
        validate_pacing(&reg, p)?;
    }
    let presence = crate::host::supervisor::PresenceSettings {
        push_name: b.push_name.as_deref().map(validate_push_name).transpose()?,
        presence: b.presence,
    };
    match reg.create_with(id.clone(), webhook_url, b.pacing, presence).await {
        Ok((view, secret)) => {
            Ok((StatusCode::CREATED, Json(with_secret(&view, Some(secret))?)).into_response())
        }
        Err(CreateError::Exists) => {
            Err(ApiError::new(StatusCode::CONFLICT, "tenant_exists", format!("tenant {id} already exists")))
        }
        Err(CreateError::ShuttingDown) => Err(ApiError::shutting_down()),
        Err(CreateError::Store(e)) => {
            tracing::warn!(error = %e, "create failed in the store");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store is unavailable; retry later",
            ))
        }
    }
}

/// `GET /v1/tenants`.
pub(super) async fn list(State(reg): State<Arc<Registry>>) -> impl IntoResponse {
    Json(serde_json::json!({"tenants": reg.list()}))
}

/// `GET /v1/tenants/{id}`: the actor's published view (no store read, no connect).
pub(super) async fn get_one(State(reg): State<Arc<Registry>>, Path(id): Path<String>) -> ApiResult<Response> {
    let (_, h) = handle(&reg, &id)?;
    let view = h.view.borrow().clone();
    Ok(Json(view).into_response())
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default, deserialize_with = "double_option")]
    webhook_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pacing: Option<Option<PacingOverride>>,
    #[serde(default)]
    rotate_webhook_secret: bool,
    #[serde(default, deserialize_with = "double_option")]
    push_name: Option<Option<String>>,
    #[serde(default)]
    presence: Option<PresenceType>,
}

/// `PATCH /v1/tenants/{id}` `{"webhook_url"?, "pacing"?, "rotate_webhook_secret"?,
/// "push_name"?, "presence"?}`: changes the tenant's webhook URL (`null` removes it), pacing
/// overrides (`null` returns to the host defaults), push name (`null`: the one from pairing)
/// and presence type (`available`/`unavailable`; both are announced at once when connected),
/// or rotates the webhook secret (the new one is in this response only).
pub(super) async fn patch(
    State(reg): State<Arc<Registry>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    writes_allowed(&reg)?;
    let (_, h) = handle(&reg, &id)?;
    let b: PatchBody = json_body(&body)?;
    let webhook_url = match b.webhook_url {
        Some(Some(u)) => Some(Some(validate_webhook_url(&u, reg.ctx().config.webhook.egress).await?)),
        other => other,
    };
    if let Some(Some(p)) = &b.pacing {
        validate_pacing(&reg, p)?;
    }
    let needs_secret = b.rotate_webhook_secret || h.view.borrow().webhook_secret.is_none();
    let secret = needs_secret.then(|| crate::host::webhook::new_secret(&mut rand::rngs::OsRng));
    let webhook_secret = secret.as_ref().map(|s| SecretBytes::new(s.clone().into_bytes()));
    let pacing = b.pacing;
    let push_name = match b.push_name {
        Some(Some(n)) => Some(Some(validate_push_name(&n)?)),
        other => other,
    };
    let presence = b.presence;
    call(&h, |reply| TenantCommand::Configure {
        webhook_url,
        webhook_secret,
        pacing,
        push_name,
        presence,
        reply,
    })
    .await?
    .map_err(command_error)?;
    let view = h.view.borrow().clone();
    Ok(Json(with_secret(&view, secret)?).into_response())
}

#[derive(Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
enum LinkBody {
    Qr,
    Code { phone: String },
}

/// `POST /v1/tenants/{id}/link`.
pub(super) async fn link(
    State(reg): State<Arc<Registry>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    writes_allowed(&reg)?;
    let (_, h) = handle(&reg, &id)?;
    let b: LinkBody = if body.is_empty() { LinkBody::Qr } else { json_body(&body)? };
    let method = match b {
        LinkBody::Qr => LinkMethod::Qr,
        LinkBody::Code { phone } => {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            if digits.len() < 7 || digits.len() > 15 || phone.chars().any(|c| c.is_alphabetic()) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_phone",
                    "phone must be 7 to 15 digits with country code, e.g. 15551234567",
                ));
            }
            LinkMethod::Code { phone: digits }
        }
    };
    call(&h, |reply| TenantCommand::Link { method, reply }).await?.map_err(command_error)?;
    let view = h.view.borrow().clone();
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// `GET /v1/tenants/{id}/qr[?format=text|json]`.
pub(super) async fn qr(
    State(reg): State<Arc<Registry>>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Response> {
    let (_, h) = handle(&reg, &id)?;
    let Some(q) = h.view.borrow().qr.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "qr_not_available",
            "no QR is showing; POST /link with {\"method\":\"qr\"} and retry in a moment",
        ));
    };
    let format = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("format="))
        .unwrap_or("png")
        .to_owned();
    match format.as_str() {
        "json" => Ok(Json(serde_json::json!({"qr": q.qr, "expires_at": clock::rfc3339(q.expires_at_ms)}))
            .into_response()),
        "text" => {
            let t = qr::text(&q.qr).map_err(ApiError::internal)?;
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response())
        }
        "png" => {
            let p = qr::png(&q.qr).map_err(ApiError::internal)?;
            Ok(([(header::CONTENT_TYPE, "image/png")], p).into_response())
        }
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_format",
            format!("format {other:?} is not one of png, text, json"),
        )),
    }
}

/// `GET /v1/tenants/{id}/pair-code`.
pub(super) async fn pair_code(
    State(reg): State<Arc<Registry>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (_, h) = handle(&reg, &id)?;
    let code = h.view.borrow().pair_code.clone();
    match code {
        Some(code) => Ok(Json(serde_json::json!({"code": code})).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "pair_code_not_available",
            "no pair code yet; POST /link with {\"method\":\"code\",\"phone\":\"...\"} and retry in a moment",
        )),
    }
}

/// `POST /v1/tenants/{id}/logout`.
pub(super) async fn logout(State(reg): State<Arc<Registry>>, Path(id): Path<String>) -> ApiResult<Response> {
    writes_allowed(&reg)?;
    let (_, h) = handle(&reg, &id)?;
    call(&h, |reply| TenantCommand::Logout { reply }).await?.map_err(command_error)?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"logging_out": true}))).into_response())
}

/// `DELETE /v1/tenants/{id}`: logs out first (when linked), then the tenant's actor deletes
/// all its stored state (creds, keys, outbox, events, status doc) and exits. An unlinked tenant
/// is deleted before the answer; a linked one once its logout went through.
pub(super) async fn delete(State(reg): State<Arc<Registry>>, Path(id): Path<String>) -> ApiResult<Response> {
    writes_allowed(&reg)?;
    let (tid, h) = handle(&reg, &id)?;
    call(&h, |reply| TenantCommand::Delete { reply }).await?.map_err(command_error)?;
    reg.forget(&tid);
    Ok(Json(serde_json::json!({"deleted": true})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: EgressPolicy = EgressPolicy { allow_private: true };
    const STRICT: EgressPolicy = EgressPolicy { allow_private: false };

    /// Well-formed URLs pass (trimmed); every other shape is `invalid_webhook_url`. Private
    /// and plain-http destinations pass only with `allow_private`.
    #[tokio::test]
    async fn webhook_url_validation() {
        for ok in ["https://example.com/h", "http://10.0.0.1:8080/x?y=1", "  HTTPS://a.b/c  "] {
            let v = validate_webhook_url(ok, DEV).await.unwrap_or_else(|e| panic!("{ok:?} rejected: {e:?}"));
            assert_eq!(v, ok.trim());
        }
        let long = format!("https://a.com/{}", "x".repeat(WEBHOOK_URL_MAX));
        for bad in [
            "",
            "   ",
            "example.com/h",
            "/relative/path",
            "ftp://example.com/h",
            "javascript:alert(1)",
            "https://",
            "https:///nohost",
            "https://exa mple.com/",
            "https://example.com/a\nb",
            "mailto:a@b.c",
            long.as_str(),
        ] {
            let e = validate_webhook_url(bad, DEV).await.err().unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_webhook_url"), "{bad:?}");
        }
        for inside in [
            "http://10.0.0.1:8080/x",
            "https://10.0.0.1:8080/x",
            "https://127.0.0.1:35967/admin/stats",
            "https://169.254.169.254/computeMetadata/v1/",
            "https://metadata.google.internal/",
            "https://[::1]:18080/x",
            "https://0x7f000001/",
            "https://user:pass@example.com/",
            "https://localhost/x",
        ] {
            let e = validate_webhook_url(inside, STRICT)
                .await
                .err()
                .unwrap_or_else(|| panic!("{inside:?} accepted"));
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_webhook_url"), "{inside:?}");
        }
    }
}
