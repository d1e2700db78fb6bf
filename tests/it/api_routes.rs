//! The HTTP API: auth (X-API-Key / Bearer, health routes open), stable error codes, the
//! linking flow through `/link` + `/qr`, `/metrics`, delete.

use std::sync::Arc;

use staylinked::host::Host;
use staylinked::host::state::TenantState;

use crate::host_util::*;

const KEY: &str = "test-key-123";

async fn keyed_host(sim: &staylinked::sim::Server) -> Host {
    let mut cfg = config(sim, "api");
    cfg.api_key = Some(KEY.to_owned());
    Host::start(cfg, Arc::clone(&mem_store())).await.unwrap()
}

/// Health routes are open; /v1 needs the key (either header form); wrong or missing → 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_rules() {
    let sim = sim().await;
    let host = keyed_host(&sim).await;
    let a = host.api_addr();
    assert_eq!(http(a, "GET", "/healthz", None, &[]).await.status, 200);
    assert_eq!(http(a, "GET", "/metrics", None, &[]).await.status, 200);
    let r = http(a, "GET", "/v1/tenants", None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    let r = http(a, "GET", "/v1/tenants", None, &[("X-API-Key", "nope")]).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    assert_eq!(http(a, "GET", "/v1/tenants", None, &[("X-API-Key", KEY)]).await.status, 200);
    let bearer = format!("Bearer {KEY}");
    assert_eq!(http(a, "GET", "/v1/tenants", None, &[("Authorization", &bearer)]).await.status, 200);
    host.shutdown().await;
}

