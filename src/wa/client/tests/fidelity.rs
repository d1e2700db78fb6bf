//! Scenario tests of what today's server demands of a companion (review
//! 2026-12-fidelity-vs-real-whatsapp items 1, 12, 13): the version floor (405 at registration
//! and login), and the `<presence>` with the push name after login.

use super::*;
use crate::sim::Settings;
use crate::wa::version::WaVersion;

fn floor(p: &mut Pair, min: Option<WaVersion>) {
    p.sim.set_settings(Settings { min_version: min, ..Settings::default() });
}

fn refused_405(p: &Pair) -> u64 {
    p.sim.stats().stream_errors.get("405").copied().unwrap_or(0)
}

/// A version below the server's floor gets `<failure reason="405">` at registration (no QR)
/// and at login; the current version passes both.
#[test]
fn version_floor_405_at_registration_and_login() {
    let mut p = Pair::new(21);
    let ours = p.client.config().version;
    let newer = WaVersion([ours.0[0], ours.0[1], ours.0[2] + 1]);

    // Registration, outdated: no QR, ClientOutdated.
    floor(&mut p, Some(newer));
    p.connect();
    p.run_until("405 at registration", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::ClientOutdated));
    assert!(p.last_qr().is_none());
    assert_eq!(refused_405(&p), 1);

    // Registration, current: QR, pairing, login.
    floor(&mut p, Some(ours));
    p.log.clear();
    p.pair_and_login();
    assert!(p.client.is_logged_in());

    // Login, outdated.
    let creds = p.client.creds().clone();
    p.client.disconnect(p.now);
    p.drive();
    floor(&mut p, Some(newer));
    p.client = p.with_creds(31, creds.clone());
    p.log.clear();
    p.connect();
    p.run_until("405 at login", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::ClientOutdated));
    assert_eq!(refused_405(&p), 2);
    assert_eq!(p.sim.devices(PHONE).unwrap()[0].logins, 1, "the refused login did not count");

    // Login with the newer version configured.
    let mut client = p.with_creds(32, creds);
    client.config.version = newer;
    p.client = client;
    p.log.clear();
    p.connect();
    p.run_until("ready", |p| p.has_event(|e| matches!(e, Event::Ready { .. })));
    assert_eq!(refused_405(&p), 2);
}

/// After login the companion announces its push name with `<presence type="unavailable">`
/// (the name learned at pairing: the sim's pair-success carries `<biz name="Alice">`); a
/// configured name and `available` win, and a change while online is sent at once.
#[test]
fn presence_with_push_name_after_login() {
    let mut p = Pair::new(22);
    p.pair_and_login();
    assert_eq!(p.client.creds().push_name.as_deref(), Some("Alice"));
    let seen = |p: &Pair| p.sim.devices(PHONE).unwrap()[0].presence.clone();
    assert_eq!(seen(&p), Some(("unavailable".to_owned(), Some("Alice".to_owned()))));

    p.client.set_presence(Some("Shop B@y".into()), true);
    p.drive();
    assert_eq!(seen(&p), Some(("available".to_owned(), Some("Shop By".to_owned()))));

    // A new login (restart) with the configured name sends it again.
    let creds = p.client.creds().clone();
    p.client.disconnect(p.now);
    p.drive();
    let mut client = p.with_creds(33, creds);
    client.config.push_name = Some("Configured".into());
    client.config.presence_available = false;
    p.client = client;
    p.log.clear();
    p.connect();
    p.run_until("ready", |p| p.has_event(|e| matches!(e, Event::Ready { .. })));
    assert_eq!(seen(&p), Some(("unavailable".to_owned(), Some("Configured".to_owned()))));
}

/// A contact with a hosted (Cloud API) device: a 1:1 message reaches it (as well as the
/// contact's phone), a group message does not (the group copy goes to the phone only); the
/// hosted device never fails to decrypt.
#[test]
fn hosted_device_gets_one_to_one_not_group() {
    const BIZ: &str = "15550002222";
    let mut p = Pair::new(23);
    p.sim.add_phone(BIZ, "Biz").unwrap();
    assert_eq!(p.sim.add_hosted_device(BIZ).unwrap(), format!("{BIZ}:99@hosted"));
    p.pair_and_login();

    p.client.send_text(p.now, "3EB0HOSTED1", BIZ, "to the business").unwrap();
    p.run_until("1:1 delivered to the phone", |p| !p.sim.phone_inbox(BIZ).unwrap().is_empty());
    let hosted = p.sim.hosted_inbox(BIZ).unwrap();
    assert_eq!(hosted.len(), 1, "the hosted device got the 1:1 message");
    assert_eq!(hosted[0].text.as_deref(), Some("to the business"));

    let group = p.sim.create_group(p.now, "g", &[PHONE.to_owned(), BIZ.to_owned()]).unwrap();
    p.client.send_text(p.now, "3EB0HOSTED2", &group, "to the group").unwrap();
    p.run_until("group delivered to the phone", |p| p.sim.phone_inbox(BIZ).unwrap().len() == 2);
    assert_eq!(p.sim.hosted_inbox(BIZ).unwrap().len(), 1, "no group copy for the hosted device");
    let stats = p.sim.stats();
    assert_eq!((stats.hosted_decrypted, stats.phone_decrypt_failures, stats.hosted_group_copies), (1, 0, 0));
}
