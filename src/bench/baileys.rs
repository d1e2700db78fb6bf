//! Runs `scripts/interop/bench-baileys.mjs` (N Baileys sockets in one Node process against the
//! same simulator) and reads the JSON line it prints.
//!
//! Bench tooling only. A missing Node or Baileys install is a reason in the report, not an error.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::report::BaileysReport;

/// Where and how to run the Baileys side.
#[derive(Debug, Clone)]
pub struct BaileysRun {
    /// The script.
    pub script: PathBuf,
    /// Simulator WebSocket URL.
    pub ws_url: String,
    /// Simulator admin URL.
    pub admin_url: String,
    /// Sockets.
    pub sockets: usize,
    /// Idle settle before the RSS reading.
    pub idle: Duration,
    /// Phone prefix of the Baileys accounts (distinct from the gateway's).
    pub phone_prefix: String,
    /// Where the multi-file auth states go.
    pub dir: PathBuf,
}

/// Why the Baileys side cannot run here (skipped, with the reason in the report).
pub fn unavailable(script: &Path) -> Option<String> {
    if !script.exists() {
        return Some(format!("skipped: {} not found", script.display()));
    }
    let modules = script.parent().map(|d| d.join("node_modules").join("baileys"));
    if !modules.as_deref().is_some_and(Path::exists) {
        return Some("skipped: Baileys not installed (cd scripts/interop && npm ci --ignore-scripts)".into());
    }
    match Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        _ => Some("skipped: node not found".into()),
    }
}

/// Runs the script to completion (blocking; call from `spawn_blocking`).
///
/// # Errors
/// A description of what failed (exit status, unparsable output).
pub fn run(r: &BaileysRun) -> Result<BaileysReport, String> {
    let out = Command::new("node")
        .arg(&r.script)
        .args(["--ws-url", &r.ws_url, "--admin-url", &r.admin_url])
        .args(["--tenants", &r.sockets.to_string()])
        .args(["--idle-secs", &r.idle.as_secs_f64().to_string()])
        .args(["--phone-prefix", &r.phone_prefix])
        .arg("--dir")
        .arg(&r.dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("bench-baileys.mjs exited with {}: {}", out.status, stdout.trim()));
    }
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("unparsable bench-baileys.mjs output ({e}): {line}"))
}
