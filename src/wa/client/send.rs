//! Outbound messaging of the client: `send_text` for 1:1 chats (own devices get the
//! device-sent wrapper) and groups (sender key + SKDM fan-out), run as a per-message job over
//! the usync / bundle-fetch / group-metadata iqs, and the resend that answers a retry receipt.
//!
//! Every ratchet change is queued as `Persist(Delta::Keys)` before the `Send` of the stanza
//! that depends on it (invariant 1). No IO, no clock: `now` comes from the caller.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::keys::{KeyCache, KeyChange};
use super::sent::Sent;
use super::{Client, Delta, Event, MessageStatus, Output, Pending, StatusUpdate, Timer};
use crate::wa::binary::Node;
use crate::wa::jid::{Jid, Server};
use crate::wa::message::{
    DeviceCiphertext, GroupSend, device_query, device_sent, dm_retry_stanza, dm_stanza, encode_plaintext,
    group_retry_stanza, group_stanza, new_message_id, parse_device_result, parse_prekey_result, peer_stanza,
    prekey_fetch, skdm_message, text_message,
};
use crate::wa::proto;
use crate::wa::signal::{
    self, LocalIdentity, PreKeyBundle, SenderKeyName, SignalAddress, SignalError, SignedPreKeyRecord,
};

/// Failure reason of a job whose iqs were not answered in time (transient).
const TIMED_OUT: &str = "timed out waiting for the server";
/// Failure reason of a job that lost its login (transient).
const NOT_LOGGED_IN: &str = "not logged in";

/// How long a device list from usync is trusted (Baileys caches 5 minutes).
pub const DEVICE_LIST_TTL: Duration = Duration::from_secs(300);
/// A send job whose iqs are not all answered by then fails.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Resends per (message, device) before retry receipts are ignored (whatsmeow: 10).
pub const MAX_RESENDS: u32 = 10;
/// `push_priority` of peer data-operation requests (Baileys `sendPeerDataOperationMessage`).
const PEER_PUSH_PRIORITY: &str = "high_force";
/// Resend counters kept before the memory is reset (bounded).
const RESEND_COUNTERS: usize = 1024;

/// Why `send_text` refused a message at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Transient: not logged in on this connection; retry after reconnecting.
    #[error("not logged in")]
    NotLoggedIn,
    /// Caller error: the recipient is not a user JID, a phone number or a group JID.
    #[error("invalid recipient {0:?}")]
    InvalidRecipient(String),
    /// Caller error: a message with this id is already being sent.
    #[error("message {0} is already being sent")]
    InProgress(String),
}

/// What a job is sending.
#[derive(Debug, Clone)]
enum JobKind {
    /// A 1:1 message to `chat`.
    Direct,
    /// A group message.
    Group,
    /// A resend of `id` to one device that sent a retry receipt.
    Resend { device: Jid },
    /// A peer (own-device protocol) message to our own phone (device 0).
    Peer,
}

/// The iq a job waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// usync device lists.
    Devices,
    /// Prekey bundles of devices without a session.
    Bundles,
    /// Group metadata (`w:g2` query).
    GroupInfo,
}

#[derive(Debug)]
struct Job {
    id: String,
    chat: Jid,
    kind: JobKind,
    message: proto::Message,
    deadline: Instant,
    /// Users of the chat (1:1: own + peer; group: participants + own).
    users: Vec<Jid>,
    addressing_mode: Option<String>,
    /// Devices the bundle fetch was asked for.
    fetching: Vec<Jid>,
    /// Key changes made so far (session set-up), persisted with the ciphertexts.
    changes: Vec<KeyChange>,
}

/// Messaging state kept by the client across connections (keys) and per connection (jobs).
#[derive(Debug, Default)]
pub(crate) struct Messaging {
    pub(crate) keys: KeyCache,
    jobs: HashMap<u64, Job>,
    next_job: u64,
    resends: HashMap<(String, Jid), u32>,
}

impl Messaging {
    /// Forgets the per-connection state (iqs of a closed connection never answer).
    pub(crate) fn reset_connection(&mut self) {
        self.jobs.clear();
    }

