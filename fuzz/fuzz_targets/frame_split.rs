//! Arbitrary bytes, split at an arbitrary point, into the client and server frame decoders:
//! frames, "need more" or a typed error, never a panic or unbounded buffering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staylinked::wa::frame::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let cut = usize::from(cut).min(rest.len());
    for mut d in [FrameDecoder::client(1 << 16), FrameDecoder::server(1 << 16)] {
        d.push(&rest[..cut]);
        let mut failed = false;
        while let Ok(Some(_)) = d.next_frame() {}
        d.push(&rest[cut..]);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => assert!(f.len() <= 1 << 16),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            assert!(d.buffered() <= rest.len());
        }
    }
});
