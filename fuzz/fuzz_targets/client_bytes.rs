//! An online `wa::client::Client` (paired and logged in to the in-memory simulator) fed
//! arbitrary server frames. Byte 0 picks the path: even = raw WebSocket messages (framing and
//! decrypt), odd = plaintexts the simulator encrypts properly (node decoder and every stanza
//! handler). The rest is a sequence of `[len][len bytes]` chunks. The client must end with a
//! typed reason or stay online, never panic.
#![no_main]

use std::sync::Mutex;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use staylinked::sim::testing::OnlinePair;

/// One paired simulator + client, reused across inputs (pairing is the slow part); each
/// input starts on a fresh login.
static PAIR: Mutex<Option<OnlinePair>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut guard = PAIR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !guard.as_mut().is_some_and(|p| p.relogin(u64::from(mode))) {
        *guard = OnlinePair::new(1, Instant::now());
    }
    let Some(p) = guard.as_mut() else { panic!("the in-memory harness could not bring the client online") };
    assert!(p.client().is_logged_in(), "every input starts online");
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        if mode % 2 == 0 {
            p.feed_raw(chunk);
        } else {
            p.feed_plaintext(chunk);
        }
        if p.closed().is_some() {
            break;
        }
    }
    // Either still online, or ended with a reason; never a half state.
    assert!(
        p.client().is_logged_in() || p.closed().is_some(),
        "client neither online nor closed: {:?}",
        p.client()
    );
});