    /// The message we sent with this id (this connection or an earlier one, while kept).
    pub(crate) fn recent(&self, id: &str) -> Option<&Sent> {
        self.keys.sent.get(id)
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        self.jobs.values().map(|j| j.deadline).min()
    }
}

/// The Signal address of a device JID (user JID without device, device number).
pub(crate) fn address_of(device: &Jid) -> SignalAddress {
    SignalAddress::new(device.to_non_ad().to_string(), u32::from(device.device))
}

/// Parses a recipient: a bare phone number (`+` allowed), a user JID (device dropped) or a
/// group JID.
pub(crate) fn parse_recipient(to: &str) -> Result<Jid, SendError> {
    let bad = || SendError::InvalidRecipient(to.chars().take(64).collect());
    let t = to.trim();
    let digits = t.strip_prefix('+').unwrap_or(t);
    if !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Jid::new(digits, Server::User));
    }
    let jid: Jid = t.parse().map_err(|_| bad())?;
    if jid.user.is_empty() {
        return Err(bad());
    }
    match jid.server {
        Server::User | Server::Lid => Ok(jid.to_non_ad()),
        Server::Group if jid.device == 0 => Ok(jid),
        _ => Err(bad()),
    }
}

/// Device number of a hosted (Cloud API) device; the device-list cache keeps hosted devices
/// by this number only.
const HOSTED_DEVICE: u16 = 99;

fn is_hosted(d: &Jid) -> bool {
    matches!(d.server, Server::Hosted | Server::HostedLid) || d.device == HOSTED_DEVICE
}

/// The JID of device `d` of `user`: a hosted device lives on the hosted servers.
fn device_of(user: &Jid, d: u16) -> Jid {
    if d == HOSTED_DEVICE {
        let server = if user.server == Server::Lid { Server::HostedLid } else { Server::Hosted };
        Jid::new(user.user.as_str(), server).with_device(d)
    } else {
        user.clone().with_device(d)
    }
}

/// Why a job failed: the text for `Status(Failed)` and whether retrying later may help.
#[derive(Debug)]
struct JobFailure {
    reason: String,
}

impl Client {
    pub(crate) fn own_jid(&self) -> Option<Jid> {
        self.creds.me.as_ref().and_then(|m| m.jid.parse().ok())
    }

    pub(crate) fn local_identity(&self) -> LocalIdentity {
        LocalIdentity::new(self.creds.identity_key.clone(), self.creds.registration_id)
    }

    pub(crate) fn signed_pre_key_record(&self) -> SignedPreKeyRecord {
        let s = &self.creds.signed_pre_key;
        SignedPreKeyRecord::new(s.key.id, s.key.key.clone(), s.signature)
    }

    fn device_identity(&self) -> Option<Vec<u8>> {
        self.creds.me.as_ref().map(|m| m.account.clone())
    }

    /// The client's key cache (sessions, prekeys, sender keys, …).
    pub fn keys(&self) -> &KeyCache {
        &self.msg.keys
    }

    /// Replaces the key cache with one hydrated from the store (call before `connect`).
    pub fn load_keys(&mut self, keys: KeyCache) {
        self.msg.keys = keys;
    }

    /// Takes the key cache out (to hand it to the next connection's client).
    pub fn take_keys(&mut self) -> KeyCache {
        std::mem::take(&mut self.msg.keys)
    }

    /// Sends `text` to `to` (a phone number, user JID or group JID) with message id `id`.
    /// The send runs over iqs: [`Event::Relayed`] follows once the stanza was queued (after the
    /// `Persist` of its ratchet state), then [`Event::Status`] updates; a failure before that
    /// ends in `Status(Failed)`.
    ///
    /// # Errors
    /// [`SendError`] when not logged in, for a bad recipient, or when `id` is in flight.
    pub fn send_text(&mut self, now: Instant, id: &str, to: &str, text: &str) -> Result<(), SendError> {
        if !self.is_logged_in() || self.own_jid().is_none() {
            return Err(SendError::NotLoggedIn);
        }
        let chat = parse_recipient(to)?;
        if self.msg.jobs.values().any(|j| j.id == id) {
            return Err(SendError::InProgress(id.to_owned()));
        }
        let message = text_message(text);
        let kind = if chat.is_group() { JobKind::Group } else { JobKind::Direct };
        self.start_job(now, id.to_owned(), chat, kind, message, Vec::new());
        Ok(())
    }

