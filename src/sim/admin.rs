//! The simulator's admin API under `/admin` (JSON). The contract (routes, bodies, status
//! codes) is relied on by tests, the demo and outside tools; change it only with them.
//!
//! Thin HTTP mapping over [`super::core::Sim`]'s admin methods; no protocol logic here.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::core::AdminError;
use super::faults::Fault;
use super::server::SimHandle;

/// The `/admin` routes.
pub(crate) fn router() -> Router<SimHandle> {
    Router::new()
        .route("/phones", post(add_phone))
        .route("/phones/{phone}/scan", post(scan))
        .route("/phones/{phone}/link-code", post(link_code))
        .route("/phones/{phone}/devices", get(devices))
        .route("/phones/{phone}/companions", post(provision))
        .route("/phones/{phone}/devices/{device}", delete(remove_device))
        .route("/phones/{phone}/send", post(phone_send))
        .route("/phones/{phone}/inbox", get(phone_inbox))
        .route("/phones/{phone}/sent", get(phone_sent))
        .route("/phones/{phone}/call", post(phone_call))
        .route("/phones/{phone}/hosted", get(hosted))
        .route("/phones/{phone}/retry", post(phone_retry))
        .route("/groups", post(create_group))
        .route("/faults", post(fault))
        .route("/stats", get(stats))
        .route("/config", put(put_config).get(get_config))
}

/// An admin error as HTTP: `{"error":{"code","message"}}`.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": {"code": self.1, "message": self.2}}))).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let (status, code) = match &e {
            AdminError::UnknownPhone => (StatusCode::NOT_FOUND, "phone_not_found"),
            AdminError::UnknownRef => (StatusCode::NOT_FOUND, "ref_not_found"),
            AdminError::ExpiredRef => (StatusCode::GONE, "ref_expired"),
            AdminError::DeviceLimit => (StatusCode::CONFLICT, "device_limit_reached"),
            AdminError::UnknownDevice => (StatusCode::NOT_FOUND, "device_not_found"),
            AdminError::NotOnline => (StatusCode::CONFLICT, "device_not_online"),
            AdminError::NoPendingLinkCode => (StatusCode::NOT_FOUND, "no_pending_link_code"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::UnknownRecipient => (StatusCode::NOT_FOUND, "recipient_not_found"),
        };
        Self(status, code, e.to_string())
    }
}

fn stopped() -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, "sim_stopped", "simulator is shutting down".into())
}

fn bad_body(e: &axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
}

#[derive(Deserialize)]
struct AddPhone {
    phone: String,
    #[serde(default)]
    name: Option<String>,
    /// Give the account a hosted (Cloud API) device `phone:99@hosted`.
    #[serde(default)]
    hosted: bool,
}

async fn add_phone(
    State(h): State<SimHandle>,
    body: Result<Json<AddPhone>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let (created, jid) = h
        .call(move |sim, _| {
            let r = sim.add_phone(&b.phone, b.name.as_deref().unwrap_or(""))?;
            if b.hosted {
                sim.add_hosted_device(&b.phone)?;
            }
            Ok::<_, AdminError>(r)
        })
        .await
        .map_err(|_| stopped())??;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"jid": jid})).into_response()).into_response())
}

#[derive(Deserialize)]
struct Scan {
    qr: String,
}

async fn scan(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
    body: Result<Json<Scan>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let jid = h.call(move |sim, now| sim.scan(now, &phone, &b.qr)).await.map_err(|_| stopped())??;
    Ok(Json(json!({"device_jid": jid})))
}

#[derive(Deserialize)]
struct LinkCode {
    code: String,
}

async fn link_code(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
    body: Result<Json<LinkCode>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let jid =
        h.call(move |sim, now| sim.enter_link_code(now, &phone, &b.code)).await.map_err(|_| stopped())??;
    Ok(Json(json!({"device_jid": jid})))
}

async fn devices(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = h.call(move |sim, _| sim.devices(&phone)).await.map_err(|_| stopped())??;
    let devices: Vec<_> = list
        .into_iter()
        .map(|d| {
            let presence = d.presence.map(|(typ, name)| json!({"type": typ, "name": name}));
            json!({"device_jid": d.device_jid, "linked_at": d.linked_at, "online": d.online, "logins": d.logins, "presence": presence})
        })
        .collect();
    Ok(Json(json!({"devices": devices})))
}

