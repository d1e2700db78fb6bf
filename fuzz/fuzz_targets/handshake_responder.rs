//! The simulator's responder fed arbitrary bytes: byte 0 says where the rest splits into a
//! client hello and a client finish payload. Also feeds the finish part after a valid client
//! hello so the second step is reached. A typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staylinked::wa::frame::INTRO;
use staylinked::wa::noise::{ClientHandshake, KeyPair, ServerHandshake};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let (hello, finish) = rest.split_at(usize::from(cut).min(rest.len()));
    let server = || {
        ServerHandshake::start(
            KeyPair::from_private_bytes([3; 32]),
            KeyPair::from_private_bytes([4; 32]),
            vec![0x0a, 0x00, 0x12, 0x00],
            &INTRO,
        )
    };
    if let Ok((state, _server_hello)) = server().handle(hello) {
        let _ = state.handle(finish);
    }
    let (_, valid_hello) =
        ClientHandshake::start(KeyPair::from_private_bytes([1; 32]), KeyPair::from_private_bytes([2; 32]), &INTRO);
    if let Ok((state, _)) = server().handle(&valid_hello) {
        let _ = state.handle(finish);
    }
});