    fn start_job(
        &mut self,
        now: Instant,
        id: String,
        chat: Jid,
        kind: JobKind,
        message: proto::Message,
        changes: Vec<KeyChange>,
    ) {
        let n = self.msg.next_job;
        self.msg.next_job += 1;
        let job = Job {
            id,
            chat,
            kind,
            message,
            deadline: now + SEND_TIMEOUT,
            users: Vec::new(),
            addressing_mode: None,
            fetching: Vec::new(),
            changes,
        };
        self.msg.jobs.insert(n, job);
        self.update_job_timer();
        self.job_start(now, n);
    }

    fn update_job_timer(&mut self) {
        let d = self.msg.earliest_deadline();
        self.set_timer(Timer::Jobs, d);
    }

    fn job_start(&mut self, now: Instant, n: u64) {
        let Some(own) = self.own_jid() else { return self.fail_job(n, NOT_LOGGED_IN) };
        let Some(job) = self.msg.jobs.get_mut(&n) else { return };
        match job.kind.clone() {
            JobKind::Direct => {
                job.users = vec![own.to_non_ad(), job.chat.to_non_ad()];
                self.job_need_devices(now, n);
            }
            JobKind::Group => {
                let gid = job.chat.clone();
                let id = self.new_id();
                let iq = Node::new("iq")
                    .attr("id", id.clone())
                    .attr("to", gid)
                    .attr("type", "get")
                    .attr("xmlns", "w:g2")
                    .children([Node::new("query").attr("request", "interactive")]);
                self.pending.insert(id, Pending::Msg(n, Step::GroupInfo));
                self.send_node(&iq);
            }
            JobKind::Peer => {
                let phone = job.chat.clone();
                if self.msg.keys.has_session(&address_of(&phone)) {
                    self.job_encrypt(now, n);
                } else {
                    self.fetch_bundles(n, vec![phone]);
                }
            }
            JobKind::Resend { device } => {
                // A bundle given in the retry receipt was processed already; otherwise fetch a
                // fresh one (the receiver may have lost its session), as Baileys does.
                if job.changes.is_empty() {
                    self.fetch_bundles(n, vec![device]);
                } else {
                    self.job_encrypt(now, n);
                }
            }
        }
    }

    fn job_need_devices(&mut self, now: Instant, n: u64) {
        let Some(job) = self.msg.jobs.get(&n) else { return };
        let stale: Vec<Jid> = job
            .users
            .iter()
            .filter(|u| {
                !self.msg.keys.device_lists.get(&u.to_string()).is_some_and(|d| {
                    d.fetched.is_some_and(|t| now.saturating_duration_since(t) < DEVICE_LIST_TTL)
                })
            })
            .cloned()
            .collect();
        if stale.is_empty() {
            return self.job_have_devices(now, n);
        }
        let id = self.new_id();
        let sid = self.new_id();
        self.pending.insert(id.clone(), Pending::Msg(n, Step::Devices));
        self.send_node(&device_query(&id, &sid, &stale));
    }

    /// The devices a job fans out to, own devices first (never our exact device).
    fn job_targets(&self, job: &Job) -> Vec<Jid> {
        let Some(own) = self.own_jid() else { return Vec::new() };
        let own_user = own.to_non_ad();
        let mut users = job.users.clone();
        // Own user first, as Baileys orders `<to>`.
        users.sort_by_key(|u| *u != own_user);
        let mut out = Vec::new();
        for user in &users {
            let mut devices = self
                .msg
                .keys
                .device_lists
                .get(&user.to_string())
                .map(|d| d.devices.clone())
                .unwrap_or_default();
            if matches!(job.kind, JobKind::Direct) && !devices.contains(&0) {
                // Device 0 (the phone) is always targeted in 1:1 chats (Baileys 6.7.21).
                devices.insert(0, 0);
            }
            for d in devices {
                let jid = device_of(user, d);
                // Hosted (Cloud API) devices get 1:1 messages but never group messages
                // (whatsmeow `sendGroup` drops them; `sendDM` keeps them).
                let hosted_in_group =
                    is_hosted(&jid) && !matches!(job.kind, JobKind::Direct | JobKind::Resend { .. });
                if jid == own || hosted_in_group || out.contains(&jid) {
                    continue;
                }
                out.push(jid);
            }
        }
        out
    }

