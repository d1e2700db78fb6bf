//! What a tenant's persisted state looks like across host restarts: the webhook URL given at
//! creation survives, and a deleted tenant is gone for good (state, device and listing).

use staylinked::host::state::TenantState;

use crate::host_util::*;

/// `webhook_url` is validated at the API (400 `invalid_webhook_url`), persisted in the status
/// doc, kept through lifecycle status writes (link → connected) and shown again after a host
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_url_survives_restart() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "w1").await;
    let a = host.api_addr();
    for bad in [r#""ftp://example.com/h""#, r#""not a url""#, r#""https://""#, r#""/relative""#] {
        let body = format!(r#"{{"id":"hooked","webhook_url":{bad}}}"#);
        let r = http(a, "POST", "/v1/tenants", Some(&body), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_webhook_url"), "{bad}");
    }
    assert_eq!(store.read_status(&tid("hooked")).await.unwrap(), None, "a rejected create stores nothing");
    let url = "https://hooks.example.invalid/acme?sig=1";
    let body = format!(r#"{{"id":"hooked","webhook_url":"{url}"}}"#);
    let r = http(a, "POST", "/v1/tenants", Some(&body), &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["webhook_url"], url);
    assert_eq!(http(a, "POST", "/v1/tenants", Some(r#"{"id":"plain"}"#), &[]).await.status, 201);
    staylinked::demo::link_by_qr(&sim, host.registry(), &tid("hooked"), &phone(7), WAIT).await.unwrap();
    let stored = store.read_status(&tid("hooked")).await.unwrap().unwrap();
    assert_eq!(stored.webhook_url.as_deref(), Some(url), "status writes after linking keep it");
    host.shutdown().await;

    let host = start(&sim, &store, "w2").await;
    wait_state(&host, &tid("hooked"), TenantState::Connected).await;
    let r = http(host.api_addr(), "GET", "/v1/tenants/hooked", None, &[]).await;
    assert_eq!(r.json()["webhook_url"], url, "{:?}", r.json());
    let r = http(host.api_addr(), "GET", "/v1/tenants/plain", None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["webhook_url"].is_null(), "{:?}", r.json());
    host.shutdown().await;
}
