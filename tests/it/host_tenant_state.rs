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
    let url = "http://127.0.0.1:9/acme?sig=1";
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

/// `DELETE /v1/tenants/{id}` logs the linked tenant out (the phone drops the device), then
/// deletes all its stored state; an unlinked tenant is deleted at once. After a host restart
/// neither tenant is listed (API or store), nothing of theirs is stored, the kept tenant
/// reconnects without QR, and the phone lists 0 devices for the deleted tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_tenant_is_gone_after_restart() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "d1").await;
    let a = host.api_addr();
    for id in ["gone", "kept", "never"] {
        let body = format!(r#"{{"id":"{id}","webhook_url":"https://h.example.invalid/{id}"}}"#);
        assert_eq!(http(a, "POST", "/v1/tenants", Some(&body), &[]).await.status, 201);
    }
    let (gone_phone, kept_phone) = (phone(1), phone(2));
    staylinked::demo::link_by_qr(&sim, host.registry(), &tid("gone"), &gone_phone, WAIT).await.unwrap();
    staylinked::demo::link_by_qr(&sim, host.registry(), &tid("kept"), &kept_phone, WAIT).await.unwrap();
    assert_eq!(staylinked::demo::devices_on_phone(&sim, &gone_phone).await.unwrap(), 1);
    assert!(!store.list_events(&tid("gone")).await.unwrap().is_empty());

    let r = http(a, "DELETE", "/v1/tenants/gone", None, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let r = http(a, "DELETE", "/v1/tenants/never", None, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(
        !store.list_tenants().await.unwrap().contains(&tid("never")),
        "unlinked: deleted before the answer"
    );
    // The linked one logs out first; its state goes once the logout went through.
    poll("logout and delete", || async {
        let devices = staylinked::demo::devices_on_phone(&sim, &gone_phone).await.unwrap();
        let listed = store.list_tenants().await.unwrap().contains(&tid("gone"));
        (devices == 0 && !listed).then_some(())
    })
    .await;
    let r = http(a, "GET", "/v1/tenants/gone", None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "tenant_not_found"));
    host.shutdown().await;

    let host = start(&sim, &store, "d2").await;
    wait_state(&host, &tid("kept"), TenantState::Connected).await;
    poll("readyz", || async {
        let r = http(host.api_addr(), "GET", "/readyz", None, &[]).await;
        (r.status == 200).then_some(())
    })
    .await;
    let list = http(host.api_addr(), "GET", "/v1/tenants", None, &[]).await.json();
    let ids: Vec<&str> =
        list["tenants"].as_array().unwrap().iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids, ["kept"], "{list:?}");
    for id in ["gone", "never"] {
        let r = http(host.api_addr(), "GET", &format!("/v1/tenants/{id}"), None, &[]).await;
        assert_eq!((r.status, r.code().as_str()), (404, "tenant_not_found"), "{id}");
        let snap = store.hydrate(&tid(id)).await.unwrap();
        assert!(snap.status.is_none() && snap.lease.is_none() && snap.creds.is_none(), "{id}: {snap:?}");
        assert!(snap.keys.is_empty() && snap.outbox.is_empty(), "{id}: keys or outbox left");
        assert!(store.list_events(&tid(id)).await.unwrap().is_empty(), "{id}: events left");
    }
    assert_eq!(staylinked::demo::devices_on_phone(&sim, &gone_phone).await.unwrap(), 0);
    assert_eq!(staylinked::demo::devices_on_phone(&sim, &kept_phone).await.unwrap(), 1);
    assert_eq!(stats(&sim).await.pairings, 2, "the restart paired nothing");
    // The id is free again.
    let r = http(host.api_addr(), "POST", "/v1/tenants", Some(r#"{"id":"gone"}"#), &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    host.shutdown().await;
}

/// A DELETE while the tenant is linking (QR showing, nothing paired) abandons the link and
/// deletes the tenant's state: it is no longer listed and the phone was never paired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_while_linking_abandons_the_link() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "l1").await;
    let a = host.api_addr();
    assert_eq!(http(a, "POST", "/v1/tenants", Some(r#"{"id":"half"}"#), &[]).await.status, 201);
    assert_eq!(http(a, "POST", "/v1/tenants/half/link", Some(r#"{"method":"qr"}"#), &[]).await.status, 202);
    poll("qr", || async {
        (http(a, "GET", "/v1/tenants/half/qr?format=json", None, &[]).await.status == 200).then_some(())
    })
    .await;
    let r = http(a, "DELETE", "/v1/tenants/half", None, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    poll("tenant deleted", || async {
        (!store.list_tenants().await.unwrap().contains(&tid("half"))).then_some(())
    })
    .await;
    let r = http(a, "GET", "/v1/tenants/half", None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "tenant_not_found"));
    assert!(store.list_events(&tid("half")).await.unwrap().is_empty());
    assert_eq!(stats(&sim).await.pairings, 0);
    host.shutdown().await;
    let host = start(&sim, &store, "l2").await;
    poll("readyz", || async {
        (http(host.api_addr(), "GET", "/readyz", None, &[]).await.status == 200).then_some(())
    })
    .await;
    assert!(host.registry().list().is_empty(), "deleted tenant came back after restart");
    host.shutdown().await;
}
