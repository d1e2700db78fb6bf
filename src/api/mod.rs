//! The HTTP API (axum): health (`/healthz`, `/readyz`), `/metrics` (behind the metrics key when
//! one is set), and the `/v1/tenants` routes behind API-key auth. JSON errors with stable codes ([`error::ApiError`]).
//!
//! Handlers only read tenant views and send commands to tenant actors; no handler starts a
//! connection by itself, and health/status reads never touch the store or a socket.

pub mod auth;
pub mod error;
mod inbox;
pub mod listener;
mod messages;
pub mod qr;
mod routes;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::host::Registry;

/// The full router over `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    let v1 = Router::new()
        .route("/v1/tenants", post(routes::create).get(routes::list))
        .route("/v1/tenants/{id}", get(routes::get_one).delete(routes::delete).patch(routes::patch))
        .route("/v1/tenants/{id}/messages", post(messages::send))
        .route("/v1/tenants/{id}/messages/{msg}", get(messages::get))
        .route("/v1/tenants/{id}/inbox", get(inbox::list))
        .route("/v1/tenants/{id}/inbox/ack", post(inbox::ack))
        .route("/v1/tenants/{id}/link", post(routes::link))
        .route("/v1/tenants/{id}/qr", get(routes::qr))
        .route("/v1/tenants/{id}/pair-code", get(routes::pair_code))
        .route("/v1/tenants/{id}/logout", post(routes::logout))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&registry), auth::require_key));
    let metrics = Router::new()
        .route("/metrics", get(routes::metrics))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&registry), auth::require_metrics_key));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .merge(metrics)
        .merge(v1)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn(request_deadline))
        .layer(middleware::from_fn(request_span))
        .with_state(registry)
}

/// Longest time one request may take, body upload included (handlers wait at most 10 s for a
/// tenant actor).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers 408 `request_timeout` to a request (body included) that takes longer than
/// [`REQUEST_TIMEOUT`].
async fn request_deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => axum::response::IntoResponse::into_response(error::ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request took too long",
        )),
    }
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Runs each request inside a `request` span (method, route, request_id).
async fn request_span(req: Request, next: Next) -> Response {
    let route = req.uri().path().to_owned();
    let span = tracing::debug_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed)
    );
    next.run(req).instrument(span).await
}

/// Serves the API on `listener` until `stop` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>, stop: CancellationToken) {
    let app = router(registry);
    let listener =
        listener::LimitedListener::new(listener, listener::MAX_CONNECTIONS, listener::IDLE_TIMEOUT);
    let r = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    if let Err(e) = r {
        tracing::error!(error = %e, "http server failed");
    }
}
