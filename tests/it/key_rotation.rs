//! H3 with the real binary: master-key rotation on a linked tenant. Linked under K1; restarted
//! with `STAYLINKED_MASTER_KEY=K2` and `STAYLINKED_MASTER_KEYS_OLD=K1` it reconnects without a
//! QR; `staylinked rekey` re-seals everything under K2 (progress shown, a rerun has nothing
//! left); then K2 alone is enough. Never a re-pairing.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

use crate::host_process::{
    free_port, link_by_qr, sigterm, spawn_with, wait_connected, wait_exit, wait_healthy,
};
use crate::host_util::*;

fn key() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `staylinked rekey` on the embedded store at `path` with `env`; returns (success, stdout).
fn rekey(path: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_staylinked"))
        .arg("rekey")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STAYLINKED_STORE", "embedded")
        .env("STAYLINKED_STORE_PATH", path)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Rotation on a linked tenant: still connected after each restart, no QR, no re-pairing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_keeps_linked_tenant_connected() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");
    let (k1, k2) = (key(), key());
    let ph = phone(9301);

    let port = free_port();
    let mut child = spawn_with(&sim, &path, port, &[("STAYLINKED_MASTER_KEY", &k1)]);
    wait_healthy(port).await;
    link_by_qr(&sim, port, "rot", &ph).await;
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(9)).await.success());
    let pairings = stats(&sim).await.pairings;

    // K2 current, K1 old: everything sealed under K1 still opens.
    let rotated = [("STAYLINKED_MASTER_KEY", k2.as_str()), ("STAYLINKED_MASTER_KEYS_OLD", k1.as_str())];
    let port = free_port();
    let mut child = spawn_with(&sim, &path, port, &rotated);
    wait_healthy(port).await;
    wait_connected(port, "rot", true).await;
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(9)).await.success());

    // Rekey: progress per tenant, everything under K2; a rerun (resume) has nothing left.
    let (ok, out) = rekey(&path, &rotated);
    assert!(ok, "rekey failed:\n{out}");
    assert!(out.contains("[1/1] rot:"), "no progress line:\n{out}");
    assert!(out.contains("old keys can be removed"), "not complete:\n{out}");
    let resealed: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("rekey done: "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|p| p.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(resealed > 0, "nothing re-sealed:\n{out}");
    let (ok, again) = rekey(&path, &rotated);
    assert!(ok && again.contains(" 0 re-sealed"), "rerun re-sealed again:\n{again}");
    let (ok, missing) = rekey(&path, &[]);
    assert!(!ok, "rekey without a master key must refuse:\n{missing}");

    // K2 alone.
    let port = free_port();
    let mut child = spawn_with(&sim, &path, port, &[("STAYLINKED_MASTER_KEY", &k2)]);
    wait_healthy(port).await;
    wait_connected(port, "rot", true).await;
    let s = stats(&sim).await;
    assert_eq!((s.pairings, s.replaced), (pairings, 0), "{s:?}");
    assert_eq!(staylinked::demo::devices_on_phone(&sim, &ph).await.unwrap(), 1);
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(9)).await.success());
}
