//! The usync device-list query (protocol/11-messages.md §3.1): builds the `<iq xmlns="usync">`
//! for a list of users and parses the answer into device JIDs per user. Stateless; caching
//! and the "always add device 0" policy belong to the caller.

use super::error::StanzaError;
use super::parse::{attr_text, expect_result_iq, opt_u64, req_child, req_jid, user_error};
use crate::wa::binary::Node;
use crate::wa::jid::{Jid, Server};

/// The query for the device lists of `users` (bare user JIDs; device parts are dropped).
/// `iq_id` is the iq id, `sid` a separate request tag (Baileys uses its next message tag).
pub fn device_query(iq_id: &str, sid: &str, users: &[Jid]) -> Node {
    let list = users.iter().map(|u| Node::new("user").attr("jid", u.to_non_ad()).children([]));
    Node::new("iq")
        .attr("to", Jid::server_jid(Server::User))
        .attr("type", "get")
        .attr("xmlns", "usync")
        .attr("id", iq_id)
        .children([Node::new("usync")
            .attr("context", "message")
            .attr("mode", "query")
            .attr("sid", sid)
            .attr("last", "true")
            .attr("index", "0")
            .children([
                Node::new("query").children([Node::new("devices").attr("version", "2")]),
                Node::new("list").children(list),
            ])])
}

/// One user's devices from a usync answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDevices {
    /// The user (no device part).
    pub user: Jid,
    /// The user's devices, device 0 first when listed (as full device JIDs).
    pub devices: Vec<Jid>,
}

/// Parses a usync result. Devices other than 0 without `key-index` are dropped (the server
/// always signs real companions); `is_hosted` devices move to the hosted server. A user with an
/// `<error>` inside `<devices>` fails the whole answer with [`StanzaError::UserError`].
pub fn parse_device_result(iq: &Node) -> Result<Vec<UserDevices>, StanzaError> {
    expect_result_iq(iq)?;
    let usync = req_child(iq, "iq", "usync")?;
    let list = req_child(usync, "usync", "list")?;
    let mut out = Vec::new();
    for user in list.children_with_tag("user") {
        let jid = req_jid(user, "user", "jid")?.to_non_ad();
        if let Some(err) = user_error(user, &jid) {
            return Err(err);
        }
        let devices = req_child(user, "user", "devices")?;
        if let Some(err) = user_error(devices, &jid) {
            return Err(err);
        }
        let dl = req_child(devices, "devices", "device-list")?;
        let mut found = Vec::new();
        for d in dl.children_with_tag("device") {
            let id =
                opt_u64(d, "device", "id")?.ok_or(StanzaError::MissingAttr { tag: "device", attr: "id" })?;
            let id = u16::try_from(id).map_err(|_| StanzaError::InvalidAttr {
                tag: "device",
                attr: "id",
                value: id.to_string(),
            })?;
            if id != 0 && d.attr_value("key-index").is_none() {
                continue;
            }
            let hosted = attr_text(d, "is_hosted").as_deref() == Some("true");
            let server = match (hosted, &jid.server) {
                (true, Server::Lid) => Server::HostedLid,
                (true, _) => Server::Hosted,
                (false, s) => s.clone(),
            };
            found.push(Jid::new(jid.user.clone(), server).with_device(id));
        }
        out.push(UserDevices { user: jid, devices: found });
    }
    Ok(out)
}

/// Server side: the users asked for in a usync device query (bare JIDs, in order), with the
/// `sid` to echo.
pub fn parse_device_query(iq: &Node) -> Result<(String, Vec<Jid>), StanzaError> {
    super::parse::expect_tag(iq, "iq")?;
    let usync = req_child(iq, "iq", "usync")?;
    let sid = attr_text(usync, "sid").unwrap_or_default();
    let list = req_child(usync, "usync", "list")?;
    let users = list
        .children_with_tag("user")
        .map(|u| req_jid(u, "user", "jid").map(|j| j.to_non_ad()))
        .collect::<Result<_, _>>()?;
    Ok((sid, users))
}

