//! Fuzz target: `wa::binary::unmarshal` on arbitrary stanza bytes must return, never panic or
//! overflow the stack; whatever decodes must encode again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(node) = staylinked::wa::binary::unmarshal(data) {
        // A decoded tree is within the codec's limits, so the encoder must accept it.
        assert!(staylinked::wa::binary::marshal(&node).is_ok());
    }
});
