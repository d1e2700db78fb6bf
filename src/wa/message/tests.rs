//! End-to-end checks across the module: stanzas built here go through the binary codec and
//! real `wa::signal` sessions and come back out as text.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::content::{MessageContent, decode_plaintext, device_sent, encode_plaintext, text_message};
use super::enc::EncType;
use super::inbound::parse_message;
use super::outbound::{DeviceCiphertext, dm_stanza};
use super::prekeys::{parse_prekey_result, prekey_result};
use crate::wa::binary::{Node, marshal, unmarshal};
use crate::wa::jid::Jid;
use crate::wa::signal::{
    LocalIdentity, PreKeyBundle, PreKeySignalMessage, SignalAddress, SignedPreKeyRecord,
    decrypt_prekey_message, encrypt, generate_pre_keys, process_bundle,
};

fn j(s: &str) -> Jid {
    s.parse().unwrap()
}

fn addr(jid: &Jid) -> SignalAddress {
    SignalAddress::new(jid.user.clone(), u32::from(jid.device))
}

/// Bundle answer → X3DH → padded pkmsg in a 1:1 stanza → wire bytes → server-style delivery →
/// parse → decrypt → unpad → text, for the peer and (as a DSM) for our own other device.
#[test]
fn dm_fan_out_round_trip_through_signal_and_codec() {
    let mut rng = StdRng::seed_from_u64(42);
    let alice = LocalIdentity::generate(&mut rng);
    let alice_dev = j("15550000001:1@s.whatsapp.net");
    let peer = j("15550000002@s.whatsapp.net");
    let targets = [(j("15550000001:2@s.whatsapp.net"), true), (j("15550000002:1@s.whatsapp.net"), false)];

    // Each target device's keys, served as the server would.
    let mut devices = Vec::new();
    for (jid, _) in &targets {
        let id = LocalIdentity::generate(&mut rng);
        let signed = SignedPreKeyRecord::generate(&id, 1, &mut rng);
        let one_time = generate_pre_keys(5, 1, &mut rng).remove(0);
        devices.push((jid.clone(), id, signed, one_time));
    }
    let bundles: Vec<(Jid, PreKeyBundle)> = devices
        .iter()
        .map(|(jid, id, s, o)| (jid.clone(), PreKeyBundle::from_local(id, s, Some(o))))
        .collect();
    let answer = unmarshal(&marshal(&prekey_result("q1", &bundles)).unwrap()).unwrap();
    let fetched = parse_prekey_result(&answer).unwrap();
    assert_eq!(fetched.len(), 2);

    let original = text_message("hello from staylinked");
    let mut entries = Vec::new();
    for ((jid, bundle), (_, own)) in fetched.iter().zip(&targets) {
        let (record, _) = process_bundle(&alice, &addr(jid), None, bundle, &mut rng).unwrap();
        let payload = if *own { device_sent(&original, &peer) } else { original.clone() };
        let enc = encrypt(&addr(jid), &record, &encode_plaintext(&payload, &mut rng)).unwrap();
        entries.push(DeviceCiphertext {
            device: jid.clone(),
            kind: enc.kind.into(),
            ciphertext: enc.ciphertext,
        });
    }
    let stanza = dm_stanza("3EB0AA", &peer, &entries, Some(b"adv-identity"));
    let sent = unmarshal(&marshal(&stanza).unwrap()).unwrap();
    assert!(sent.child("device-identity").is_some(), "pkmsg entries need the device identity");

    // The server hands each device its own <enc>.
    let participants = sent.child("participants").unwrap();
    for ((to, (_, own)), (_, id, signed, one_time)) in
        participants.child_nodes().iter().zip(&targets).zip(&devices)
    {
        let mut delivered = Node::new("message")
            .attr("from", alice_dev.clone())
            .attr("id", "3EB0AA")
            .attr("t", "1795436576")
            .attr("type", "text");
        if *own {
            delivered.set_attr("recipient", peer.clone());
        }
        let delivered = delivered.children([to.child_nodes()[0].clone()]);
        let inbound = parse_message(&unmarshal(&marshal(&delivered).unwrap()).unwrap()).unwrap();
        assert_eq!(inbound.encs[0].kind, EncType::Pkmsg);
        let pk = PreKeySignalMessage::decode(&inbound.encs[0].ciphertext).unwrap();
        let out = decrypt_prekey_message(
            id,
            &addr(inbound.sender()),
            None,
            &pk,
            Some(signed),
            Some(one_time),
            &mut rng,
        )
        .unwrap();
        let decoded = decode_plaintext(&out.plaintext).unwrap();
        assert_eq!(decoded.content, MessageContent::Text("hello from staylinked".into()));
        assert_eq!(decoded.device_sent_to.is_some(), *own, "only own devices get the DSM");
    }
}

