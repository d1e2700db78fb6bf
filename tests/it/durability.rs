//! M4 with the real binary: nothing is answered before it is durable. A `PATCH` (secret
//! rotation, new webhook URL) survives a SIGKILL right after its answer; a `DELETE` answered
//! while the tenant cannot reach WhatsApp (so its logout is still pending) survives a SIGKILL
//! too: after the restart the tenant is gone from the API and the store, and its device never
//! logged in again.

use std::time::Duration;

use staylinked::store::StoreConfig;

use crate::host_process::{api, free_port, link_by_qr, sigterm, spawn_with, wait_exit, wait_healthy};
use crate::host_util::*;

/// Webhooks to loopback are allowed here (nothing listens: deliveries just fail).
const ENV: [(&str, &str); 1] = [("STAYLINKED_WEBHOOK_ALLOW_PRIVATE", "1")];

async fn wait_ready(port: u16) {
    poll("readyz", || async { (api(port, "GET", "/readyz", None).await.status == 200).then_some(()) }).await;
}

/// PATCH → 200 → SIGKILL → restart: the new URL is there. DELETE → 200 → SIGKILL → restart:
/// the tenant is absent, purged from the store, and never reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_and_delete_are_durable_before_the_answer() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");

    let port = free_port();
    let mut child = spawn_with(&sim, &path, port, &ENV);
    wait_healthy(port).await;
    link_by_qr(&sim, port, "del", &phone(9401)).await;
    let body = r#"{"webhook_url":"http://127.0.0.1:9/rotated","rotate_webhook_secret":true}"#;
    let r = api(port, "PATCH", "/v1/tenants/del", Some(body)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    child.kill().unwrap();
    let _ = child.wait();

    // A gateway that cannot reach WhatsApp: the tenant stays linked but offline, so a DELETE
    // is answered before its logout can happen.
    let offline = format!("ws://127.0.0.1:{}/ws/chat", free_port());
    let port = free_port();
    let mut env = ENV.to_vec();
    env.push(("STAYLINKED_WA_URL", &offline));
    let mut child = spawn_with(&sim, &path, port, &env);
    wait_healthy(port).await;
    wait_ready(port).await;
    let r = api(port, "GET", "/v1/tenants/del", None).await;
    assert_eq!(
        r.json()["webhook_url"].as_str(),
        Some("http://127.0.0.1:9/rotated"),
        "PATCH lost: {:?}",
        r.json()
    );
    // Once the killed process's lease expired this one holds it, offline.
    poll("offline", || async {
        let s =
            api(port, "GET", "/v1/tenants/del", None).await.json()["state"].as_str().unwrap_or("").to_owned();
        (s == "backoff").then_some(())
    })
    .await;
    let r = api(port, "DELETE", "/v1/tenants/del", None).await;
    assert!((200..300).contains(&r.status), "DELETE: {} {:?}", r.status, r.json());
    child.kill().unwrap();
    let _ = child.wait();

    let logins = stats(&sim).await.logins;
    let port = free_port();
    let mut child = spawn_with(&sim, &path, port, &ENV);
    wait_healthy(port).await;
    wait_ready(port).await;
    assert_eq!(api(port, "GET", "/v1/tenants/del", None).await.status, 404, "deleted tenant is back");
    let list = api(port, "GET", "/v1/tenants", None).await.json();
    assert!(!list.to_string().contains("\"del\""), "deleted tenant listed: {list}");
    // The purge runs in the background (once the killed process's lease expired).
    poll("purge", || async {
        let m = api(port, "GET", "/metrics", None).await;
        String::from_utf8_lossy(&m.body).contains("staylinked_deletes_finished_total 1").then_some(())
    })
    .await;
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(9)).await.success());
    let st = staylinked::store::open(&StoreConfig::Embedded { path: path.clone() }).await.unwrap();
    assert!(st.list_tenants().await.unwrap().is_empty(), "deleted tenant still stored");
    assert_eq!(stats(&sim).await.logins, logins, "the deleted tenant's device logged in again");
}
