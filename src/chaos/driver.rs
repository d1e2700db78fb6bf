//! The chaos run itself: link phase, the seeded cycles, the per-cycle and final checks.
//! Every wait polls with a deadline; a broken promise ends the run with a violation naming the
//! cycle, the tenant and the evidence (state, error field, log tail of the process).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use base64::Engine as _;
use futures::StreamExt as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;

use super::gateway::{Gateway, GatewayEnv, Proc, spawn_sim};
use super::http::{self, Response};
use super::plan::{self, Cycle, Disruption};
use super::report::{ChaosReport, Machine, SimCounts, Spread};
use super::traffic::{Ledger, Outcome, count_distinct_ids};
use super::{ChaosError, ChaosOptions, ChaosStore};
use crate::store::{Store, StoreError, SystemClock, crypt};
use crate::types::TenantId;

/// API key of every gateway of a run.
const API_KEY: &str = "chaos-key-0123456789abcdef0123456789";
/// Timeout of one HTTP request.
const REQ: Duration = Duration::from_secs(10);
/// Poll interval of every wait.
const POLL: Duration = Duration::from_millis(50);
/// The gateways' shutdown deadline, and how long a SIGTERMed process may take to exit.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);
const EXIT_WAIT: Duration = Duration::from_secs(12);
/// States a linked tenant must never show after a restart (each would need a QR or a human).
const BAD_STATES: [&str; 5] = ["unlinked", "linking", "logged_out", "banned", "error"];

/// One tenant as the gateway's list shows it.
#[derive(Debug, Clone)]
struct View {
    state: String,
    lease_epoch: Option<u64>,
    devices_registered: usize,
    error: Option<String>,
}

fn violation(msg: impl Into<String>) -> ChaosError {
    ChaosError::Invariant(msg.into())
}

pub(super) struct Driver {
    o: ChaosOptions,
    env: GatewayEnv,
    sim: SocketAddr,
    _sim_proc: Option<Proc>,
    ids: Vec<String>,
    phones: Vec<String>,
    peer: String,
    store_path: PathBuf,
    master_key: String,
    next_gw: usize,
    epochs: Vec<u64>,
    pairings_after_link: u64,
    recoveries: BTreeMap<Disruption, Vec<u64>>,
    term_exits: Vec<u64>,
    p2t: Ledger,
    t2p: Ledger,
    r: ChaosReport,
}