/// Group send: our sender key's SKDM goes pairwise inside the stanza, the body once as skmsg;
/// the receiver (after server delivery) processes the SKDM and decrypts the skmsg to text.
#[test]
fn group_send_round_trip_through_sender_keys() {
    use super::content::skdm_message;
    use super::outbound::{GroupSend, group_stanza};
    use super::relay::{delivery_for, parse_relay};
    use crate::wa::signal::{
        SenderKeyDistributionMessage, SenderKeyName, create_distribution_message, decrypt_prekey_message,
        group_decrypt, group_encrypt, process_distribution_message,
    };

    let mut rng = StdRng::seed_from_u64(7);
    let group = j("120363000000000001@g.us");
    let alice = LocalIdentity::generate(&mut rng);
    let alice_dev = j("15550000001:1@s.whatsapp.net");
    let bob_dev = j("15550000002:1@s.whatsapp.net");
    let bob = LocalIdentity::generate(&mut rng);
    let bob_signed = SignedPreKeyRecord::generate(&bob, 1, &mut rng);
    let bob_otk = generate_pre_keys(1, 1, &mut rng).remove(0);

    let name = SenderKeyName::new(group.to_string(), addr(&alice_dev));
    let (skdm, own_record, _) = create_distribution_message(&name, None, &mut rng);
    let skmsg =
        group_encrypt(&name, &own_record, &encode_plaintext(&text_message("hi group"), &mut rng), &mut rng)
            .unwrap()
            .bytes;
    let bundle = PreKeyBundle::from_local(&bob, &bob_signed, Some(&bob_otk));
    let (session, _) = process_bundle(&alice, &addr(&bob_dev), None, &bundle, &mut rng).unwrap();
    let skdm_plain = encode_plaintext(&skdm_message(&group, &skdm.encode()), &mut rng);
    let pairwise = encrypt(&addr(&bob_dev), &session, &skdm_plain).unwrap();
    let entries = [DeviceCiphertext {
        device: bob_dev.clone(),
        kind: pairwise.kind.into(),
        ciphertext: pairwise.ciphertext,
    }];
    let send = GroupSend {
        id: "3EB0GG",
        group: &group,
        addressing_mode: Some("pn"),
        skmsg: &skmsg,
        skdm: &entries,
        device_identity: Some(b"adv"),
    };
    let wire = unmarshal(&marshal(&group_stanza(&send)).unwrap()).unwrap();
    let relay = parse_relay(&wire).unwrap();
    let delivered = delivery_for(&relay, &alice_dev, &bob_dev, 1_795_436_577, false).unwrap();
    let inbound = parse_message(&unmarshal(&marshal(&delivered).unwrap()).unwrap()).unwrap();
    assert_eq!(inbound.encs.iter().map(|e| e.kind).collect::<Vec<_>>(), [EncType::Pkmsg, EncType::Skmsg]);

    // Bob: pairwise first (SKDM), then the skmsg.
    let pk = PreKeySignalMessage::decode(&inbound.encs[0].ciphertext).unwrap();
    let out = decrypt_prekey_message(
        &bob,
        &addr(inbound.sender()),
        None,
        &pk,
        Some(&bob_signed),
        Some(&bob_otk),
        &mut rng,
    )
    .unwrap();
    let carried = decode_plaintext(&out.plaintext).unwrap();
    let (gid, axolotl) = carried.skdm.unwrap();
    assert_eq!(gid, group.to_string());
    let their_name = SenderKeyName::new(inbound.from.to_string(), addr(inbound.sender()));
    let (record, _) = process_distribution_message(
        &their_name,
        None,
        &SenderKeyDistributionMessage::decode(&axolotl).unwrap(),
    );
    let body = group_decrypt(&their_name, &record, &inbound.encs[1].ciphertext).unwrap();
    assert_eq!(decode_plaintext(&body.bytes).unwrap().content, MessageContent::Text("hi group".into()));
}