/// Server side: the usync answer for `users` (simulator). Device 0 is listed bare; other
/// devices get `key-index` = their device number so Baileys keeps them; a device on the hosted
/// servers (Cloud API) is marked `is_hosted="true"`.
pub fn device_result(iq_id: &str, sid: &str, users: &[UserDevices]) -> Node {
    let list = users.iter().map(|u| {
        let devices = u.devices.iter().map(|d| {
            let n = Node::new("device").attr("id", d.device.to_string());
            let n = if d.device == 0 { n } else { n.attr("key-index", d.device.to_string()) };
            if matches!(d.server, Server::Hosted | Server::HostedLid) {
                n.attr("is_hosted", "true")
            } else {
                n
            }
        });
        Node::new("user")
            .attr("jid", u.user.to_non_ad())
            .children([Node::new("devices").children([Node::new("device-list").children(devices)])])
    });
    Node::new("iq").attr("from", Server::User.as_str()).attr("type", "result").attr("id", iq_id).children([
        Node::new("usync")
            .attr("context", "message")
            .attr("mode", "query")
            .attr("sid", sid)
            .attr("last", "true")
            .attr("index", "0")
            .children([Node::new("list").children(list)]),
    ])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wa::message::fixtures::{arb_node, assert_shape, node};

    const QUERY: &str = r#"{"tag": "iq", "attrs": {"to": "@s.whatsapp.net", "type": "get", "xmlns": "usync", "id": "62679.46528-5"}, "content": [{"tag": "usync", "attrs": {"context": "message", "mode": "query", "sid": "62679.46528-4", "last": "true", "index": "0"}, "content": [{"tag": "query", "attrs": {}, "content": [{"tag": "devices", "attrs": {"version": "2"}}]}, {"tag": "list", "attrs": {}, "content": [{"tag": "user", "attrs": {"jid": "15550000001@s.whatsapp.net"}, "content": []}, {"tag": "user", "attrs": {"jid": "15550000002@s.whatsapp.net"}, "content": []}]}]}]}"#;
    const RESULT: &str = r#"{"tag": "iq", "attrs": {"from": "s.whatsapp.net", "type": "result", "id": "62679.46528-5"}, "content": [{"tag": "usync", "attrs": {"context": "message", "mode": "query", "sid": "62679.46528-4", "last": "true", "index": "0"}, "content": [{"tag": "result", "attrs": {}, "content": [{"tag": "devices", "attrs": {}}]}, {"tag": "list", "attrs": {}, "content": [{"tag": "user", "attrs": {"jid": "15550000001@s.whatsapp.net"}, "content": [{"tag": "devices", "attrs": {}, "content": [{"tag": "device-list", "attrs": {}, "content": [{"tag": "device", "attrs": {"id": "0"}}, {"tag": "device", "attrs": {"id": "1", "key-index": "1"}}, {"tag": "device", "attrs": {"id": "2", "key-index": "2"}}]}, {"tag": "key-index-list", "attrs": {"ts": "1795436575"}, "content": {"hex_prefix": "0a0e0801109fe090d806180222020102", "len": 82}}]}]}, {"tag": "user", "attrs": {"jid": "15550000002@s.whatsapp.net"}, "content": [{"tag": "devices", "attrs": {}, "content": [{"tag": "device-list", "attrs": {}, "content": [{"tag": "device", "attrs": {"id": "0"}}, {"tag": "device", "attrs": {"id": "1", "key-index": "1"}}]}, {"tag": "key-index-list", "attrs": {"ts": "1795436575"}, "content": {"hex_prefix": "0a0d0802109fe090d806180122010112", "len": 81}}]}]}]}]}]}"#;

    fn j(s: &str) -> Jid {
        s.parse().unwrap()
    }

    /// The query has exactly the shape Baileys sent (own user first, then the peer).
    #[test]
    fn query_matches_transcript() {
        let q = device_query(
            "62679.46528-5",
            "62679.46528-4",
            &[j("15550000001:1@s.whatsapp.net"), j("15550000002@s.whatsapp.net")],
        );
        assert_shape(QUERY, &q);
    }

    /// The transcript's answer parses into the devices of both users.
    #[test]
    fn parses_transcript_result() {
        let r = parse_device_result(&node(RESULT)).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].user, j("15550000001@s.whatsapp.net"));
        assert_eq!(
            r[0].devices,
            vec![
                j("15550000001@s.whatsapp.net"),
                j("15550000001:1@s.whatsapp.net"),
                j("15550000001:2@s.whatsapp.net")
            ]
        );
        assert_eq!(r[1].devices, vec![j("15550000002@s.whatsapp.net"), j("15550000002:1@s.whatsapp.net")]);
    }

    /// Server side: the query parses back to its users and the answer builder round-trips.
    #[test]
    fn server_side_round_trip() {
        let (sid, users) = parse_device_query(&node(QUERY)).unwrap();
        assert_eq!(sid, "62679.46528-4");
        assert_eq!(users, vec![j("15550000001@s.whatsapp.net"), j("15550000002@s.whatsapp.net")]);
        let parsed = parse_device_result(&node(RESULT)).unwrap();
        assert_eq!(parse_device_result(&device_result("1", &sid, &parsed)).unwrap(), parsed);
        assert!(parse_device_query(&Node::new("iq")).is_err());
    }

    /// Companions without key-index are dropped; hosted devices move to the hosted server.
    #[test]
    fn key_index_and_hosted() {
        let iq = node(
            r#"{"tag":"iq","attrs":{"type":"result"},"content":[{"tag":"usync","attrs":{},"content":[{"tag":"list","attrs":{},"content":[{"tag":"user","attrs":{"jid":"1@s.whatsapp.net"},"content":[{"tag":"devices","attrs":{},"content":[{"tag":"device-list","attrs":{},"content":[{"tag":"device","attrs":{"id":"3"}},{"tag":"device","attrs":{"id":"99","key-index":"4","is_hosted":"true"}}]}]}]}]}]}]}"#,
        );
        let r = parse_device_result(&iq).unwrap();
        assert_eq!(r[0].devices, vec![j("1:99@hosted")]);
    }

    /// Error answers and malformed results give typed errors.
    #[test]
    fn errors_are_typed() {
        let err = node(
            r#"{"tag":"iq","attrs":{"type":"error"},"content":[{"tag":"error","attrs":{"code":"400"}}]}"#,
        );
        assert_eq!(
            parse_device_result(&err),
            Err(StanzaError::IqFailed { kind: "error".into(), code: Some("400".into()) })
        );
        let user_err = node(
            r#"{"tag":"iq","attrs":{"type":"result"},"content":[{"tag":"usync","attrs":{},"content":[{"tag":"list","attrs":{},"content":[{"tag":"user","attrs":{"jid":"1@s.whatsapp.net"},"content":[{"tag":"devices","attrs":{},"content":[{"tag":"error","attrs":{"code":"404","text":"x"}}]}]}]}]}]}"#,
        );
        assert!(matches!(parse_device_result(&user_err), Err(StanzaError::UserError { .. })));
        let no_list =
            node(r#"{"tag":"iq","attrs":{"type":"result"},"content":[{"tag":"usync","attrs":{}}]}"#);
        assert_eq!(
            parse_device_result(&no_list),
            Err(StanzaError::MissingChild { parent: "usync", child: "list" })
        );
    }

    proptest! {
        /// An arbitrary node never panics the usync parser.
        #[test]
        fn arbitrary_node_never_panics(n in arb_node()) {
            let _ = parse_device_result(&n);
            let _ = parse_device_query(&n);
        }
    }
}
