//! Outbound `<message>` stanzas (protocol/11-messages.md §2, §7.3): 1:1 fan-out (own devices
//! and the peer's), group sends (`skmsg` + SKDM participants), retry resends and peer
//! messages, with attributes and child order as Baileys 6.7.21 sends them. Takes ciphertexts
//! already produced by `wa::signal`; chooses no devices and encrypts nothing.
//! The `type` attribute is `text`; a media sender overrides it with `Node::set_attr`.

use super::enc::{EncType, enc_node};
use crate::wa::binary::Node;
use crate::wa::jid::Jid;

/// One device's ciphertext for a `<participants><to jid>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCiphertext {
    /// The target device.
    pub device: Jid,
    /// `pkmsg` or `msg` (pairwise).
    pub kind: EncType,
    /// The Signal ciphertext (the `<enc>` content).
    pub ciphertext: Vec<u8>,
}

/// The message `type` attribute for text stanzas.
pub const TYPE_TEXT: &str = "text";

fn participants(devices: &[DeviceCiphertext]) -> Node {
    Node::new("participants").children(
        devices.iter().map(|d| {
            Node::new("to").attr("jid", d.device.clone()).children([enc_node(d.kind, &d.ciphertext)])
        }),
    )
}

/// `<device-identity>` when any pairwise ciphertext is a pkmsg and the identity is given.
fn device_identity_node(devices: &[DeviceCiphertext], device_identity: Option<&[u8]>) -> Option<Node> {
    let needs = devices.iter().any(|d| d.kind == EncType::Pkmsg);
    device_identity.filter(|_| needs).map(|b| Node::new("device-identity").bytes(b))
}

/// A 1:1 message to `to` (the peer user, no device): one `<to>` per device in the given order
/// (Baileys: own devices first with the DSM ciphertext, then the peer's), plus
/// `<device-identity>` (our `ADVSignedDeviceIdentity` bytes) if any entry is a pkmsg.
pub fn dm_stanza(id: &str, to: &Jid, devices: &[DeviceCiphertext], device_identity: Option<&[u8]>) -> Node {
    let mut kids = vec![participants(devices)];
    kids.extend(device_identity_node(devices, device_identity));
    Node::new("message").attr("id", id).attr("type", TYPE_TEXT).attr("to", to.clone()).children(kids)
}

/// A group send.
#[derive(Debug, Clone, Copy)]
pub struct GroupSend<'a> {
    /// The message id.
    pub id: &'a str,
    /// The group JID.
    pub group: &'a Jid,
    /// `addressing_mode` from the group metadata (`pn` or `lid`); `None` omits it.
    pub addressing_mode: Option<&'a str>,
    /// The SenderKeyMessage body.
    pub skmsg: &'a [u8],
    /// Pairwise SKDM ciphertexts for devices that lack our sender key (may be empty).
    pub skdm: &'a [DeviceCiphertext],
    /// Our `ADVSignedDeviceIdentity`, sent when any SKDM entry is a pkmsg.
    pub device_identity: Option<&'a [u8]>,
}

/// `<message id type to addressing_mode>`: `skmsg` first, `<participants>` only when some
/// device needs the SKDM, then `<device-identity>` if any SKDM entry is a pkmsg.
pub fn group_stanza(send: &GroupSend<'_>) -> Node {
    let mut m = Node::new("message").attr("id", send.id).attr("type", TYPE_TEXT);
    if let Some(mode) = send.addressing_mode {
        m.set_attr("addressing_mode", mode);
    }
    m.set_attr("to", send.group.clone());
    let mut kids = vec![enc_node(EncType::Skmsg, send.skmsg)];
    if !send.skdm.is_empty() {
        kids.push(participants(send.skdm));
    }
    kids.extend(device_identity_node(send.skdm, send.device_identity));
    m.children(kids)
}

/// A 1:1 retry resend to the one device that asked (`device_fanout="false"`).
pub fn dm_retry_stanza(id: &str, device: &DeviceCiphertext, device_identity: Option<&[u8]>) -> Node {
    let devices = std::slice::from_ref(device);
    let mut kids = vec![participants(devices)];
    kids.extend(device_identity_node(devices, device_identity));
    Node::new("message")
        .attr("id", id)
        .attr("type", TYPE_TEXT)
        .attr("device_fanout", "false")
        .attr("to", device.device.clone())
        .children(kids)
}

/// A group retry resend to one device: `to` = group, `participant` = the device, a fresh
/// `skmsg` and an SKDM `<to>` for that device.
pub fn group_retry_stanza(
    id: &str,
    group: &Jid,
    skmsg: &[u8],
    skdm: &DeviceCiphertext,
    device_identity: Option<&[u8]>,
) -> Node {
    let devices = std::slice::from_ref(skdm);
    let mut kids = vec![enc_node(EncType::Skmsg, skmsg), participants(devices)];
    kids.extend(device_identity_node(devices, device_identity));
    Node::new("message")
        .attr("id", id)
        .attr("type", TYPE_TEXT)
        .attr("to", group.clone())
        .attr("participant", skdm.device.clone())
        .children(kids)
}

