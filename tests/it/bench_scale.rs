//! `staylinked bench scale` smoke test: the real command with a handful of tenants (no Baileys,
//! no idle settle) provisions, runs the gateway child three times and writes a valid report.
//! Asserts only completeness and shape, never timings.

use std::process::{Command, Stdio};
use std::time::Duration;

/// The scale bench runs end to end on a small N: every tenant reaches ready without QR, the
/// gateway exits 0 on SIGTERM, the prekey burst's deltas are counted, and scale.json/scale.md
/// carry every figure plus the not-yet-measured messages/s row.
#[tokio::test]
async fn bench_scale_small_run_writes_a_valid_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_staylinked"))
        .args(["bench", "scale", "--tenants", "12", "--idle", "0s", "--no-baileys", "--store", "embedded"])
        .arg("--out")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench scale did not finish within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "bench scale exited with {status}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("scale.json")).unwrap()).unwrap();
    assert_eq!(json["tenants"], 12);
    let cold = &json["gateway"]["cold_start"];
    assert_eq!(cold["complete"], true, "{cold}");
    assert_eq!(cold["ready"]["count"], 12);
    assert_eq!(cold["logged_in"]["count"], 12);
    assert_eq!(cold["connected_after_idle"], 12);
    assert_eq!(json["gateway"]["shutdown"]["exit_code"], 0);
    assert_eq!(json["gateway"]["shutdown"]["tenants"], 12);
    assert!(json["gateway"]["rss_n_kib"].as_u64().unwrap() > 0);
    let delta = &json["gateway"]["delta"];
    assert!(delta["commits"].as_u64().unwrap() >= 24, "{delta}");
    assert_eq!(delta["failures"], 0);
    assert!(delta["p99_ms"].is_number());
    assert!(json["store_write"]["commits"].as_u64().unwrap() > 0);
    assert!(json["messages_per_sec"].is_null());
    assert!(json["baileys"].is_null());
    let md = std::fs::read_to_string(dir.path().join("scale.md")).unwrap();
    assert!(md.contains("not measured yet") && md.contains("RSS per idle connected tenant"));
    assert!(!dir.path().join("scale-work").exists(), "scratch dir left behind");
}