    /// Devices that need a pairwise ciphertext in this job.
    fn pairwise_targets(&self, job: &Job) -> Vec<Jid> {
        match &job.kind {
            JobKind::Resend { device } => vec![device.clone()],
            JobKind::Peer => vec![job.chat.clone()],
            JobKind::Direct => self.job_targets(job),
            JobKind::Group => {
                let memory = self.msg.keys.sender_key_memory.get(&job.chat.to_string());
                self.job_targets(job)
                    .into_iter()
                    .filter(|d| !memory.is_some_and(|m| m.contains(&d.to_string())))
                    .collect()
            }
        }
    }

    fn job_have_devices(&mut self, now: Instant, n: u64) {
        let Some(job) = self.msg.jobs.get(&n) else { return };
        let missing: Vec<Jid> = self
            .pairwise_targets(job)
            .into_iter()
            .filter(|d| !self.msg.keys.has_session(&address_of(d)))
            .collect();
        if missing.is_empty() {
            self.job_encrypt(now, n);
        } else {
            self.fetch_bundles(n, missing);
        }
    }

    fn fetch_bundles(&mut self, n: u64, devices: Vec<Jid>) {
        let id = self.new_id();
        let iq = prekey_fetch(&id, &devices, None);
        if let Some(job) = self.msg.jobs.get_mut(&n) {
            job.fetching = devices;
        }
        self.pending.insert(id, Pending::Msg(n, Step::Bundles));
        self.send_node(&iq);
    }

    /// Handles the answer to a job's iq.
    pub(crate) fn handle_job_iq(&mut self, now: Instant, n: u64, step: Step, node: &Node) {
        if !self.msg.jobs.contains_key(&n) {
            return;
        }
        match step {
            Step::Devices => match parse_device_result(node) {
                Ok(users) => {
                    let mut changes = Vec::new();
                    for u in users {
                        // Hosted devices are kept (by their number) for 1:1 sends; a hosted
                        // device under any other number cannot be cached and is dropped.
                        let devices = u
                            .devices
                            .iter()
                            .filter(|d| !is_hosted(d) || d.device == HOSTED_DEVICE)
                            .map(|d| d.device)
                            .collect();
                        self.msg.keys.put_devices(&u.user.to_string(), devices, now, &mut changes);
                    }
                    if let Some(job) = self.msg.jobs.get_mut(&n) {
                        job.changes.extend(changes);
                    }
                    self.job_have_devices(now, n);
                }
                Err(e) => self.fail_job(n, &format!("device list query failed: {e}")),
            },
            Step::Bundles => match parse_prekey_result(node) {
                Ok(bundles) => self.job_bundles(now, n, &bundles),
                Err(e) => self.fail_job(n, &format!("prekey bundle fetch failed: {e}")),
            },
            Step::GroupInfo => match parse_group_info(node) {
                Ok((participants, mode)) => {
                    let Some(own) = self.own_jid() else { return };
                    if let Some(job) = self.msg.jobs.get_mut(&n) {
                        let mut users = vec![own.to_non_ad()];
                        for p in participants {
                            if !users.contains(&p) {
                                users.push(p);
                            }
                        }
                        job.users = users;
                        job.addressing_mode = Some(mode);
                    }
                    self.job_need_devices(now, n);
                }
                Err(reason) => self.fail_job(n, &format!("group metadata query failed: {reason}")),
            },
        }
    }

