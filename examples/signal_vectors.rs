//! Writes Signal messages produced by staylinked's `wa::signal` as JSON on stdout, for
//! scripts/interop/check-signal.js to decrypt with libsignal-node and Baileys' group cipher
//! ("libsignal decrypts ours"). Deterministic: every generated key comes from libsignal's
//! `seededKeyPair("ratchet-N")` sequence (pairwise) or a fixed seed (group).
//!
//! Usage: `cargo run --example signal_vectors > target/signal-ours.json`

use std::io::Write as _;

use serde_json::json;
use staylinked::wa::noise::testing::SeededRng;
use staylinked::wa::signal::testing::Conversation;
use staylinked::wa::signal::{SenderKeyName, SignalAddress, create_distribution_message, group_encrypt};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn conversation() -> Result<Conversation, String> {
    let mut c = Conversation::new();
    // Alice -> Bob with one-time prekey: two pkmsgs, the second delivered first.
    c.init("alice", true)?;
    c.send("alice", "bob", "a1")?;
    c.send("alice", "bob", "a2")?;
    c.receive("bob", "alice", "a2")?;
    c.receive("bob", "alice", "a1")?;
    // Bob replies (first reply: previousCounter 0), Alice reads out of order.
    for id in ["b1", "b2", "b3", "b4"] {
        c.send("bob", "alice", id)?;
    }
    c.receive("alice", "bob", "b3")?;
    c.receive("alice", "bob", "b1")?;
    // Several ratchet turns with a late message each way.
    c.send("alice", "bob", "a3")?;
    c.send("alice", "bob", "a4")?;
    c.receive("bob", "alice", "a4")?;
    c.send("bob", "alice", "b5")?;
    c.receive("alice", "bob", "b5")?;
    c.receive("alice", "bob", "b4")?;
    c.receive("bob", "alice", "a3")?;
    c.send("alice", "bob", "a5")?;
    c.receive("bob", "alice", "a5")?;
    c.receive("alice", "bob", "b2")?;
    for i in 6..=15 {
        c.send("alice", "bob", &format!("a{i}"))?;
    }
    for i in [15, 6, 14, 7, 13, 8, 12, 9, 11, 10] {
        c.receive("bob", "alice", &format!("a{i}"))?;
    }
    c.send("bob", "alice", "b6")?;
    c.receive("alice", "bob", "b6")?;
    // Carol -> Bob without a one-time prekey.
    c.init("carol", false)?;
    c.send("carol", "bob", "c1")?;
    c.send("carol", "bob", "c2")?;
    c.receive("bob", "carol", "c1")?;
    c.receive("bob", "carol", "c2")?;
    c.send("bob", "carol", "d1")?;
    c.receive("carol", "bob", "d1")?;
    Ok(c)
}

fn main() -> Result<(), String> {
    let conv = conversation()?;
    let group_id = "120363025246125486@g.us";
    let name = SenderKeyName::new(group_id, SignalAddress::new("15550001111", 7));
    let mut rng = SeededRng::new(b"staylinked signal_vectors group");
    let (skdm, mut record, _) = create_distribution_message(&name, None, &mut rng);
    let mut messages = Vec::new();
    let mut skdm_mid = None;
    for i in 0..8 {
        if i == 5 {
            skdm_mid = Some(create_distribution_message(&name, Some(&record), &mut rng).0);
        }
        let plaintext = format!("our group message {i}");
        let out = group_encrypt(&name, &record, plaintext.as_bytes(), &mut rng).map_err(|e| e.to_string())?;
        record = out.record;
        messages.push(json!({ "iteration": i, "plaintext": plaintext, "body_hex": hex(&out.bytes) }));
    }
    let skdm_mid = skdm_mid.ok_or("no mid skdm")?;
    let out = json!({
        "generator": "staylinked wa::signal (cargo run --example signal_vectors)",
        "events": conv.events(),
        "ratchet_keys_generated": conv.keys_generated(),
        "group": {
            "group_id": group_id,
            "sender": { "name": "15550001111", "device": 7 },
            "skdm_hex": hex(&skdm.encode()),
            "skdm_mid_hex": hex(&skdm_mid.encode()),
            "skdm_mid_iteration": skdm_mid.iteration(),
            "messages": messages,
            "receive_order": [3, 0, 7, 1, 6, 2, 5, 4],
        },
    });
    let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    std::io::stdout().write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    std::io::stdout().write_all(b"\n").map_err(|e| e.to_string())
}