impl Driver {
    pub(super) async fn run(o: ChaosOptions) -> Result<ChaosReport, ChaosError> {
        let started = Instant::now();
        let log_dir = o.work_dir.join("logs");
        let store_dir = o.work_dir.join("store");
        for d in [&log_dir, &store_dir] {
            // A fresh run: old logs and an old store would make the checks meaningless.
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d)
                .map_err(|e| ChaosError::Process { what: format!("create {}", d.display()), source: e })?;
        }
        let (sim_proc, sim) = match &o.sim {
            Some(t) => (None, (t.addr, t.ws_url.clone(), t.root_public_key)),
            None => {
                let (p, r) = spawn_sim(&o.bin, &log_dir, o.wait).await?;
                (Some(p), (r.admin, r.ws_url, r.root_public_key))
            }
        };
        let store_path = store_dir.join("staylinked.redb");
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut StdRng::seed_from_u64(o.seed ^ 0x006b_6579), &mut key);
        let master_key = base64::engine::general_purpose::STANDARD.encode(key);
        let root: String = sim.2.iter().map(|b| format!("{b:02x}")).collect();
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        let mut vars = vec![
            ("STAYLINKED_API_KEY", API_KEY.to_owned()),
            ("STAYLINKED_MASTER_KEY", master_key.clone()),
            ("STAYLINKED_WA_URL", sim.1.clone()),
            ("STAYLINKED_WA_ROOT_KEY", root),
            ("STAYLINKED_SHUTDOWN_DEADLINE", secs(SHUTDOWN_DEADLINE)),
            ("STAYLINKED_LEASE_TTL", secs(o.lease_ttl)),
            ("STAYLINKED_HELD_RETRY", "1s".to_owned()),
            ("STAYLINKED_CONNECT_STAGGER_MS", "2".to_owned()),
            // Outbox pacing compressed so sends happen between the disruptions (the product's
            // defaults wait 10 s after each connect and space sends 1-3 s apart).
            ("STAYLINKED_SEND_WARMUP", "200ms".to_owned()),
            ("STAYLINKED_SEND_GAP_MIN", "20ms".to_owned()),
            ("STAYLINKED_SEND_GAP_MAX", "100ms".to_owned()),
            ("STAYLINKED_SEND_PER_MINUTE", "600".to_owned()),
            ("RUST_LOG", std::env::var("CHAOS_GATEWAY_LOG").unwrap_or_else(|_| "info".to_owned())),
        ];
        match &o.store {
            ChaosStore::Embedded => {
                vars.push(("STAYLINKED_STORE", "embedded".into()));
                vars.push(("STAYLINKED_STORE_PATH", store_path.display().to_string()));
            }
            ChaosStore::Firestore { emulator_host, project } => {
                vars.push(("STAYLINKED_STORE", "firestore".into()));
                vars.push(("FIRESTORE_EMULATOR_HOST", emulator_host.clone()));
                vars.push(("GOOGLE_CLOUD_PROJECT", project.clone()));
            }
        }
        let env = GatewayEnv {
            bin: o.bin.clone(),
            vars: vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            log_dir: log_dir.clone(),
        };
        let ids: Vec<String> = (0..o.tenants).map(|i| format!("chaos-{i:04}")).collect();
        let phones: Vec<String> = (0..o.tenants).map(|i| format!("1888{i:07}")).collect();
        let mut r = ChaosReport {
            seed: o.seed,
            tenants: o.tenants,
            store: o.store.name().to_owned(),
            cycles_planned: o.cycles,
            machine: Machine::detect(),
            log_dir,
            devices_per_phone: (usize::MAX, 0),
            ..Default::default()
        };
        r.messages.enabled = o.messages;
        r.replay = format!(
            "scripts/chaos.sh --tenants {} --cycles {} --seed {} --store {}{}",
            o.tenants,
            o.cycles,
            o.seed,
            o.store.name(),
            if o.messages { "" } else { " --messages false" }
        );
        let mut d = Self {
            env,
            sim: sim.0,
            _sim_proc: sim_proc,
            epochs: vec![0; ids.len()],
            ids,
            phones,
            peer: "18889999999".to_owned(),
            store_path,
            master_key,
            next_gw: 0,
            pairings_after_link: 0,
            recoveries: BTreeMap::new(),
            term_exits: Vec::new(),
            p2t: Ledger::default(),
            t2p: Ledger::default(),
            r,
            o,
        };
        if let Err(e) = d.body().await {
            d.r.violations.push(chain(&e));
        }
        let mut r = d.r;
        if r.devices_per_phone.0 == usize::MAX {
            r.devices_per_phone.0 = 0;
        }
        let all: Vec<u64> = d.recoveries.values().flatten().copied().collect();
        r.recovery = Spread::of(&all);
        r.recovery_by_kind =
            d.recoveries.iter().map(|(k, v)| (k.as_str().to_owned(), Spread::of(v))).collect();
        r.sigterm_exit = Spread::of(&d.term_exits);
        r.elapsed_s = started.elapsed().as_secs_f64();
        r.ok = r.violations.is_empty() && r.cycles_ok == r.cycles_planned;
        Ok(r)
    }

    fn say(&self, line: &str) {
        if self.o.progress {
            #[expect(clippy::print_stderr, reason = "progress of the chaos command")]
            {
                eprintln!("{line}");
            }
        }
    }

    async fn body(&mut self) -> Result<(), ChaosError> {
        let plan = plan::plan(self.o.seed, self.o.cycles);
        self.r.mix = plan::mix(&plan).into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect();
        self.say(&format!(
            "chaos: seed {} · {} tenants × {} cycles · {} store · mix {:?}\nreplay: {}",
            self.o.seed, self.o.tenants, self.o.cycles, self.r.store, self.r.mix, self.r.replay
        ));
        let pairings_before = self.stats().await?.pairings_end;
        let mut gw = self.spawn()?;
        self.wait_healthy(&mut gw).await?;
        if self.o.messages {
            self.admin_ok("POST", "/phones", Some(serde_json::json!({"phone": self.peer, "name": "peer"})))
                .await?;
        }
        let link_started = Instant::now();
        self.link_all(&gw).await?;
        let views = self.wait_connected(&mut gw, self.o.wait * 2, false).await?;
        self.say(&format!(
            "linked {} tenants in {:.1} s",
            self.o.tenants,
            link_started.elapsed().as_secs_f64()
        ));
        let s = self.stats().await?;
        self.pairings_after_link = s.pairings_end;
        self.r.sim.pairings_after_link = s.pairings_end;
        let want = pairings_before + self.ids.len() as u64;
        if s.pairings_end != want {
            return Err(violation(format!(
                "link phase: {} pairings, expected {want} (one per tenant)",
                s.pairings_end
            )));
        }
        self.check("link", &views).await?;
        for (i, c) in plan.iter().enumerate() {
            if self.o.messages {
                self.traffic(i, c, &gw).await?;
            }
            let (next, views, recovery) = self.cycle(i, c, gw).await?;
            gw = next;
            self.recoveries.entry(c.disruption).or_default().push(recovery);
            self.check(&format!("cycle {i} ({})", c.disruption.as_str()), &views).await?;
            self.r.cycles_ok += 1;
            self.say(&format!(
                "cycle {:>4}/{} {:<16} recovered in {:>6} ms · processes {} · pairings {} · 440s {}",
                i + 1,
                self.o.cycles,
                c.disruption.as_str(),
                recovery,
                self.r.processes_started,
                self.r.sim.pairings_end,
                self.r.sim.replaced
            ));
        }
        if self.o.messages {
            self.drain(&mut gw).await?;
        }
        gw.proc.sigterm()?;
        self.r.sigterms += 1;
        self.wait_term_exit(&mut gw, "final stop").await?;
        drop(gw);
        self.check_store().await
    }

    fn spawn(&mut self) -> Result<Gateway, ChaosError> {
        let gw = Gateway::spawn(&self.env, self.next_gw)?;
        self.next_gw += 1;
        self.r.processes_started += 1;
        Ok(gw)
    }

    async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response, ChaosError> {
        Ok(http::request(self.sim, method, &format!("/admin{path}"), body.as_ref(), None, REQ).await?)
    }

    async fn admin_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ChaosError> {
        let r = self.admin(method, path, body).await?;
        if r.is_success() {
            Ok(r.json())
        } else {
            Err(violation(format!(
                "sim admin {method} {path} answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )))
        }
    }

    async fn api(
        gw: &Gateway,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response, http::HttpError> {
        http::request(gw.addr, method, path, body.as_ref(), Some(API_KEY), REQ).await
    }

    async fn stats(&self) -> Result<SimCounts, ChaosError> {
        let v = self.admin_ok("GET", "/stats", None).await?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let stream_errors = v["stream_errors"]
            .as_object()
            .map(|m| m.iter().map(|(k, x)| (k.clone(), x.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default();
        Ok(SimCounts {
            pairings_after_link: self.pairings_after_link,
            pairings_end: n("pairings"),
            logins: n("logins"),
            connections: n("connections"),
            replaced: n("replaced"),
            stream_errors,
            ack_stream_errors: n("ack_stream_errors"),
            unacked: n("unacked"),
            messages: v
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| {
                            ["messages_", "offline_", "phone_", "retry_"].iter().any(|p| k.starts_with(p))
                        })
                        .filter_map(|(k, x)| Some((k.clone(), x.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Fails if the process has exited (with its log tail).
    fn ensure_running(gw: &mut Gateway, during: &str) -> Result<(), ChaosError> {
        if let Some(st) = gw.proc.try_exit()? {
            return Err(violation(format!(
                "{} exited ({st}) during {during}; log tail:\n{}",
                gw.proc.name,
                gw.proc.log_tail(20)
            )));
        }
        Ok(())
    }

    async fn wait_healthy(&self, gw: &mut Gateway) -> Result<(), ChaosError> {
        let deadline = Instant::now() + self.o.wait + self.o.lease_ttl;
        loop {
            Self::ensure_running(gw, "start-up")?;
            if let Ok(r) = Self::api(gw, "GET", "/healthz", None).await
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(violation(format!(
                    "{} did not answer /healthz within {:?}; log tail:\n{}",
                    gw.proc.name,
                    deadline - gw.started,
                    gw.proc.log_tail(20)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn link_all(&mut self, gw: &Gateway) -> Result<(), ChaosError> {
        let this = &*self;
        let results: Vec<Result<(), ChaosError>> = futures::stream::iter(0..this.ids.len())
            .map(|i| this.link_one(gw, i))
            .buffer_unordered(this.o.link_concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn link_one(&self, gw: &Gateway, i: usize) -> Result<(), ChaosError> {
        let (id, phone) = (&self.ids[i], &self.phones[i]);
        self.admin_ok(
            "POST",
            "/phones",
            Some(serde_json::json!({"phone": phone, "name": format!("chaos {i}")})),
        )
        .await?;
        let r = Self::api(gw, "POST", "/v1/tenants", Some(serde_json::json!({"id": id}))).await?;
        if r.status != 201 {
            return Err(violation(format!("create {id}: {} {}", r.status, String::from_utf8_lossy(&r.body))));
        }
        let r = Self::api(
            gw,
            "POST",
            &format!("/v1/tenants/{id}/link"),
            Some(serde_json::json!({"method": "qr"})),
        )
        .await?;
        if r.status != 202 {
            return Err(violation(format!("link {id}: {} {}", r.status, String::from_utf8_lossy(&r.body))));
        }
        let deadline = Instant::now() + self.o.wait;
        let qr = loop {
            let r = Self::api(gw, "GET", &format!("/v1/tenants/{id}/qr?format=json"), None).await?;
            if let Some(q) = r.json()["qr"].as_str().filter(|_| r.status == 200) {
                break q.to_owned();
            }
            if Instant::now() >= deadline {
                return Err(violation(format!("{id}: no QR within {:?}", self.o.wait)));
            }
            tokio::time::sleep(POLL).await;
        };
        self.admin_ok("POST", &format!("/phones/{phone}/scan"), Some(serde_json::json!({"qr": qr}))).await?;
        Ok(())
    }

    /// Waits until every tenant is `connected` on `gw`; after a restart, any state that would
    /// need a QR (or a human) is a violation at once.
    async fn wait_connected(
        &self,
        gw: &mut Gateway,
        within: Duration,
        restarted: bool,
    ) -> Result<BTreeMap<String, View>, ChaosError> {
        let deadline = Instant::now() + within;
        let mut last: BTreeMap<String, View> = BTreeMap::new();
        loop {
            Self::ensure_running(gw, "reconnect")?;
            if let Ok(r) = Self::api(gw, "GET", "/v1/tenants", None).await
                && r.status == 200
            {
                last = parse_views(&r.json());
                if restarted {
                    for id in &self.ids {
                        if let Some(v) = last.get(id).filter(|v| BAD_STATES.contains(&v.state.as_str())) {
                            return Err(violation(format!(
                                "{id} is {} on {} after a restart (error: {:?})",
                                v.state, gw.proc.name, v.error
                            )));
                        }
                    }
                }
                if self.ids.iter().all(|id| last.get(id).is_some_and(|v| v.state == "connected")) {
                    return Ok(last);
                }
            }
            if Instant::now() >= deadline {
                let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
                let mut examples = Vec::new();
                for id in &self.ids {
                    let st = last.get(id).map_or("absent", |v| v.state.as_str());
                    *by_state.entry(st).or_insert(0) += 1;
                    if st != "connected" && examples.len() < 3 {
                        examples
                            .push(format!("{id}: {st} ({:?})", last.get(id).and_then(|v| v.error.clone())));
                    }
                }
                return Err(violation(format!(
                    "not every tenant connected on {} within {within:?}: {by_state:?}; e.g. {examples:?}; log tail:\n{}",
                    gw.proc.name,
                    gw.proc.log_tail(15)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The per-cycle promises: no re-pair, no 440, one device per phone, one device ever per
    /// tenant, lease epochs strictly increasing.
    async fn check(&mut self, when: &str, views: &BTreeMap<String, View>) -> Result<(), ChaosError> {
        let s = self.stats().await?;
        self.r.re_pairs = s.pairings_end.saturating_sub(self.pairings_after_link);
        self.r.sim = s.clone();
        if s.pairings_end != self.pairings_after_link {
            return Err(violation(format!(
                "{when}: re-pair: simulator pairings {} → {}",
                self.pairings_after_link, s.pairings_end
            )));
        }
        let conflicts = s.stream_errors.get("440").copied().unwrap_or(0);
        if s.replaced != 0 || conflicts != 0 {
            return Err(violation(format!(
                "{when}: {} replaced connections, {conflicts} stream errors 440",
                s.replaced
            )));
        }
        if s.ack_stream_errors != 0 {
            return Err(violation(format!(
                "{when}: {} streams ended for a stanza not acked in time",
                s.ack_stream_errors
            )));
        }
        for (i, phone) in self.phones.iter().enumerate() {
            let v = self.admin_ok("GET", &format!("/phones/{phone}/devices"), None).await?;
            let n = v["devices"].as_array().map_or(0, Vec::len);
            self.r.devices_per_phone.0 = self.r.devices_per_phone.0.min(n);
            self.r.devices_per_phone.1 = self.r.devices_per_phone.1.max(n);
            if n != 1 {
                return Err(violation(format!("{when}: phone of {} lists {n} linked devices", self.ids[i])));
            }
        }
        let first = when == "link";
        for (i, id) in self.ids.iter().enumerate() {
            let Some(v) = views.get(id) else {
                return Err(violation(format!("{when}: {id} missing from the tenant list")));
            };
            if v.devices_registered != 1 {
                return Err(violation(format!(
                    "{when}: {id} registered {} devices over its history",
                    v.devices_registered
                )));
            }
            let Some(e) = v.lease_epoch else {
                return Err(violation(format!("{when}: {id} is connected without a lease epoch")));
            };
            if !first && e <= self.epochs[i] {
                return Err(violation(format!(
                    "{when}: {id} lease epoch went {} → {e} (must increase on every new holder)",
                    self.epochs[i]
                )));
            }
            self.epochs[i] = e;
            if !first {
                self.r.epoch_checks += 1;
            }
        }
        Ok(())
    }

    async fn wait_term_exit(&mut self, gw: &mut Gateway, when: &str) -> Result<(), ChaosError> {
        let t0 = Instant::now();
        match gw.proc.wait_exit(EXIT_WAIT).await? {
            Some(st) if st.success() => {
                self.term_exits.push(ms(t0.elapsed()));
                Ok(())
            }
            Some(st) => Err(violation(format!(
                "{when}: {} exited {st} after SIGTERM (must be 0); log tail:\n{}",
                gw.proc.name,
                gw.proc.log_tail(20)
            ))),
            None => Err(violation(format!(
                "{when}: {} still running {EXIT_WAIT:?} after SIGTERM; log tail:\n{}",
                gw.proc.name,
                gw.proc.log_tail(20)
            ))),
        }
    }

    async fn stop(&mut self, old: &mut Gateway, kind: Disruption, when: &str) -> Result<(), ChaosError> {
        if kind.is_kill() {
            old.proc.sigkill()?;
            self.r.sigkills += 1;
            if old.proc.wait_exit(EXIT_WAIT).await?.is_none() {
                return Err(violation(format!("{when}: {} survived SIGKILL", old.proc.name)));
            }
            Ok(())
        } else {
            old.proc.sigterm()?;
            self.r.sigterms += 1;
            self.wait_term_exit(old, when).await
        }
    }

    /// One cycle: stop `old` (after starting the next process for overlap kinds), then wait for
    /// every tenant on the new one. Returns the new gateway, its views and the recovery time.
    async fn cycle(
        &mut self,
        i: usize,
        c: &Cycle,
        mut old: Gateway,
    ) -> Result<(Gateway, BTreeMap<String, View>, u64), ChaosError> {
        let when = format!("cycle {i} ({})", c.disruption.as_str());
        let (mut new, t0) = if c.disruption.is_overlap() {
            let mut new = self.spawn()?;
            self.wait_overlap(&mut new, &mut old, &when).await?;
            self.r.overlaps += 1;
            let t0 = Instant::now();
            self.stop(&mut old, c.disruption, &when).await?;
            (new, t0)
        } else {
            let t0 = Instant::now();
            self.stop(&mut old, c.disruption, &when).await?;
            // The container sleeps: no process runs for a while (part of the scenario).
            tokio::time::sleep(Duration::from_millis(c.asleep_ms)).await;
            (self.spawn()?, t0)
        };
        drop(old);
        self.wait_healthy(&mut new).await?;
        let views = self.wait_connected(&mut new, self.o.wait + self.o.lease_ttl, true).await?;
        Ok((new, views, ms(t0.elapsed())))
    }

    /// Waits until `new` is really running beside `old`: with the embedded store it is blocked
    /// on the file lock (its log says so); with Firestore it is ready and none of its tenants is
    /// connected (the old process holds every lease).
    async fn wait_overlap(&self, new: &mut Gateway, old: &mut Gateway, when: &str) -> Result<(), ChaosError> {
        let deadline = Instant::now() + self.o.wait;
        loop {
            Self::ensure_running(old, "overlap")?;
            Self::ensure_running(new, "overlap")?;
            let ready = match self.o.store {
                ChaosStore::Embedded => std::fs::read_to_string(&new.proc.log)
                    .unwrap_or_default()
                    .contains("locked by another process"),
                ChaosStore::Firestore { .. } => {
                    matches!(Self::api(new, "GET", "/readyz", None).await, Ok(r) if r.status == 200)
                }
            };
            if ready {
                break;
            }
            if Instant::now() >= deadline {
                return Err(violation(format!(
                    "{when}: {} did not come up beside {} within {:?}; log tail:\n{}",
                    new.proc.name,
                    old.proc.name,
                    self.o.wait,
                    new.proc.log_tail(15)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        if matches!(self.o.store, ChaosStore::Firestore { .. }) {
            let r = Self::api(new, "GET", "/v1/tenants", None).await?;
            let views = parse_views(&r.json());
            if let Some((id, _)) = views.iter().find(|(_, v)| v.state == "connected") {
                return Err(violation(format!(
                    "{when}: {id} connected on {} while {} still holds its lease",
                    new.proc.name, old.proc.name
                )));
            }
        }
        Ok(())
    }

    /// Sends one message each way for the tenants this cycle picks (seeded).
    async fn traffic(&mut self, i: usize, c: &Cycle, gw: &Gateway) -> Result<(), ChaosError> {
        let mut rng = StdRng::seed_from_u64(c.traffic_seed);
        let all: Vec<usize> = (0..self.ids.len()).collect();
        let picked: Vec<usize> = all.choose_multiple(&mut rng, self.o.messages_per_cycle).copied().collect();
        for j in picked {
            let text = format!("{}c{i}-p2t-t{j}", self.prefix());
            let path = format!("/phones/{}/send", self.peer);
            self.admin_ok("POST", &path, Some(serde_json::json!({"to": self.phones[j], "text": text})))
                .await?;
            self.p2t.record(text, Outcome::Accepted);

            if self.r.messages.note.is_some() {
                continue;
            }
            let text = format!("{}c{i}-t2p-t{j}", self.prefix());
            let path = format!("/v1/tenants/{}/messages", self.ids[j]);
            let body = serde_json::json!({"to": self.phone_peer(), "text": text});
            match Self::api(gw, "POST", &path, Some(body)).await {
                Ok(r) if r.is_success() => self.t2p.record(text, Outcome::Accepted),
                Ok(r) if r.status == 404 && r.json()["error"]["code"] == "route_not_found" => {
                    self.r.messages.note = Some(
                        "tenant → phone not exercised: this build has no POST /v1/tenants/{id}/messages"
                            .into(),
                    );
                }
                Ok(r) => {
                    return Err(violation(format!(
                        "cycle {i}: send from {} refused: {} {}",
                        self.ids[j],
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )));
                }
                Err(_) => self.t2p.record(text, Outcome::Unknown),
            }
        }
        Ok(())
    }

    fn phone_peer(&self) -> &str {
        &self.peer
    }

    fn prefix(&self) -> String {
        format!("chaos-{}-", self.o.seed)
    }

    /// Waits (bounded) until every message is through: the simulator has an answer (receipt or
    /// nack) for every copy it handed to a tenant's device, and the peer phone holds every
    /// accepted tenant → phone message. Tallies tenant → phone; phone → tenant is tallied from
    /// the store after the last exit.
    async fn drain(&mut self, gw: &mut Gateway) -> Result<(), ChaosError> {
        let deadline = Instant::now() + self.o.wait * 4;
        loop {
            Self::ensure_running(gw, "drain")?;
            let st = self.admin_ok("GET", "/stats", None).await?;
            let pending = st["messages_to_devices"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(st["messages_delivered"].as_u64().unwrap_or(0));
            let v = self.admin_ok("GET", &format!("/phones/{}/inbox", self.peer), None).await?;
            let seen = count_distinct_ids(&v, &self.prefix());
            let missing = self.t2p.missing(&seen).len();
            if (missing == 0 && pending == 0) || Instant::now() >= deadline {
                let f = self.t2p.tally(&seen);
                let bad = f.lost + f.duplicated;
                self.r.messages.tenant_to_phone = f;
                self.r.messages.decrypt_failures = ["phone_decrypt_failures", "retry_receipts"]
                    .iter()
                    .map(|k| st[*k].as_u64().unwrap_or(0))
                    .sum();
                if bad > 0 {
                    return Err(violation(format!(
                        "tenant → phone: {:?} (missing e.g. {:?})",
                        self.r.messages.tenant_to_phone,
                        self.t2p.missing(&seen).first()
                    )));
                }
                if pending > 0 {
                    self.say(&format!("drain: {pending} copies still unanswered at the deadline"));
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn open_store(&self) -> Result<Arc<dyn Store>, StoreError> {
        let clock: Arc<dyn crate::store::StoreClock> = Arc::new(SystemClock);
        let key = crypt::MasterKey::from_base64(&self.master_key)?;
        let ring = Arc::new(crypt::Keyring::new(&key, &[]));
        Ok(match &self.o.store {
            ChaosStore::Embedded => {
                Arc::new(crate::store::embedded::EmbeddedStore::open(&self.store_path, ring, clock).await?)
            }
            #[cfg(feature = "firestore")]
            ChaosStore::Firestore { project, .. } => {
                let opts = crate::store::firestore::FirestoreOptions::new(project.clone());
                Arc::new(crate::store::firestore::FirestoreStore::connect(opts, ring, clock).await?)
            }
            #[cfg(not(feature = "firestore"))]
            ChaosStore::Firestore { .. } => {
                return Err(StoreError::Config { detail: "built without the `firestore` feature".into() });
            }
        })
    }

    /// After the last exit: every tenant's creds are those of the phone's one device, its lease
    /// is released at an epoch no lower than the last one seen; with traffic, every message the
    /// peer phone sent is in the tenant's inbox exactly once.
    async fn check_store(&mut self) -> Result<(), ChaosError> {
        let store = self.open_store().await.map_err(ChaosError::Store)?;
        let mut delivered = BTreeMap::new();
        for (i, id) in self.ids.iter().enumerate() {
            let tid = TenantId::new(id).map_err(|e| ChaosError::Options(e.to_string()))?;
            let snap = store.hydrate(&tid).await.map_err(ChaosError::Store)?;
            let v = self.admin_ok("GET", &format!("/phones/{}/devices", self.phones[i]), None).await?;
            let device = v["devices"][0]["device_jid"].as_str().unwrap_or_default().to_owned();
            let me = snap.creds.as_ref().and_then(|c| c.me.as_ref()).map(|m| m.jid.clone());
            if me.as_deref() != Some(device.as_str()) {
                return Err(violation(format!(
                    "store: {id} creds are for {me:?}, the phone lists {device:?}"
                )));
            }
            match &snap.lease {
                Some(l) if l.holder.is_empty() && l.epoch >= self.epochs[i] => {}
                other => {
                    return Err(violation(format!(
                        "store: {id} lease after the final SIGTERM is {other:?} (want released, epoch ≥ {})",
                        self.epochs[i]
                    )));
                }
            }
            if self.o.messages {
                for text in super::traffic::inbox_texts(store.as_ref(), &tid, &self.prefix()).await? {
                    *delivered.entry(text).or_insert(0) += 1;
                }
            }
            self.r.store_checked += 1;
        }
        if self.o.messages {
            let f = self.p2t.tally(&delivered);
            let bad = f.lost + f.duplicated;
            self.r.messages.phone_to_tenant = f;
            if bad > 0 {
                return Err(violation(format!(
                    "phone → tenant: {:?} (missing e.g. {:?})",
                    self.r.messages.phone_to_tenant,
                    self.p2t.missing(&delivered).first()
                )));
            }
        }
        if self.r.messages.decrypt_failures > 0 {
            return Err(violation(format!("{} decrypt failures", self.r.messages.decrypt_failures)));
        }
        Ok(())
    }
}

fn parse_views(v: &serde_json::Value) -> BTreeMap<String, View> {
    v["tenants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t["id"].as_str()?.to_owned(),
                        View {
                            state: t["state"].as_str().unwrap_or_default().to_owned(),
                            lease_epoch: t["lease_epoch"].as_u64(),
                            devices_registered: t["devices_registered"].as_array().map_or(0, Vec::len),
                            error: t["error"].as_str().map(str::to_owned),
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
