//! Fuzz target: every `wa::message` stanza parser (both the client's and the simulator's side)
//! on whatever node arbitrary bytes decode to must return a value or a typed error, never panic.
#![no_main]

use staylinked::wa::message as m;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(node) = staylinked::wa::binary::unmarshal(data) {
        let _ = m::parse_message(&node);
        let _ = m::parse_receipt(&node);
        let _ = m::parse_ack(&node);
        let _ = m::parse_ib(&node);
        let _ = m::parse_relay(&node);
        let _ = m::parse_device_result(&node);
        let _ = m::parse_device_query(&node);
        let _ = m::parse_prekey_result(&node);
        let _ = m::parse_prekey_fetch(&node);
    }
});
