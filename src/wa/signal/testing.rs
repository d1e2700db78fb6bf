//! Test and interop helpers (hidden from docs): libsignal-node's seeded keys
//! (`seededKeyPair("ratchet-N")` of scripts/interop/vectors*.js), an RNG that replays them in
//! generation order, and a [`Conversation`] driver that runs a scripted pairwise exchange with
//! our code on every side and records it in the vector file's event format. Not for production:
//! every key here is derivable from a public string.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys::{LocalIdentity, PreKeyBundle, PreKeyRecord, PublicKey, SignedPreKeyRecord};
use super::{
    MessageKind, PreKeySignalMessage, SessionRecord, SignalAddress, SignalDelta, decrypt_message,
    decrypt_prekey_message, encrypt, process_bundle,
};
use crate::wa::noise::{KeyPair, xeddsa};

/// `seededKeyPair(seed)`: private = clamp(SHA-256(seed)).
pub fn seeded_key_pair(seed: &str) -> KeyPair {
    let mut p: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    p[0] &= 248;
    p[31] &= 127;
    p[31] |= 64;
    KeyPair::from_private_bytes(p)
}

/// An RNG whose byte stream is the private keys of `ratchet-0`, `ratchet-1`, … in order, so each
/// `KeyPair::generate` gets the key libsignal-node generated at the same point.
#[derive(Debug, Clone, Default)]
pub struct RatchetRng {
    next: usize,
    buf: Vec<u8>,
}

impl RatchetRng {
    /// Starts at `ratchet-start`.
    pub fn starting_at(start: usize) -> Self {
        Self { next: start, buf: Vec::new() }
    }

    /// How many keys were handed out (the next N).
    pub fn next_index(&self) -> usize {
        self.next
    }
}

impl rand_core::RngCore for RatchetRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.buf.is_empty() {
                let key = seeded_key_pair(&format!("ratchet-{}", self.next));
                self.buf = key.private().to_bytes().iter().rev().copied().collect();
                self.next += 1;
            }
            *byte = self.buf.pop().unwrap_or_default();
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for RatchetRng {}

/// One step of a scripted conversation, in the JSON shape of tests/vectors/libsignal-signal.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// `init`, `encrypt` or `decrypt`.
    pub op: String,
    /// Who acts (`alice`, `bob`, `carol`).
    pub actor: String,
    /// The other side.
    pub peer: String,
    /// `init`: whether the bundle carries Bob's one-time prekey 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_prekey: Option<bool>,
    /// Message id (`encrypt`/`decrypt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `encrypt`: the plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
    /// `encrypt`: libsignal-node's type (3 = pkmsg, 1 = msg).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<u32>,
    /// `encrypt`: the ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hex: Option<String>,
}

struct Party {
    identity: LocalIdentity,
    address: SignalAddress,
    sessions: HashMap<String, SessionRecord>,
    pre_keys: HashMap<u32, PreKeyRecord>,
    signed: Option<SignedPreKeyRecord>,
}

/// Alice, Bob and Carol of the vectors (Bob holds one-time prekey 1 and signed prekey 1), with
/// every generated key drawn from one [`RatchetRng`] in event order.
pub struct Conversation {
    parties: BTreeMap<String, Party>,
    bodies: HashMap<String, (Vec<u8>, String)>,
    rng: RatchetRng,
    events: Vec<Event>,
}

impl Default for Conversation {
    fn default() -> Self {
        Self::new()
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd hex length {}", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16).map_err(|e| e.to_string()))
        .collect()
}

impl Conversation {
    /// The three parties with fresh state and `ratchet-0` next.
    pub fn new() -> Self {
        let party = |seed: &str, reg: u32, name: &str, device: u32| Party {
            identity: LocalIdentity::new(seeded_key_pair(seed), reg),
            address: SignalAddress::new(name, device),
            sessions: HashMap::new(),
            pre_keys: HashMap::new(),
            signed: None,
        };
        let mut bob = party("bob-identity", 2222, "15550002222", 0);
        bob.pre_keys.insert(1, PreKeyRecord::new(1, seeded_key_pair("bob-prekey-1")));
        let spk = seeded_key_pair("bob-signed-prekey-1");
        // libsignal-node's deterministic signature, so the bundle equals the vectors' one.
        let sig = xeddsa::sign_deterministic(
            bob.identity.key_pair().private(),
            &PublicKey::from_raw(*spk.public()).to_wire(),
        );
        bob.signed = Some(SignedPreKeyRecord::new(1, spk, sig));
        let mut parties = BTreeMap::new();
        parties.insert("alice".to_owned(), party("alice-identity", 1111, "15550001111", 7));
        parties.insert("bob".to_owned(), bob);
        parties.insert("carol".to_owned(), party("carol-identity", 3333, "15550003333", 2));
        Self { parties, bodies: HashMap::new(), rng: RatchetRng::default(), events: Vec::new() }
    }

    /// The recorded events (with our ciphertexts).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// How many ratchet keys were drawn so far.
    pub fn keys_generated(&self) -> usize {
        self.rng.next_index()
    }

    /// `actor` starts a session with Bob from his bundle.
    pub fn init(&mut self, actor: &str, one_time_prekey: bool) -> Result<(), String> {
        let ev = Event {
            op: "init".into(),
            actor: actor.into(),
            peer: "bob".into(),
            one_time_prekey: Some(one_time_prekey),
            ..Event::default()
        };
        self.step(&ev)
    }

    /// `actor` encrypts a message `id` to `peer`.
    pub fn send(&mut self, actor: &str, peer: &str, id: &str) -> Result<(), String> {
        let ev = Event {
            op: "encrypt".into(),
            actor: actor.into(),
            peer: peer.into(),
            id: Some(id.into()),
            plaintext: Some(format!("{id}: message from {actor} to {peer}")),
            ..Event::default()
        };
        self.step(&ev)
    }

