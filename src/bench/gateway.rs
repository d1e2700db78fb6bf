//! The real gateway binary as a child process (`staylinked run`): spawn it with a given
//! environment, read `/readyz` and `/metrics` over a minimal HTTP/1.0 client, read its RSS from
//! `/proc/<pid>/status`, and stop it with SIGTERM while timing the exit.
//!
//! Bench tooling only (Linux); the child is killed when the handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::now;

/// How to start one gateway process. `Debug` shows variable names only (the environment
/// carries the master key).
#[derive(Clone)]
pub struct GatewaySpec {
    /// The `staylinked` binary.
    pub bin: PathBuf,
    /// Environment of the child (nothing else is inherited but `PATH`).
    pub env: Vec<(String, String)>,
    /// Its HTTP port.
    pub port: u16,
    /// The API key it requires.
    pub api_key: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl std::fmt::Debug for GatewaySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("GatewaySpec")
            .field("bin", &self.bin)
            .field("env", &names)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A running gateway process.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    port: u16,
    api_key: String,
    /// When it was spawned (just before `spawn`).
    pub started: Instant,
}

/// How the process ended after SIGTERM.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// SIGTERM → process exit.
    pub wall: Duration,
    /// Exit code (`None`: killed by a signal, or still running at the deadline and killed).
    pub code: Option<i32>,
    /// Whether it exited by itself before the deadline.
    pub in_time: bool,
}

/// `/readyz` as read by the bench.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct Readyz {
    /// Hydration finished.
    #[serde(default)]
    pub ready: bool,
    /// Tenants listed.
    #[serde(default)]
    pub total: u64,
    /// Tenants hydrated.
    #[serde(default)]
    pub hydrated: u64,
    /// Tenants connected.
    #[serde(default)]
    pub connected: u64,
    /// Tenants that failed to load.
    #[serde(default)]
    pub failed: u64,
}

/// A free loopback port (bound then released).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Gateway {
    /// Spawns `bin run` with `spec.env`.
    ///
    /// # Errors
    /// When the binary cannot be started or the log file created.
    pub fn spawn(spec: &GatewaySpec) -> std::io::Result<Self> {
        let log = std::fs::File::create(&spec.log)?;
        let mut cmd = Command::new(&spec.bin);
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", spec.port.to_string())
            .env("STAYLINKED_BIND", "127.0.0.1")
            .env("STAYLINKED_API_KEY", &spec.api_key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let started = now();
        let child = cmd.spawn()?;
        Ok(Self { child, port: spec.port, api_key: spec.api_key.clone(), started })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `GET path` → (status, body). `None` when the request failed (not listening yet, ...).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path, &self.api_key).await
    }

    /// `/readyz`, parsed.
    pub async fn readyz(&self) -> Option<Readyz> {
        let (_, body) = self.get("/readyz").await?;
        serde_json::from_str(&body).ok()
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> Option<String> {
        let (status, body) = self.get("/metrics").await?;
        (status == 200).then_some(body)
    }

    /// Resident set size in KiB (`VmRSS`), and the peak (`VmHWM`).
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        proc_rss(self.pid())
    }

    /// Sends SIGTERM and waits up to `deadline` for the exit; kills it after that.
    pub async fn sigterm(&mut self, deadline: Duration) -> Exit {
        let t0 = now();
        send_sigterm(self.pid());
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Exit { wall: t0.elapsed(), code: status.code(), in_time: true };
                }
                Ok(None) if t0.elapsed() < deadline => tokio::time::sleep(Duration::from_millis(1)).await,
                Ok(None) | Err(_) => {
                    let wall = t0.elapsed();
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Exit { wall, code: None, in_time: false };
                }
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGTERM to `pid` (a child we spawned).
pub fn send_sigterm(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; `pid` is our own
        // child, which has not been reaped yet (so the pid cannot have been reused).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// `VmRSS` and `VmHWM` of `pid` in KiB.
pub fn proc_rss(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:").unwrap_or(0)))
}

/// A minimal HTTP/1.0 GET on 127.0.0.1 (so the body is close-delimited, never chunked).
pub async fn http_get(port: u16, path: &str, api_key: &str) -> Option<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nX-API-Key: {api_key}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), fut).await.ok().flatten()
}

/// The value of an unlabelled metric (or one whose label set is `labels`, e.g. `{le="0.001"}`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

/// The cumulative buckets of a Prometheus histogram: `(upper bound s, count)`, `+Inf` last as
/// `f64::INFINITY`.
pub fn histogram(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, tail) = rest.split_once("\"}")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, tail.trim().parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile (0..1) of a cumulative histogram in milliseconds, interpolated linearly
/// inside the bucket (as Prometheus' `histogram_quantile`). `None` when empty; a quantile in
/// the `+Inf` bucket returns the last finite bound.
pub fn histogram_quantile_ms(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * as_f64(total);
    let mut prev = (0.0f64, 0u64);
    for &(le, cum) in buckets {
        if as_f64(cum) >= rank {
            if le.is_infinite() {
                return Some(prev.0 * 1000.0);
            }
            let in_bucket = cum.saturating_sub(prev.1);
            let frac = if in_bucket == 0 { 1.0 } else { (rank - as_f64(prev.1)) / as_f64(in_bucket) };
            return Some((prev.0 + (le - prev.0) * frac.clamp(0.0, 1.0)) * 1000.0);
        }
        prev = (le, cum);
    }
    Some(prev.0 * 1000.0)
}

fn as_f64(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Histogram parsing and quantile interpolation match a hand-computed example.
    #[test]
    fn histogram_quantiles() {
        let text = "# TYPE x histogram\nx_bucket{le=\"0.001\"} 50\nx_bucket{le=\"0.002\"} 90\n\
                    x_bucket{le=\"0.004\"} 100\nx_bucket{le=\"+Inf\"} 100\nx_count 100\nx_sum 0.1\n";
        let b = histogram(text, "x");
        assert_eq!(b.len(), 4);
        assert!((histogram_quantile_ms(&b, 0.5).unwrap() - 1.0).abs() < 1e-9);
        assert!((histogram_quantile_ms(&b, 0.7).unwrap() - 1.5).abs() < 1e-9);
        assert!((histogram_quantile_ms(&b, 0.99).unwrap() - 3.8).abs() < 1e-9);
        assert_eq!(metric(text, "x_count"), Some(100.0));
        assert_eq!(histogram_quantile_ms(&histogram("", "x"), 0.5), None);
    }

    /// `/proc` parsing reads our own RSS.
    #[test]
    fn reads_own_rss() {
        let (rss, hwm) = proc_rss(std::process::id()).unwrap();
        assert!(rss > 0 && hwm >= rss);
    }
}