    fn job_bundles(&mut self, now: Instant, n: u64, bundles: &[(Jid, PreKeyBundle)]) {
        let local = self.local_identity();
        let Some(job) = self.msg.jobs.get(&n) else { return };
        let fetching = job.fetching.clone();
        let mut changes = Vec::new();
        for device in &fetching {
            let Some((_, bundle)) = bundles.iter().find(|(j, _)| j == device) else {
                return self.fail_job(n, &format!("no prekey bundle for device {}", device.device));
            };
            let addr = address_of(device);
            let existing = self.msg.keys.sessions.get(&addr);
            match signal::process_bundle(&local, &addr, existing, bundle, &mut self.rng) {
                Ok((record, deltas)) => {
                    self.msg.keys.apply_signal(deltas, &mut changes);
                    self.msg.keys.sessions.insert(addr, record);
                }
                Err(e) => return self.fail_job(n, &format!("prekey bundle rejected: {e}")),
            }
        }
        if let Some(job) = self.msg.jobs.get_mut(&n) {
            job.changes.extend(changes);
        }
        self.job_encrypt(now, n);
    }

    fn encrypt_for(
        &mut self,
        device: &Jid,
        plaintext: &[u8],
        changes: &mut Vec<KeyChange>,
    ) -> Result<DeviceCiphertext, SignalError> {
        let addr = address_of(device);
        let record = self.msg.keys.sessions.get(&addr).ok_or(SignalError::NoSession)?;
        let enc = signal::encrypt(&addr, record, plaintext)?;
        self.msg.keys.apply_signal(enc.deltas, changes);
        self.msg.keys.sessions.insert(addr, enc.record);
        Ok(DeviceCiphertext { device: device.clone(), kind: enc.kind.into(), ciphertext: enc.ciphertext })
    }

    /// Encrypts and queues the job's stanza: Persist(keys) → Send → Event::Relayed.
    fn job_encrypt(&mut self, now: Instant, n: u64) {
        let Some(own) = self.own_jid() else { return self.fail_job(n, NOT_LOGGED_IN) };
        let Some(job) = self.msg.jobs.remove(&n) else { return };
        self.update_job_timer();
        let identity = self.device_identity();
        let mut changes = job.changes.clone();
        let stanza = match self.build_stanza(&own, &job, identity.as_deref(), &mut changes) {
            Ok(s) => s,
            Err(e) => {
                // Session set-up already happened in memory: keep it durable anyway.
                if !changes.is_empty() {
                    self.outputs.push_back(Output::Persist(Delta::Keys(changes)));
                }
                return self.report_failure(&job, &e.reason);
            }
        };
        if matches!(job.kind, JobKind::Direct | JobKind::Group) {
            // Kept for retry receipts (also after a restart): durable with the ratchet state.
            let at = self.unix(now);
            let sent = Sent { chat: job.chat.clone(), message: job.message.clone(), at };
            self.msg.keys.sent.remember(&job.id, sent, at, &mut changes);
        }
        // Invariant 1: the chain state behind every ciphertext is durable before it leaves.
        self.outputs.push_back(Output::Persist(Delta::Keys(changes)));
        self.send_node(&stanza);
        if matches!(job.kind, JobKind::Direct | JobKind::Group) {
            self.outputs
                .push_back(Output::Event(Event::Relayed { id: job.id.clone(), chat: job.chat.to_string() }));
        }
    }

    fn build_stanza(
        &mut self,
        own: &Jid,
        job: &Job,
        identity: Option<&[u8]>,
        changes: &mut Vec<KeyChange>,
    ) -> Result<Node, JobFailure> {
        let fail = |what: &str, e: SignalError| JobFailure { reason: format!("{what}: {e}") };
        match &job.kind {
            JobKind::Direct => {
                let plain = encode_plaintext(&job.message, &mut self.rng);
                let dsm = encode_plaintext(&device_sent(&job.message, &job.chat), &mut self.rng);
                let mut entries = Vec::new();
                for device in self.job_targets(job) {
                    let body =
                        if device.user == own.user && device.server == own.server { &dsm } else { &plain };
                    entries.push(self.encrypt_for(&device, body, changes).map_err(|e| fail("encrypt", e))?);
                }
                Ok(dm_stanza(&job.id, &job.chat, &entries, identity))
            }
            JobKind::Resend { device } => {
                let chat = &job.chat;
                if chat.is_group() {
                    let (skdm, skmsg) = self.group_parts(own, job, std::slice::from_ref(device), changes)?;
                    let Some(entry) = skdm.first() else {
                        return Err(JobFailure { reason: "no skdm for resend".into() });
                    };
                    Ok(group_retry_stanza(&job.id, chat, &skmsg, entry, identity))
                } else {
                    let payload = if device.user == own.user && device.server == own.server {
                        device_sent(&job.message, chat)
                    } else {
                        job.message.clone()
                    };
                    let body = encode_plaintext(&payload, &mut self.rng);
                    let entry = self.encrypt_for(device, &body, changes).map_err(|e| fail("encrypt", e))?;
                    Ok(dm_retry_stanza(&job.id, &entry, identity))
                }
            }
            JobKind::Peer => {
                let body = encode_plaintext(&job.message, &mut self.rng);
                let e = self.encrypt_for(&job.chat, &body, changes).map_err(|e| fail("encrypt", e))?;
                Ok(peer_stanza(&job.id, own, e.kind, &e.ciphertext, PEER_PUSH_PRIORITY, identity))
            }
            JobKind::Group => {
                let targets = self.pairwise_targets(job);
                let (skdm, skmsg) = self.group_parts(own, job, &targets, changes)?;
                let send = GroupSend {
                    id: &job.id,
                    group: &job.chat,
                    addressing_mode: job.addressing_mode.as_deref(),
                    skmsg: &skmsg,
                    skdm: &skdm,
                    device_identity: identity,
                };
                Ok(group_stanza(&send))
            }
        }
    }

