//! Fuzz target: `Jid::from_str` on arbitrary text must not panic, and every parsed JID must
//! survive Display → parse unchanged.
#![no_main]

use staylinked::wa::jid::Jid;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(jid) = text.parse::<Jid>() {
        assert_eq!(jid.to_string().parse::<Jid>(), Ok(jid));
    }
});
