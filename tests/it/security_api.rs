//! Issue 14 (security review) through the in-process host: webhook URLs checked at the API
//! (M1), no redirects and no Referer on deliveries (M1), the signed-timestamp signature (L1),
//! reserved tenant ids (L3), and a foreign document in the tenant listing (M9).

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse as _;
use staylinked::host::Host;
use staylinked::host::webhook::{DEFAULT_TOLERANCE_SECS, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_fresh};
use staylinked::store::{StoreConfig, TenantStatus};

use crate::host_util::*;

/// M1: with the production rules, webhook URLs to inside addresses, internal names, plain http
/// or with credentials are refused with 400 `invalid_webhook_url` on create and on PATCH, and
/// nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_webhook_urls_are_refused_at_the_api() {
    let sim = sim().await;
    let store = mem_store();
    let mut cfg = config(&sim, "ssrf");
    cfg.webhook.egress.allow_private = false;
    let host = Host::start(cfg, Arc::clone(&store)).await.unwrap();
    let a = host.api_addr();
    assert_eq!(http(a, "POST", "/v1/tenants", Some(r#"{"id":"t"}"#), &[]).await.status, 201);
    for url in [
        "http://127.0.0.1:35967/admin/stats",
        "https://127.0.0.1:35967/admin/stats",
        "https://169.254.169.254/computeMetadata/v1/",
        "https://metadata.google.internal/",
        "https://[::1]:18080/x",
        "https://0x7f000001/",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://100.64.1.1/hook",
        "https://[fd00::1]/hook",
        "https://localhost:8080/hook",
        "https://user:pass@example.com/hook",
        "http://example.com/hook",
    ] {
        let body = format!(r#"{{"id":"n","webhook_url":"{url}"}}"#);
        let r = http(a, "POST", "/v1/tenants", Some(&body), &[]).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "invalid_webhook_url"),
            "create {url}: {:?}",
            r.json()
        );
        let body = format!(r#"{{"webhook_url":"{url}"}}"#);
        let r = http(a, "PATCH", "/v1/tenants/t", Some(&body), &[]).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "invalid_webhook_url"),
            "patch {url}: {:?}",
            r.json()
        );
        let msg = r.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(!msg.contains("/admin") && !msg.contains("pass@"), "only the host is echoed: {msg}");
    }
    assert_eq!(store.read_status(&tid("n")).await.unwrap(), None);
    assert!(store.read_status(&tid("t")).await.unwrap().unwrap().webhook_url.is_none());
    host.shutdown().await;
}

/// What a webhook listener saw: per path, the headers of each request.
#[derive(Default)]
struct Seen {
    hits: Mutex<Vec<(String, HeaderMap, Vec<u8>)>>,
}

impl Seen {
    fn count(&self, path: &str) -> usize {
        self.hits.lock().unwrap().iter().filter(|(p, ..)| p == path).count()
    }
}

/// M1: a webhook endpoint answering `307` to an internal address is not followed (the target
/// never sees the signed body; the delivery counts as failed and is retried), no `Referer` is
/// sent. L1: the signature header is `t=<unix>,v1=<hex>` over `t.body`, fresh, and `t` equals
/// the timestamp header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_redirects_are_not_followed() {
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = l.local_addr().unwrap();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let s = Arc::clone(&s);
            async move {
                let path = uri.path().to_owned();
                s.hits.lock().unwrap().push((path.clone(), headers, body.to_vec()));
                if path == "/hook" {
                    let to = format!("http://{hook}/internal-admin");
                    (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response()
                } else {
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        },
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let sim = sim().await;
    let host = start(&sim, &mem_store(), "redir").await;
    let body = format!(r#"{{"id":"r","webhook_url":"http://{hook}/hook"}}"#);
    let r = http(host.api_addr(), "POST", "/v1/tenants", Some(&body), &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let secret = r.json()["webhook_secret"].as_str().unwrap().to_owned();
    let r = http(host.api_addr(), "POST", "/v1/tenants/r/link", Some(r#"{"method":"qr"}"#), &[]).await;
    assert_eq!(r.status, 202);
    poll("a retried delivery", || async { (seen.count("/hook") >= 2).then_some(()) }).await;
    assert_eq!(seen.count("/internal-admin"), 0, "the redirect must not be followed");
    let hits = seen.hits.lock().unwrap().clone();
    let now = staylinked::host::clock::unix_secs();
    for (_, headers, body) in &hits {
        assert!(headers.get("referer").is_none(), "no Referer: {headers:?}");
        let sig = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let ts = headers.get(TIMESTAMP_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(sig.starts_with(&format!("t={ts},v1=")), "signature header {sig:?}, timestamp {ts:?}");
        assert!(verify_fresh(secret.as_bytes(), body, sig, now, DEFAULT_TOLERANCE_SECS), "{sig}");
    }
    host.shutdown().await;
}

/// L3: `__x__` ids (reserved by Firestore) are refused with 400 on every backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_tenant_ids_are_refused() {
    let sim = sim().await;
    let host = start(&sim, &mem_store(), "reserved").await;
    for id in ["__x__", "__meta__"] {
        let body = format!(r#"{{"id":"{id}"}}"#);
        let r = http(host.api_addr(), "POST", "/v1/tenants", Some(&body), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_tenant_id"), "{id}: {:?}", r.json());
        let r = http(host.api_addr(), "GET", &format!("/v1/tenants/{id}"), None, &[]).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_tenant_id"));
    }
    host.shutdown().await;
}

/// M9: a document in the tenant table whose id is not a valid tenant id (another application's,
/// a console edit) is reported (`/readyz` `skipped`) and skipped; the host becomes ready and the
/// valid tenant is served. Embedded store (redb file edited underneath).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tenant_document_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");
    let cfg = StoreConfig::Embedded { path: path.clone() };
    {
        let store = staylinked::store::open(&cfg).await.unwrap();
        store.write_status(&tid("good"), &TenantStatus::default()).await.unwrap();
    }
    {
        use redb::ReadableTable as _;
        let table = redb::TableDefinition::<&str, &[u8]>::new("tenants");
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(table).unwrap();
            let row = t.get("good").unwrap().unwrap().value().to_vec();
            t.insert("Imported-Tenant", row.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let sim = sim().await;
    let store = staylinked::store::open(&cfg).await.unwrap();
    let host = Host::start(config(&sim, "m9"), store).await.unwrap();
    let a = host.api_addr();
    let ready = poll("ready", || async {
        let r = http(a, "GET", "/readyz", None, &[]).await;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert_eq!((ready["total"].as_u64(), ready["skipped"].as_u64()), (Some(1), Some(1)), "{ready}");
    let r = http(a, "GET", "/v1/tenants", None, &[]).await;
    let ids: Vec<String> = r.json()["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, ["good"]);
    host.shutdown().await;
}
