//! Arbitrary bytes as the server hello payload to a client handshake with fixed keys, then (if
//! it ever decrypts) certificate verification: a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staylinked::wa::frame::INTRO;
use staylinked::wa::noise::{ClientHandshake, KeyPair, TrustAnchor};

fuzz_target!(|data: &[u8]| {
    // The keys of the Baileys golden vector's client, so corpus seeds from it decrypt.
    let client_static = KeyPair::from_private_bytes(hex32("80d0a33f1b6f824cbba16ab8f17c2da95278d43143717835b3446f114c89ba6d"));
    let client_ephemeral = KeyPair::from_private_bytes(hex32("30939c5adddec942290b637530898a70f2d32453e5241f30a0550780e7586b47"));
    let (hs, _) = ClientHandshake::start(client_static, client_ephemeral, &INTRO);
    if let Ok(received) = hs.handle(data) {
        let _ = received.cert_chain();
        if let Ok(finish) = received.verify(&TrustAnchor::whatsapp(), 1_750_000_000) {
            let _ = finish.finish(b"payload");
        }
    }
});

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    out
}