    /// Our SKDM for `targets` (pairwise) and the skmsg of the job's message; records the
    /// targets in the group's sender-key memory.
    fn group_parts(
        &mut self,
        own: &Jid,
        job: &Job,
        targets: &[Jid],
        changes: &mut Vec<KeyChange>,
    ) -> Result<(Vec<DeviceCiphertext>, Vec<u8>), JobFailure> {
        let group = job.chat.to_string();
        let name = SenderKeyName::new(group.clone(), address_of(own));
        let (skdm, record, deltas) =
            signal::create_distribution_message(&name, self.msg.keys.sender_keys.get(&name), &mut self.rng);
        self.msg.keys.apply_signal(deltas, changes);
        let carrier = encode_plaintext(&skdm_message(&job.chat, &skdm.encode()), &mut self.rng);
        let mut entries = Vec::new();
        for d in targets {
            let e = self
                .encrypt_for(d, &carrier, changes)
                .map_err(|e| JobFailure { reason: format!("encrypt skdm: {e}") })?;
            entries.push(e);
        }
        let body = encode_plaintext(&job.message, &mut self.rng);
        let out = signal::group_encrypt(&name, &record, &body, &mut self.rng)
            .map_err(|e| JobFailure { reason: format!("group encrypt: {e}") })?;
        self.msg.keys.apply_signal(out.deltas, changes);
        self.msg.keys.sender_keys.insert(name, out.record);
        let names: Vec<String> = targets.iter().map(ToString::to_string).collect();
        self.msg.keys.remember_skdm(&group, &names, changes);
        Ok((entries, out.bytes))
    }

    fn fail_job(&mut self, n: u64, reason: &str) {
        let Some(job) = self.msg.jobs.remove(&n) else { return };
        self.update_job_timer();
        if !job.changes.is_empty() {
            self.outputs.push_back(Output::Persist(Delta::Keys(job.changes.clone())));
        }
        self.report_failure(&job, reason);
    }

    fn report_failure(&mut self, job: &Job, reason: &str) {
        let transient = reason == TIMED_OUT || reason == NOT_LOGGED_IN;
        if transient && matches!(job.kind, JobKind::Direct | JobKind::Group) {
            tracing::info!(msg_id = %job.id, reason, "send deferred; the caller retries");
            self.outputs.push_back(Output::Event(Event::SendDeferred { id: job.id.clone() }));
            return;
        }
        if matches!(job.kind, JobKind::Peer) {
            tracing::warn!(msg_id = %job.id, "peer message to the phone failed");
            tracing::debug!(msg_id = %job.id, reason, "peer message failure reason");
            return;
        }
        if let JobKind::Resend { device } = &job.kind {
            tracing::warn!(msg_id = %job.id, device = device.device, "retry resend failed");
            tracing::debug!(msg_id = %job.id, reason, "retry resend failure reason");
            return;
        }
        // The reason may name the recipient (personal data): full text at debug only.
        tracing::warn!(msg_id = %job.id, "send failed");
        tracing::debug!(msg_id = %job.id, reason, "send failure reason");
        self.outputs.push_back(Output::Event(Event::Status(StatusUpdate {
            id: job.id.clone(),
            chat: job.chat.to_string(),
            from: None,
            status: MessageStatus::Failed(reason.to_owned()),
        })));
    }

