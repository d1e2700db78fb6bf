//! End-to-end messaging over real sockets: a hosted tenant (the full gateway stack with a memory
//! store) and the simulator's phones, which are Signal peers of their own. Text goes both ways
//! 1:1 and through a group; what the tenant receives is durable in its store inbox, what it sends
//! is decrypted by the phone.

use staylinked::host::Host;
use staylinked::host::state::TenantCommand;
use staylinked::store::Store;
use staylinked::types::TenantId;
use tokio::sync::oneshot;

use crate::host_util::*;

/// The texts of the tenant's durable inbox (message.received items), in arrival order.
async fn inbox_texts(store: &std::sync::Arc<dyn Store>, t: &TenantId) -> Vec<(String, String, String)> {
    let items = store.list_inbox(t).await.unwrap();
    items
        .iter()
        .filter_map(|i| {
            let v: serde_json::Value = serde_json::from_slice(i.payload.expose()).ok()?;
            if v["event"] != "message.received" {
                return None;
            }
            let m = &v["data"]["message"];
            Some((
                m["id"].as_str()?.to_owned(),
                m["chat"].as_str()?.to_owned(),
                m["text"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

async fn send(host: &Host, t: &TenantId, id: &str, to: &str, text: &str) {
    let h = host.registry().get(t).unwrap();
    let (reply, rx) = oneshot::channel();
    h.commands
        .send(TenantCommand::SendText { id: id.into(), to: to.into(), text: text.into(), reply })
        .await
        .unwrap();
    rx.await.unwrap().unwrap();
}

/// A linked tenant and a second phone exchange 1:1 texts both ways (first contact is a pkmsg,
/// later ones ratchet), the tenant's own phone gets the device-sent copy, and a group message
/// goes both ways; every received text is in the tenant's durable inbox exactly once and no
/// phone failed to decrypt anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_phones_exchange_texts_one_to_one_and_in_groups() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "msg-a").await;
    let linked = link_n(&host, &sim, "m", 1).await;
    let (t, own_phone) = linked[0].clone();
    let peer = phone(4242);
    let p = peer.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "peer")).await.unwrap().unwrap();
    wait_state(&host, &t, staylinked::host::state::TenantState::Connected).await;

    // Tenant → peer phone, twice.
    send(&host, &t, "3EB0AAAA000000000001", &peer, "hello from the gateway").await;
    send(&host, &t, "3EB0AAAA000000000002", &format!("{peer}@s.whatsapp.net"), "second").await;
    let got = poll("peer phone inbox", || async {
        let v = phone_inbox(&sim, &peer).await;
        (v.len() >= 2).then_some(v)
    })
    .await;
    assert_eq!(
        got,
        vec![
            ("3EB0AAAA000000000001".to_owned(), "hello from the gateway".to_owned()),
            ("3EB0AAAA000000000002".to_owned(), "second".to_owned())
        ]
    );
    // The tenant's own phone decrypted the device-sent copies.
    let own = poll("own phone copies", || async {
        let v = phone_inbox(&sim, &own_phone).await;
        (v.len() >= 2).then_some(v)
    })
    .await;
    assert_eq!(own.len(), 2, "{own:?}");

    // Peer phone → tenant, three times.
    for i in 0..3 {
        let (p, txt) = (peer.clone(), format!("reply {i}"));
        let own = own_phone.clone();
        sim.with_sim(move |s, now| s.phone_send(now, &p, &own, &txt)).await.unwrap().unwrap();
    }
    let inbox = poll("tenant inbox", || async {
        let v = inbox_texts(&store, &t).await;
        (v.len() >= 3).then_some(v)
    })
    .await;
    let texts: Vec<&str> = inbox.iter().map(|(_, _, x)| x.as_str()).collect();
    assert_eq!(texts, ["reply 0", "reply 1", "reply 2"]);
    assert!(inbox.iter().all(|(_, chat, _)| chat == &format!("{peer}@s.whatsapp.net")), "{inbox:?}");

    // A group with both accounts: the peer phone sends, the tenant receives; the tenant sends,
    // the peer phone receives.
    let (o, p) = (own_phone.clone(), peer.clone());
    let group = sim.with_sim(move |s, now| s.create_group(now, "team", &[o, p])).await.unwrap().unwrap();
    let (p, g) = (peer.clone(), group.clone());
    sim.with_sim(move |s, now| s.phone_send(now, &p, &g, "group hello")).await.unwrap().unwrap();
    let inbox = poll("group message at the tenant", || async {
        let v = inbox_texts(&store, &t).await;
        (v.len() >= 4).then_some(v)
    })
    .await;
    assert_eq!(inbox[3].1, group);
    assert_eq!(inbox[3].2, "group hello");
    send(&host, &t, "3EB0AAAA000000000003", &group, "group reply").await;
    poll("group reply at the peer phone", || async {
        phone_inbox(&sim, &peer)
            .await
            .iter()
            .any(|(id, x)| id == "3EB0AAAA000000000003" && x == "group reply")
            .then_some(())
    })
    .await;

    let s = stats(&sim).await;
    assert_eq!(s.phone_decrypt_failures, 0, "{s:?}");
    assert_eq!(s.retry_receipts, 0, "{s:?}");
    // Exactly once: no id twice in the tenant inbox.
    let inbox = inbox_texts(&store, &t).await;
    let mut ids: Vec<&str> = inbox.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), inbox.len(), "{inbox:?}");
    host.shutdown().await;
}

/// Messages sent to a tenant while its gateway is down wait in the server's offline queue and
/// reach the store inbox after a restart from the stored session (no QR), each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_arrive_after_restart() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "msg-b").await;
    let linked = link_n(&host, &sim, "o", 1).await;
    let (t, own_phone) = linked[0].clone();
    let peer = phone(4343);
    let p = peer.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "peer")).await.unwrap().unwrap();
    wait_state(&host, &t, staylinked::host::state::TenantState::Connected).await;
    send(&host, &t, "3EB0BBBB000000000001", &peer, "before").await;
    host.shutdown().await;

    for i in 0..3 {
        let (p, own, txt) = (peer.clone(), own_phone.clone(), format!("while away {i}"));
        sim.with_sim(move |s, now| s.phone_send(now, &p, &own, &txt)).await.unwrap().unwrap();
    }
    let host = start(&sim, &store, "msg-b2").await;
    let inbox = poll("offline messages", || async {
        let v = inbox_texts(&store, &t).await;
        (v.len() >= 3).then_some(v)
    })
    .await;
    let texts: Vec<&str> = inbox.iter().map(|(_, _, x)| x.as_str()).collect();
    assert_eq!(texts, ["while away 0", "while away 1", "while away 2"]);
    send(&host, &t, "3EB0BBBB000000000002", &peer, "after").await;
    poll("reply after restart", || async {
        phone_inbox(&sim, &peer).await.iter().any(|(_, x)| x == "after").then_some(())
    })
    .await;
    let s = stats(&sim).await;
    assert_eq!((s.phone_decrypt_failures, s.pairings), (0, 1), "{s:?}");
    host.shutdown().await;
}

