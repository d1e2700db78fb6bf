//! Gateway and simulator child processes of the chaos driver: spawn with a clean environment,
//! signal (SIGTERM through `kill(1)`, SIGKILL through `Child::kill`), wait for exit with a
//! deadline, and kill on drop so no orphan outlives the driver. Logs go to one file per process.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::ChaosError;

/// Environment shared by every gateway process of a run.
#[derive(Debug, Clone)]
pub(crate) struct GatewayEnv {
    /// The `staylinked` binary.
    pub(crate) bin: PathBuf,
    /// Extra variables (store selection, simulator, timings).
    pub(crate) vars: Vec<(String, String)>,
    /// Directory for per-process logs.
    pub(crate) log_dir: PathBuf,
}

/// A running child process (killed on drop).
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    /// Its name in logs and the report (`gw-3`, `sim`).
    pub(crate) name: String,
    /// Its log file.
    pub(crate) log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Proc {
    /// OS process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful flush).
    pub(crate) fn sigterm(&self) -> Result<(), ChaosError> {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| ChaosError::Process { what: format!("kill -TERM {}", self.name), source: e })?;
        if ok.success() {
            Ok(())
        } else {
            Err(ChaosError::Invariant(format!("{} could not be signalled (already gone?)", self.name)))
        }
    }

    /// Sends SIGKILL (no flush).
    pub(crate) fn sigkill(&mut self) -> Result<(), ChaosError> {
        self.child
            .kill()
            .map_err(|e| ChaosError::Process { what: format!("kill -9 {}", self.name), source: e })
    }

    /// The exit status if the process has ended.
    pub(crate) fn try_exit(&mut self) -> Result<Option<ExitStatus>, ChaosError> {
        self.child
            .try_wait()
            .map_err(|e| ChaosError::Process { what: format!("wait {}", self.name), source: e })
    }

    /// Waits up to `within` for the exit; `None` when it is still running then.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> Result<Option<ExitStatus>, ChaosError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.try_exit()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last `n` lines of its log (for failure reports).
    pub(crate) fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }
}

/// The last `n` lines of a file.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound and released; the window for a collision is tiny).
pub(crate) fn free_port() -> Result<u16, ChaosError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ChaosError::Process { what: "bind a free port".into(), source: e })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| ChaosError::Process { what: "read a free port".into(), source: e })
}

/// A gateway process (`staylinked run`).
#[derive(Debug)]
pub(crate) struct Gateway {
    /// The process.
    pub(crate) proc: Proc,
    /// Its API address.
    pub(crate) addr: SocketAddr,
    /// When it was spawned.
    pub(crate) started: Instant,
}

impl Gateway {
    /// Spawns gateway number `n` on a free port with holder id `chaos-gw-{n}`.
    pub(crate) fn spawn(env: &GatewayEnv, n: usize) -> Result<Self, ChaosError> {
        let port = free_port()?;
        let name = format!("gw-{n}");
        let holder = format!("chaos-{name}-{}", std::process::id());
        let log = env.log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)
            .map_err(|e| ChaosError::Process { what: format!("create {}", log.display()), source: e })?;
        let mut cmd = Command::new(&env.bin);
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("STAYLINKED_BIND", "127.0.0.1")
            .env("STAYLINKED_HOLDER_ID", &holder);
        for (k, v) in &env.vars {
            cmd.env(k, v);
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(file)).spawn().map_err(
                |e| ChaosError::Process { what: format!("spawn {}", env.bin.display()), source: e },
            )?;
        Ok(Self {
            proc: Proc { child, name, log },
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            started: Instant::now(),
        })
    }
}

/// What `staylinked sim` printed when ready.
#[derive(Debug, Clone)]
pub(crate) struct SimReady {
    pub(crate) admin: SocketAddr,
    pub(crate) ws_url: String,
    pub(crate) root_public_key: [u8; 32],
}

/// Spawns `staylinked sim` on a free port and reads its ready line (within `within`).
pub(crate) async fn spawn_sim(
    bin: &Path,
    log_dir: &Path,
    within: Duration,
) -> Result<(Proc, SimReady), ChaosError> {
    let log = log_dir.join("sim.log");
    let file = std::fs::File::create(&log)
        .map_err(|e| ChaosError::Process { what: format!("create {}", log.display()), source: e })?;
    let mut child = Command::new(bin)
        .arg("sim")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file))
        .spawn()
        .map_err(|e| ChaosError::Process { what: format!("spawn {} sim", bin.display()), source: e })?;
    let stdout = child.stdout.take();
    let proc = Proc { child, name: "sim".into(), log };
    let stdout = stdout.ok_or_else(|| ChaosError::Invariant("sim stdout not captured".into()))?;
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(within, read)
        .await
        .map_err(|_| ChaosError::Invariant(format!("sim printed no ready line within {within:?}")))?
        .map_err(|e| ChaosError::Invariant(format!("sim reader failed: {e}")))?
        .map_err(|e| ChaosError::Process { what: "read the sim ready line".into(), source: e })?;
    let ready = parse_ready(&line)
        .ok_or_else(|| ChaosError::Invariant(format!("unexpected sim ready line {line:?}")))?;
    Ok((proc, ready))
}

/// Parses `{"ws_url","admin_url","root_public_key"}`.
fn parse_ready(line: &str) -> Option<SimReady> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let ws_url = v["ws_url"].as_str()?.to_owned();
    let admin = v["admin_url"].as_str()?.strip_prefix("http://")?.strip_suffix("/admin")?.parse().ok()?;
    let hex = v["root_public_key"].as_str()?;
    let mut key = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(SimReady { admin, ws_url, root_public_key: key })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sim's ready line parses into addresses and the 32-byte root key; junk does not.
    #[test]
    fn ready_line_parses() {
        let line = format!(
            r#"{{"ws_url":"ws://127.0.0.1:5000/ws/chat","admin_url":"http://127.0.0.1:5000/admin","root_public_key":"{}"}}"#,
            "ab".repeat(32)
        );
        let r = parse_ready(&line).unwrap();
        assert_eq!(r.admin.port(), 5000);
        assert_eq!(r.root_public_key, [0xab; 32]);
        assert!(parse_ready("{}").is_none());
        assert!(parse_ready(&line.replace("abab", "zz")).is_none());
    }
}