    /// Fails jobs whose iqs were not answered in time.
    pub(crate) fn expire_jobs(&mut self, now: Instant) {
        let due: Vec<u64> =
            self.msg.jobs.iter().filter(|(_, j)| j.deadline <= now).map(|(n, _)| *n).collect();
        for n in due {
            self.fail_job(n, TIMED_OUT);
        }
        self.update_job_timer();
    }

    /// Sends `message` to our own phone (device 0) as a peer message; returns its id.
    pub(crate) fn send_peer(&mut self, now: Instant, own: &Jid, message: proto::Message) -> String {
        let id = new_message_id(self.unix(now), Some(&own.user), &mut self.rng);
        let phone = own.to_non_ad().with_device(0);
        self.start_job(now, id.clone(), phone, JobKind::Peer, message, Vec::new());
        id
    }

    /// Answers a retry receipt from `device` for our message `id`: re-encrypts the recent
    /// message for that device only (with a session from `bundle`, or a freshly fetched one).
    pub(crate) fn resend(&mut self, now: Instant, id: &str, device: Jid, bundle: Option<&PreKeyBundle>) {
        let Some(sent) = self.msg.recent(id).cloned() else {
            tracing::debug!(msg_id = %id, "retry receipt for an unknown message");
            return;
        };
        let count = self.msg.resends.entry((id.to_owned(), device.clone())).or_insert(0);
        *count += 1;
        if *count > MAX_RESENDS {
            tracing::warn!(msg_id = %id, "too many retry receipts; not resending");
            return;
        }
        if self.msg.resends.len() > RESEND_COUNTERS {
            self.msg.resends.clear();
        }
        let mut changes = Vec::new();
        if let Some(b) = bundle {
            let local = self.local_identity();
            let addr = address_of(&device);
            match signal::process_bundle(&local, &addr, self.msg.keys.sessions.get(&addr), b, &mut self.rng) {
                Ok((record, deltas)) => {
                    self.msg.keys.apply_signal(deltas, &mut changes);
                    self.msg.keys.sessions.insert(addr, record);
                }
                Err(e) => {
                    tracing::warn!(msg_id = %id, error = %e, "retry receipt keys rejected; fetching a bundle");
                }
            }
        }
        self.start_job(now, id.to_owned(), sent.chat, JobKind::Resend { device }, sent.message, changes);
    }
}

/// Parses a `w:g2` metadata answer: participant user JIDs and the addressing mode.
fn parse_group_info(node: &Node) -> Result<(Vec<Jid>, String), String> {
    if node.attr_str("type") != Some("result") {
        let code = node.child("error").and_then(|e| e.attr_str("code")).unwrap_or_default();
        return Err(format!("iq error {code}"));
    }
    let group = node.child("group").ok_or("no <group>")?;
    let mode = group.attr_str("addressing_mode").unwrap_or("pn").to_owned();
    let mut users = Vec::new();
    for p in group.children_with_tag("participant") {
        let jid = p.attr_jid("jid").ok_or("participant without jid")?;
        users.push(jid.to_non_ad());
    }
    Ok((users, mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recipients parse as phone numbers, user JIDs (device dropped) or groups; others fail.
    #[test]
    fn recipients() {
        assert_eq!(parse_recipient("+15550001111").unwrap().to_string(), "15550001111@s.whatsapp.net");
        assert_eq!(parse_recipient("1555:3@s.whatsapp.net").unwrap().to_string(), "1555@s.whatsapp.net");
        assert!(parse_recipient("123-456@g.us").unwrap().is_group());
        for bad in ["", "abc", "@s.whatsapp.net", "status@broadcast", "x@newsletter"] {
            assert!(matches!(parse_recipient(bad), Err(SendError::InvalidRecipient(_))), "{bad}");
        }
    }
}