    /// `actor` decrypts message `id` from `peer`.
    pub fn receive(&mut self, actor: &str, peer: &str, id: &str) -> Result<(), String> {
        let ev = Event {
            op: "decrypt".into(),
            actor: actor.into(),
            peer: peer.into(),
            id: Some(id.into()),
            ..Event::default()
        };
        self.step(&ev)
    }

    fn party(&mut self, name: &str) -> Result<&mut Party, String> {
        self.parties.get_mut(name).ok_or_else(|| format!("unknown party {name}"))
    }

    /// Runs one event with our code. For an `encrypt` that carries `body_hex` (a vector), our
    /// ciphertext must equal it, and later decrypts of that id use the vector's bytes.
    pub fn step(&mut self, ev: &Event) -> Result<(), String> {
        let peer_addr = self.party(&ev.peer)?.address.clone();
        let id = ev.id.clone().unwrap_or_default();
        match ev.op.as_str() {
            "init" => {
                let bob = self.party("bob")?;
                let signed = bob.signed.clone().ok_or("bob has no signed prekey")?;
                let one_time =
                    if ev.one_time_prekey == Some(true) { bob.pre_keys.get(&1).cloned() } else { None };
                let bundle = PreKeyBundle::from_local(&bob.identity, &signed, one_time.as_ref());
                let mut rng = std::mem::take(&mut self.rng);
                let actor = self.party(&ev.actor)?;
                let result = process_bundle(
                    &actor.identity,
                    &peer_addr,
                    actor.sessions.get(&ev.peer),
                    &bundle,
                    &mut rng,
                );
                self.rng = rng;
                let (record, _) = result.map_err(|e| format!("init {}: {e}", ev.actor))?;
                self.party(&ev.actor)?.sessions.insert(ev.peer.clone(), record);
                self.events.push(ev.clone());
            }
            "encrypt" => {
                let plaintext = ev.plaintext.clone().ok_or("encrypt without plaintext")?;
                let actor = self.party(&ev.actor)?;
                let record =
                    actor.sessions.get(&ev.peer).ok_or_else(|| format!("{} has no session", ev.actor))?;
                let e = encrypt(&peer_addr, record, plaintext.as_bytes())
                    .map_err(|e| format!("encrypt {id}: {e}"))?;
                let record = apply(e.deltas)?.ok_or("no session delta")?;
                actor.sessions.insert(ev.peer.clone(), record);
                let kind = if e.kind == MessageKind::PreKey { 3 } else { 1 };
                let mut body = e.ciphertext;
                if let Some(expected) = &ev.body_hex {
                    if ev.kind != Some(kind) || *expected != hex_encode(&body) {
                        return Err(format!("encrypt {id}: ours differs from the vector"));
                    }
                    body = hex_decode(expected)?;
                }
                let mut out = ev.clone();
                out.kind = Some(kind);
                out.body_hex = Some(hex_encode(&body));
                self.bodies.insert(id, (body, plaintext));
                self.events.push(out);
            }
            "decrypt" => {
                let (body, plaintext) =
                    self.bodies.get(&id).cloned().ok_or_else(|| format!("unknown id {id}"))?;
                let mut rng = std::mem::take(&mut self.rng);
                let result = self.decrypt(&ev.actor, &ev.peer, &peer_addr, &body, &mut rng);
                self.rng = rng;
                let got = result.map_err(|e| format!("decrypt {id} by {}: {e}", ev.actor))?;
                if got != plaintext.as_bytes() {
                    return Err(format!("decrypt {id}: wrong plaintext"));
                }
                self.events.push(ev.clone());
            }
            other => return Err(format!("unknown op {other}")),
        }
        Ok(())
    }

    fn decrypt(
        &mut self,
        actor: &str,
        peer: &str,
        peer_addr: &SignalAddress,
        body: &[u8],
        rng: &mut RatchetRng,
    ) -> Result<Vec<u8>, String> {
        let me = self.party(actor)?;
        let d = if is_prekey(body) {
            let pk = PreKeySignalMessage::decode(body).map_err(|e| e.to_string())?;
            let one_time = pk.pre_key_id().and_then(|id| me.pre_keys.get(&id));
            decrypt_prekey_message(
                &me.identity,
                peer_addr,
                me.sessions.get(peer),
                &pk,
                me.signed.as_ref(),
                one_time,
                rng,
            )
            .map_err(|e| e.to_string())?
        } else {
            let record = me.sessions.get(peer).ok_or("no session")?;
            decrypt_message(peer_addr, record, body, rng).map_err(|e| e.to_string())?
        };
        for delta in &d.deltas {
            if let SignalDelta::PreKeyConsumed { id } = delta {
                me.pre_keys.remove(id);
            }
        }
        let record = apply(d.deltas)?.ok_or("no session delta")?;
        me.sessions.insert(peer.to_owned(), record);
        Ok(d.plaintext)
    }
}

/// A pkmsg's protobuf starts with field 1 (varint) or 2 (bytes); a SignalMessage's with field 1
/// (bytes, `0x0a`). The caller normally knows from `<enc type>`; the vectors carry it per message
/// but the decrypting side must not peek at the sender's event.
fn is_prekey(body: &[u8]) -> bool {
    matches!(body.get(1), Some(0x08 | 0x12))
}

/// Stores the record the way a host would: through its encoded bytes.
fn apply(deltas: Vec<SignalDelta>) -> Result<Option<SessionRecord>, String> {
    let mut out = None;
    for d in deltas {
        if let SignalDelta::SessionPut { record, .. } = d {
            out = Some(SessionRecord::decode(&record).map_err(|e| e.to_string())?);
        }
    }
    Ok(out)
}