/// A companion linked to a contact's account after the tenant cached that contact's device list
/// still gets the tenant's next message: the server's `devices` notification makes the tenant
/// drop the cached list (without it the new device would be skipped for the cache's 5 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_linked_contact_device_gets_the_next_message() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "msg-c").await;
    let linked = link_n(&host, &sim, "n", 1).await;
    let (t, _own_phone) = linked[0].clone();
    let peer = phone(4545);
    let p = peer.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "peer")).await.unwrap().unwrap();
    wait_state(&host, &t, staylinked::host::state::TenantState::Connected).await;
    send(&host, &t, "3EB0CCCC000000000001", &peer, "before the new device").await;
    poll("first message at the peer phone", || async {
        (!phone_inbox(&sim, &peer).await.is_empty()).then_some(())
    })
    .await;

    // The peer links a companion (a second tenant of this host) after the first send.
    let t2 = tid("n-peer");
    host.registry().create(t2.clone(), None).await.unwrap();
    staylinked::demo::link_by_qr(&sim, host.registry(), &t2, &peer, WAIT).await.unwrap();
    send(&host, &t, "3EB0CCCC000000000002", &peer, "after the new device").await;
    let got = poll("the message at the new companion", || async {
        let v = inbox_texts(&store, &t2).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(got[0].2, "after the new device");
    host.shutdown().await;
}