/// A peer (own-device protocol) message to our primary phone (`to` = own bare user):
/// `category="peer"`, one `<enc>`, no `<participants>`.
pub fn peer_stanza(
    id: &str,
    own_user: &Jid,
    kind: EncType,
    ciphertext: &[u8],
    push_priority: &str,
    device_identity: Option<&[u8]>,
) -> Node {
    let mut kids = vec![enc_node(kind, ciphertext)];
    if kind == EncType::Pkmsg {
        kids.extend(device_identity.map(|b| Node::new("device-identity").bytes(b)));
    }
    Node::new("message")
        .attr("id", id)
        .attr("type", TYPE_TEXT)
        .attr("category", "peer")
        .attr("push_priority", push_priority)
        .attr("to", own_user.to_non_ad())
        .children(kids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::message::fixtures::{
        DM_OUT, DM_RETRY_OUT, GROUP_OUT, GROUP_OUT_SECOND, GROUP_RETRY_OUT, PEER_OUT, assert_shape, node,
    };

    /// The `<to>` entries of a transcript stanza as ciphertext inputs.
    fn entries(stanza: &Node) -> Vec<DeviceCiphertext> {
        stanza
            .child("participants")
            .map(|p| {
                p.child_nodes()
                    .iter()
                    .map(|to| {
                        let enc = &to.child_nodes()[0];
                        DeviceCiphertext {
                            device: to.attr_jid("jid").unwrap(),
                            kind: EncType::from_attr(enc.attr_str("type").unwrap()).unwrap(),
                            ciphertext: enc.content_bytes().unwrap().to_vec(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn skmsg(stanza: &Node) -> Vec<u8> {
        stanza.child("enc").unwrap().content_bytes().unwrap().to_vec()
    }

    fn identity(stanza: &Node) -> Vec<u8> {
        stanza.child("device-identity").unwrap().content_bytes().unwrap().to_vec()
    }

    /// The 1:1 fan-out stanza reproduces Baileys' (attrs, `<to>` order, device-identity).
    #[test]
    fn dm_matches_transcript() {
        let t = node(DM_OUT);
        let built = dm_stanza(
            "3EB0CA77CE5D0FA9DA0A18",
            &t.attr_jid("to").unwrap(),
            &entries(&t),
            Some(&identity(&t)),
        );
        assert_shape(DM_OUT, &built);
        let order: Vec<&str> = built.attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(order, ["id", "type", "to"]);
    }

    /// Without any pkmsg the device identity is left out.
    #[test]
    fn dm_without_pkmsg_has_no_identity() {
        let d = DeviceCiphertext {
            device: "1:1@s.whatsapp.net".parse().unwrap(),
            kind: EncType::Msg,
            ciphertext: vec![1],
        };
        let built = dm_stanza("x", &"1@s.whatsapp.net".parse().unwrap(), &[d], Some(b"id"));
        assert!(built.child("device-identity").is_none());
    }

    /// Group sends (first with SKDMs, second skmsg only) reproduce Baileys' stanzas.
    #[test]
    fn group_matches_transcript() {
        let t = node(GROUP_OUT);
        let (sk, ents, ident, group) = (skmsg(&t), entries(&t), identity(&t), t.attr_jid("to").unwrap());
        let send = GroupSend {
            id: "3EB0E12BE09DBB33E5FB4F",
            group: &group,
            addressing_mode: Some("pn"),
            skmsg: &sk,
            skdm: &ents,
            device_identity: Some(&ident),
        };
        assert_shape(GROUP_OUT, &group_stanza(&send));
        let t2 = node(GROUP_OUT_SECOND);
        let sk2 = skmsg(&t2);
        let send2 = GroupSend { id: "3EB0479CAF320F81E2A73F", skmsg: &sk2, skdm: &[], ..send };
        assert_shape(GROUP_OUT_SECOND, &group_stanza(&send2));
    }

    /// Retry resends (1:1 and group) reproduce Baileys' stanzas.
    #[test]
    fn retries_match_transcript() {
        let t = node(DM_RETRY_OUT);
        assert_shape(
            DM_RETRY_OUT,
            &dm_retry_stanza("3EB07072D99E678344629B", &entries(&t)[0], Some(&identity(&t))),
        );
        let g = node(GROUP_RETRY_OUT);
        let built = group_retry_stanza(
            "3EB050459619C06BD9D490",
            &g.attr_jid("to").unwrap(),
            &skmsg(&g),
            &entries(&g)[0],
            Some(&identity(&g)),
        );
        assert_shape(GROUP_RETRY_OUT, &built);
    }

    /// The peer message to our own phone reproduces Baileys' stanza.
    #[test]
    fn peer_matches_transcript() {
        let t = node(PEER_OUT);
        let built = peer_stanza(
            "3EB08F0DF29ABB745250C5",
            &"15550000002:1@s.whatsapp.net".parse().unwrap(),
            EncType::Pkmsg,
            &skmsg(&t),
            "high_force",
            Some(&identity(&t)),
        );
        assert_shape(PEER_OUT, &built);
    }
}
