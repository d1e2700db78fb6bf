//! Fuzz target: every `wa::signal` decoder of untrusted bytes — wire messages (pkmsg, msg,
//! skmsg, SKDM) and stored records — returns `Err` or a value, never panics; a `msg`/`skmsg`
//! fed to an established session either fails or decrypts (state is the caller's, untouched).
#![no_main]

use std::sync::OnceLock;

use staylinked::wa::noise::testing::SeededRng;
use staylinked::wa::signal::*;

struct Fixture {
    bob: SessionRecord,
    group: SenderKeyRecord,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = SeededRng::new(b"fuzz signal");
        let bob_id = LocalIdentity::generate(&mut rng);
        let signed = SignedPreKeyRecord::generate(&bob_id, 1, &mut rng);
        let alice = LocalIdentity::generate(&mut rng);
        let bundle = PreKeyBundle::from_local(&bob_id, &signed, None);
        let a = SignalAddress::new("a", 1);
        let (rec, _) = process_bundle(&alice, &SignalAddress::new("b", 1), None, &bundle, &mut rng).unwrap();
        let e = encrypt(&a, &rec, b"x").unwrap();
        let pk = PreKeySignalMessage::decode(&e.ciphertext).unwrap();
        let bob = decrypt_prekey_message(&bob_id, &a, None, &pk, Some(&signed), None, &mut rng).unwrap().record;
        let name = SenderKeyName::new("g", a);
        let (skdm, _, _) = create_distribution_message(&name, None, &mut rng);
        let (group, _) = process_distribution_message(&name, None, &skdm);
        Fixture { bob, group }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let _ = PreKeySignalMessage::decode(data);
    let _ = SenderKeyDistributionMessage::decode(data);
    let _ = SessionRecord::decode(data);
    let _ = SenderKeyRecord::decode(data);
    let _ = PreKeyRecord::decode(data);
    let _ = SignedPreKeyRecord::decode(data);
    let mut rng = SeededRng::new(data);
    let _ = decrypt_message(&SignalAddress::new("a", 1), &f.bob, data, &mut rng);
    let _ = group_decrypt(&SenderKeyName::new("g", SignalAddress::new("a", 1)), &f.group, data);
});