async fn remove_device(
    State(h): State<SimHandle>,
    Path((phone, device)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    h.call(move |sim, now| sim.remove_device(now, &phone, &device)).await.map_err(|_| stopped())??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct FaultBody {
    device_jid: String,
    fault: String,
}

async fn fault(
    State(h): State<SimHandle>,
    body: Result<Json<FaultBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let f = Fault::parse(&b.fault).ok_or_else(|| {
        ApiError(StatusCode::BAD_REQUEST, "bad_request", format!("unknown fault {:?}", b.fault))
    })?;
    h.call(move |sim, now| sim.inject_fault(now, &b.device_jid, f)).await.map_err(|_| stopped())??;
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(h): State<SimHandle>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = h.call(|sim, _| sim.stats()).await.map_err(|_| stopped())?;
    Ok(Json(serde_json::to_value(s).unwrap_or_default()))
}

async fn get_config(State(h): State<SimHandle>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = h.call(|sim, _| sim.settings().clone()).await.map_err(|_| stopped())?;
    Ok(Json(serde_json::to_value(s).unwrap_or_default()))
}

/// `PUT /admin/config`: a JSON object naming the settings to change (see `sim::settings`);
/// answers with all settings.
async fn put_config(
    State(h): State<SimHandle>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(patch) = body.map_err(|e| bad_body(&e))?;
    let s = h
        .call(move |sim, _| {
            let next = sim.settings().merged(&patch)?;
            sim.set_settings(next.clone());
            Ok::<_, super::settings::SettingsError>(next)
        })
        .await
        .map_err(|_| stopped())?
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    Ok(Json(serde_json::to_value(s).unwrap_or_default()))
}

#[derive(Deserialize)]
struct Send {
    to: String,
    text: String,
    /// Companions get `<unavailable type="view_once"/>` instead of the content.
    #[serde(default)]
    view_once: bool,
}

async fn phone_send(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
    body: Result<Json<Send>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let id = h
        .call(move |sim, now| {
            if b.view_once {
                sim.phone_send_view_once(now, &phone, &b.to, &b.text)
            } else {
                sim.phone_send(now, &phone, &b.to, &b.text)
            }
        })
        .await
        .map_err(|_| stopped())??;
    Ok(Json(json!({"id": id})))
}

#[derive(Deserialize)]
struct Call {
    to: String,
}

/// `POST /admin/phones/{phone}/call {"to"}`: rings every companion of `to` (offer, then
/// terminate); answers `{"call_id","devices"}`.
async fn phone_call(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
    body: Result<Json<Call>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let (call_id, devices) =
        h.call(move |sim, now| sim.phone_call(now, &phone, &b.to)).await.map_err(|_| stopped())??;
    Ok(Json(json!({"call_id": call_id, "devices": devices})))
}

#[derive(Deserialize)]
struct Retry {
    id: String,
}

/// `POST /admin/phones/{phone}/retry {"id"}`: the phone sends a retry receipt for a message it
/// received (202 with the device it asked).
async fn phone_retry(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
    body: Result<Json<Retry>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let to = h
        .call(move |sim, now| sim.phone_request_retry(now, &phone, &b.id))
        .await
        .map_err(|_| stopped())??;
    Ok((StatusCode::ACCEPTED, Json(json!({"to": to.to_string()}))).into_response())
}

async fn phone_inbox(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = h.call(move |sim, _| sim.phone_inbox(&phone)).await.map_err(|_| stopped())??;
    let messages: Vec<_> = list
        .into_iter()
        .map(|m| {
            json!({"id": m.id, "from": m.from.to_string(), "chat": m.chat.to_string(), "text": m.text, "t": m.t})
        })
        .collect();
    Ok(Json(json!({"messages": messages})))
}

async fn phone_sent(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = h.call(move |sim, _| sim.phone_sent(&phone)).await.map_err(|_| stopped())??;
    let messages: Vec<_> = list
        .into_iter()
        .map(|m| {
            let devices: serde_json::Map<String, serde_json::Value> =
                m.devices.iter().map(|(d, s)| (d.to_string(), json!(s.as_str()))).collect();
            json!({"id": m.id, "to": m.to.to_string(), "text": m.text, "t": m.t, "devices": devices})
        })
        .collect();
    Ok(Json(json!({"messages": messages})))
}

/// `GET /admin/phones/{phone}/hosted`: the hosted device and what it decrypted.
async fn hosted(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = phone.clone();
    let list = h.call(move |sim, _| sim.hosted_inbox(&p)).await.map_err(|_| stopped())??;
    let messages: Vec<_> = list
        .into_iter()
        .map(|m| json!({"id": m.id, "from": m.from.to_string(), "chat": m.chat.to_string(), "text": m.text, "t": m.t}))
        .collect();
    Ok(Json(json!({"device_jid": format!("{phone}:99@hosted"), "messages": messages})))
}

#[derive(Deserialize)]
struct NewGroup {
    subject: String,
    participants: Vec<String>,
}

async fn create_group(
    State(h): State<SimHandle>,
    body: Result<Json<NewGroup>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let jid = h
        .call(move |sim, now| sim.create_group(now, &b.subject, &b.participants))
        .await
        .map_err(|_| stopped())??;
    Ok((StatusCode::CREATED, Json(json!({"jid": jid}))).into_response())
}

#[derive(Deserialize)]
struct ProvisionBody {
    /// Base64 (standard) of the companion's Noise static public key.
    noise_pub: String,
    /// Base64 of its Signal identity public key.
    identity_pub: String,
    /// Base64 of its ADV secret (QR field 4).
    adv_secret: String,
    #[serde(default)]
    name: Option<String>,
    /// One-time pre-keys the server should believe it holds (default 50: no upload at login).
    #[serde(default)]
    prekeys: Option<u32>,
}

fn key32(field: &str, b64: &str) -> Result<[u8; 32], ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
        .ok_or_else(|| {
            ApiError(StatusCode::BAD_REQUEST, "bad_request", format!("{field} must be base64 of 32 bytes"))
        })
}

/// `POST /admin/phones/{phone}/companions`: links a companion without a QR round trip (bench
/// provisioning) and answers with the pair-success contents (201).
async fn provision(
    State(h): State<SimHandle>,
    Path(phone): Path<String>,
    body: Result<Json<ProvisionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let Json(b) = body.map_err(|e| bad_body(&e))?;
    let keys = super::CompanionKeys {
        noise_pub: key32("noise_pub", &b.noise_pub)?,
        identity_pub: key32("identity_pub", &b.identity_pub)?,
        adv_secret: key32("adv_secret", &b.adv_secret)?,
    };
    let name = b.name.unwrap_or_default();
    let prekeys = b.prekeys.unwrap_or(50);
    let p = h
        .call(move |sim, now| sim.provision_companion(now, &phone, &name, &keys, prekeys))
        .await
        .map_err(|_| stopped())??;
    let body = json!({
        "device_jid": p.device_jid,
        "device_lid": p.device_lid,
        "device_identity": base64::engine::general_purpose::STANDARD.encode(&p.device_identity),
        "platform": p.platform,
        "business_name": p.business_name,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