/// Every error path returns its stable code; the QR flow works in png/text/json; a second link
/// of a linked tenant is 409 `already_linked`; delete removes the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_and_link_flow() {
    let sim = sim().await;
    let host = keyed_host(&sim).await;
    let a = host.api_addr();
    let k = [("X-API-Key", KEY)];
    let call =
        |m: &'static str, p: String, b: Option<&'static str>| async move { http(a, m, &p, b, &k).await };

    let r = call("POST", "/v1/tenants".into(), Some(r#"{"id":"Bad Id"}"#)).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_tenant_id"));
    let r = call("POST", "/v1/tenants".into(), Some("{not json")).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_body"));
    let r = call("POST", "/v1/tenants".into(), Some(r#"{"id":"acme","webhook_url":"http://127.0.0.1:9/h"}"#))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["state"], "unlinked");
    let r = call("POST", "/v1/tenants".into(), Some(r#"{"id":"acme"}"#)).await;
    assert_eq!((r.status, r.code().as_str()), (409, "tenant_exists"));
    let r = call("GET", "/v1/tenants/nope".into(), None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "tenant_not_found"));
    let r = call("GET", "/v1/tenants/acme/qr".into(), None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "qr_not_available"));
    let r = call("GET", "/v1/tenants/acme/pair-code".into(), None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "pair_code_not_available"));
    let r = call("POST", "/v1/tenants/acme/logout".into(), None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "not_linked"));
    let r = call("POST", "/v1/tenants/acme/link".into(), Some(r#"{"method":"code","phone":"abc"}"#)).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_phone"));
    let r = call("POST", "/v1/tenants/acme/link".into(), Some(r#"{"method":"fax"}"#)).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_body"));
    let r = call("GET", "/v1/nothing".into(), None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "route_not_found"));
    let r = call("PUT", "/v1/tenants/acme".into(), None).await;
    assert_eq!((r.status, r.code().as_str()), (405, "method_not_allowed"));

    // Link by QR through the API; the simulated phone scans the JSON QR.
    let r = call("POST", "/v1/tenants/acme/link".into(), Some(r#"{"method":"qr"}"#)).await;
    assert_eq!(r.status, 202);
    let qr = poll("qr", || async {
        let r = call("GET", "/v1/tenants/acme/qr?format=json".into(), None).await;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert!(qr["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let png = call("GET", "/v1/tenants/acme/qr".into(), None).await;
    assert_eq!((png.status, png.content_type.as_str()), (200, "image/png"));
    assert!(png.body.starts_with(b"\x89PNG"));
    let text = call("GET", "/v1/tenants/acme/qr?format=text".into(), None).await;
    assert!(text.status == 200 && text.content_type.starts_with("text/plain"));
    let r = call("GET", "/v1/tenants/acme/qr?format=gif".into(), None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_format"));
    let qr = qr["qr"].as_str().unwrap().to_owned();
    sim.with_sim(|s, _| s.add_phone("15550009999", "x")).await.unwrap().unwrap();
    sim.with_sim(move |s, now| s.scan(now, "15550009999", &qr)).await.unwrap().unwrap();
    wait_state(&host, &tid("acme"), TenantState::Connected).await;
    let r = call("GET", "/v1/tenants/acme".into(), None).await;
    assert_eq!(r.json()["state"], "connected");
    assert_eq!(r.json()["webhook_url"], "http://127.0.0.1:9/h");
    let r = call("POST", "/v1/tenants/acme/link".into(), Some(r#"{"method":"qr"}"#)).await;
    assert_eq!((r.status, r.code().as_str()), (409, "already_linked"));
    let m = call("GET", "/metrics".into(), None).await;
    let m = String::from_utf8_lossy(&m.body).to_string();
    assert!(m.contains("staylinked_tenants{state=\"connected\"} 1"), "{m}");
    assert!(m.contains("staylinked_commit_seconds_count"));

    // Delete logs out first (the phone no longer lists the device), then the tenant is gone.
    let h = host.registry().get(&tid("acme")).unwrap();
    let mut views = h.view.clone();
    let watch = tokio::spawn(async move {
        let mut seen = Vec::new();
        while views.changed().await.is_ok() {
            let v = views.borrow().clone();
            seen.push(format!("{}:{:?}:{:?}", v.state.as_str(), v.last_disconnect.map(|d| d.code), v.error));
        }
        seen
    });
    let r = call("DELETE", "/v1/tenants/acme".into(), None).await;
    assert_eq!(r.status, 200);
    let unlinked = tokio::time::timeout(WAIT, async {
        while staylinked::demo::devices_on_phone(&sim, "15550009999").await.unwrap() != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    if unlinked.is_err() {
        watch.abort();
        panic!("device still linked; tenant went through {:?}", watch.await);
    }
    let r = call("GET", "/v1/tenants/acme".into(), None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "tenant_not_found"));
    host.shutdown().await;
}

/// Linking by pair code through the API: the code appears on `/pair-code`, the phone enters
/// it, the tenant connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_pair_code() {
    let sim = sim().await;
    let host = keyed_host(&sim).await;
    let a = host.api_addr();
    let k = [("X-API-Key", KEY)];
    sim.with_sim(|s, _| s.add_phone("15550008888", "x")).await.unwrap().unwrap();
    assert_eq!(http(a, "POST", "/v1/tenants", Some(r#"{"id":"coded"}"#), &k).await.status, 201);
    let r =
        http(a, "POST", "/v1/tenants/coded/link", Some(r#"{"method":"code","phone":"+1 555 000 8888"}"#), &k)
            .await;
    assert_eq!(r.status, 202, "{:?}", r.json());
    let code = poll("pair code", || async {
        let r = http(a, "GET", "/v1/tenants/coded/pair-code", None, &k).await;
        (r.status == 200).then(|| r.json()["code"].as_str().unwrap().to_owned())
    })
    .await;
    // The code is shown as soon as our request is on the wire; the simulator may not have read
    // it yet, so the phone retries until the request is pending there.
    poll("phone enters the code", || {
        let code = code.clone();
        let sim = &sim;
        async move {
            let r = sim.with_sim(move |s, now| s.enter_link_code(now, "15550008888", &code)).await.unwrap();
            match r {
                Ok(_) => Some(()),
                Err(staylinked::sim::AdminError::NoPendingLinkCode) => None,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    wait_state(&host, &tid("coded"), TenantState::Connected).await;
    assert_eq!(staylinked::demo::devices_on_phone(&sim, "15550008888").await.unwrap(), 1);
    host.shutdown().await;
}
