//! Linking inside the simulator core: the QR scan and `pair-success` / `pair-device-sign`
//! exchange (ADV signatures checked), and the pair-code (link code) flow.
//!
//! No sockets, no clocks.

use std::time::Instant;

use prost::Message as _;
use rand::RngCore;

use super::{
    AdminError, Conn, ConnId, EnteredCode, PendingLink, PendingPair, Phase, Sim, iq_result, server_jid,
};
use crate::wa::binary::Node;
use crate::wa::noise::KeyPair;
use crate::wa::pair::adv;
use crate::wa::pair::code::{PairCode, WRAPPED_EPHEMERAL_LEN};
use crate::wa::pair::qr::QrData;
use crate::wa::proto;

impl Sim {
    // ---------------------------------------------------------------- pairing

    fn build_pair_success(
        &mut self,
        now: Instant,
        phone: &str,
        device: u16,
        identity_pub: &[u8; 32],
        adv_secret: &[u8; 32],
    ) -> Option<(Node, Vec<u8>, String)> {
        let unix = self.unix(now);
        let raw_id = self.rng.next_u32();
        let mut random = [0u8; 64];
        self.rng.fill_bytes(&mut random);
        let id = self.next_stanza_id();
        let a = self.accounts.get(phone)?;
        let d = a.devices.get(&device)?;
        let details = proto::AdvDeviceIdentity {
            raw_id: Some(raw_id),
            timestamp: Some(unix),
            key_index: Some(d.key_index),
            account_type: None,
            device_type: None,
        }
        .encode_to_vec();
        let primary = KeyPair::from_private_bytes(a.identity_priv);
        let msg = adv::account_signature_message(false, &details, identity_pub);
        let account_signature = crate::wa::noise::xeddsa::sign(primary.private(), &msg, &random);
        let account = proto::AdvSignedDeviceIdentity {
            details: Some(details.clone()),
            account_signature_key: Some(a.identity_pub.to_vec()),
            account_signature: Some(account_signature.to_vec()),
            device_signature: None,
        }
        .encode_to_vec();
        let hmac = adv::adv_hmac(adv_secret, false, &account);
        let wrapped = proto::AdvSignedDeviceIdentityHmac {
            details: Some(account),
            hmac: Some(hmac.to_vec()),
            account_type: None,
        }
        .encode_to_vec();
        let mut success = vec![
            Node::new("device-identity").bytes(wrapped),
            Node::new("platform").attr("name", "android"),
            Node::new("device").attr("jid", a.device_jid(device)).attr("lid", a.device_lid(device)),
        ];
        if !a.name.is_empty() {
            success.push(Node::new("biz").attr("name", a.name.clone()));
        }
        let iq = Node::new("iq")
            .attr("from", server_jid())
            .attr("type", "set")
            .attr("id", id.clone())
            .attr("xmlns", "md")
            .attr("t", unix.to_string())
            .children([Node::new("pair-success").children(success)]);
        Some((iq, details, id))
    }

    pub(super) fn handle_pair_device_sign(&mut self, now: Instant, conn: ConnId, id: &str, sign: &Node) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Phase::Registration { identity_pub, pairing, .. } = &mut c.phase else {
            return self.reject(conn, "pair-device-sign outside pairing");
        };
        let identity_pub = *identity_pub;
        let Some(p) = pairing.take() else {
            return self.reject(conn, "pair-device-sign without pair-success");
        };
        if p.iq_id != id {
            return self.reject(conn, "pair-device-sign for another iq id");
        }
        let Some(di) = sign.child("device-identity") else { return self.reject(conn, "no device-identity") };
        let Ok(acc) = proto::AdvSignedDeviceIdentity::decode(di.content_bytes().unwrap_or_default()) else {
            return self.reject(conn, "malformed ADVSignedDeviceIdentity");
        };
        let Some(a) = self.accounts.get_mut(&p.phone) else { return self.reject(conn, "account vanished") };
        let Some(d) = a.devices.get_mut(&p.device) else { return self.reject(conn, "device vanished") };
        let key_index_ok = di.attr_str("key-index").and_then(|k| k.parse::<u32>().ok()) == Some(d.key_index);
        let details_ok = acc.details.as_deref() == Some(p.details.as_slice());
        let sig_ok =
            acc.device_signature.as_deref().and_then(|s| <[u8; 64]>::try_from(s).ok()).is_some_and(|sig| {
                let msg = adv::device_signature_message(false, &p.details, &identity_pub, &a.identity_pub);
                crate::wa::noise::xeddsa::verify(&identity_pub, &msg, &sig)
            });
        if !(key_index_ok && details_ok && sig_ok) {
            a.devices.remove(&p.device);
            return self.reject(conn, "pair-device-sign failed verification");
        }
        d.confirmed = true;
        self.stats.pairings += 1;
        tracing::info!(conn_id = conn.0, device = p.device, "sim paired companion");
        self.notify_device_added(now, &p.phone, p.device);
        self.stream_error(conn, Node::new("stream:error").attr("code", "515"), "515");
    }

    /// The phone scans a QR code shown by a companion.
    ///
    /// # Errors
    /// [`AdminError`] for an unknown phone or ref, an expired ref, or a full account.
    pub fn scan(&mut self, now: Instant, phone: &str, qr: &str) -> Result<String, AdminError> {
        let q = QrData::parse(qr).map_err(|e| AdminError::BadRequest(e.to_string()))?;
        if !self.accounts.contains_key(phone) {
            return Err(AdminError::UnknownPhone);
        }
        let &(conn, expires) = self.refs.get(&q.reference).ok_or(AdminError::UnknownRef)?;
        if now >= expires {
            return Err(AdminError::ExpiredRef);
        }
        let Some(Conn {
            phase: Phase::Registration { noise_pub, identity_pub, keys, pairing: None, .. },
            ..
        }) = self.conns.get(&conn)
        else {
            return Err(AdminError::UnknownRef);
        };
        let keys = (**keys).clone();
        if *noise_pub != q.noise_pub || *identity_pub != q.identity_pub {
            return Err(AdminError::BadRequest(
                "qr keys do not match the companion that received the ref".into(),
            ));
        }
        let unix = self.unix(now);
        let a = self.accounts.get_mut(phone).ok_or(AdminError::UnknownPhone)?;
        let device = a.add_device(q.noise_pub, keys, unix).map_err(|_| AdminError::DeviceLimit)?.id;
        let jid = a.device_jid(device);
        self.refs.retain(|_, (owner, _)| *owner != conn);
        self.start_pairing(now, conn, phone, device, &q.identity_pub, &q.adv_secret)?;
        Ok(jid)
    }

    fn start_pairing(
        &mut self,
        now: Instant,
        conn: ConnId,
        phone: &str,
        device: u16,
        identity_pub: &[u8; 32],
        adv_secret: &[u8; 32],
    ) -> Result<(), AdminError> {
        let (iq, details, iq_id) = self
            .build_pair_success(now, phone, device, identity_pub, adv_secret)
            .ok_or(AdminError::UnknownDevice)?;
        if let Some(Conn { phase: Phase::Registration { pairing, .. }, .. }) = self.conns.get_mut(&conn) {
            *pairing = Some(PendingPair { phone: phone.to_owned(), device, iq_id, details });
        }
        self.send_node(conn, &iq);
        Ok(())
    }

    // ---------------------------------------------------------------- link code

    pub(super) fn handle_link_code_stanza(&mut self, now: Instant, conn: ConnId, id: &str, reg: &Node) {
        let stage = reg.attr_str("stage").unwrap_or_default();
        let Some(Conn { phase: Phase::Registration { .. }, .. }) = self.conns.get(&conn) else {
            return self.reject(conn, "link code stanza outside registration");
        };
        let child_bytes = |tag: &str| reg.child(tag).and_then(Node::content_bytes).map(<[u8]>::to_vec);
        match stage {
            "companion_hello" => {
                let phone = reg.attr_jid("jid").map(|j| j.user.clone()).unwrap_or_default();
                let Some(wrapped) = child_bytes("link_code_pairing_wrapped_companion_ephemeral_pub")
                    .filter(|w| w.len() == WRAPPED_EPHEMERAL_LEN)
                else {
                    return self.reject(conn, "companion_hello without an 80-byte wrapped ephemeral");
                };
                let mut r = [0u8; 16];
                self.rng.fill_bytes(&mut r);
                let reference = format!("2@{}", r.iter().map(|b| format!("{b:02x}")).collect::<String>());
                if let Some(Conn { phase: Phase::Registration { link, .. }, .. }) = self.conns.get_mut(&conn)
                {
                    *link = Some(Box::new(PendingLink {
                        phone,
                        reference: reference.clone(),
                        wrapped_companion_eph: wrapped,
                        entered: None,
                    }));
                }
                let reply = iq_result(id).children([Node::new("link_code_companion_reg")
                    .children([Node::new("link_code_pairing_ref").bytes(reference.into_bytes())])]);
                self.send_node(conn, &reply);
            }
            "companion_finish" => {
                let Some(Conn { phase: Phase::Registration { identity_pub, link: Some(l), .. }, .. }) =
                    self.conns.get(&conn)
                else {
                    return self.reject(conn, "companion_finish before the code was entered");
                };
                let (phone, Some(e)) = (&l.phone, &l.entered) else {
                    return self.reject(conn, "companion_finish before the code was entered");
                };
                let (identity_pub, phone, device) = (*identity_pub, phone.clone(), e.device);
                let Some(bundle) = child_bytes("link_code_pairing_wrapped_key_bundle") else {
                    return self.reject(conn, "companion_finish without key bundle");
                };
                let Some(a) = self.accounts.get(&phone) else { return self.reject(conn, "account vanished") };
                let secret = crate::wa::pair::code::primary_open_bundle(
                    &e.primary_eph.private().to_bytes(),
                    &e.companion_eph_pub,
                    &a.identity_priv,
                    &a.identity_pub,
                    &identity_pub,
                    &bundle,
                );
                let secret = match secret {
                    Ok(s) => s,
                    Err(err) => return self.reject(conn, &err.to_string()),
                };
                self.send_node(conn, &iq_result(id));
                if self.start_pairing(now, conn, &phone, device, &identity_pub, &secret).is_err() {
                    self.reject(conn, "device vanished during link-code pairing");
                }
            }
            _ => self.send_node(conn, &iq_result(id)),
        }
    }

    /// The phone enters a pair code shown by a companion that requested one for `phone`.
    ///
    /// # Errors
    /// [`AdminError`] for an unknown phone, no pending request, a bad code shape or a full
    /// account. A wrong (well-formed) code is only detected when the companion answers; that
    /// connection is then closed.
    pub fn enter_link_code(&mut self, now: Instant, phone: &str, code: &str) -> Result<String, AdminError> {
        let code = PairCode::parse(code).map_err(|e| AdminError::BadRequest(e.to_string()))?;
        if !self.accounts.contains_key(phone) {
            return Err(AdminError::UnknownPhone);
        }
        let conn = self
            .conns
            .iter()
            .find(|(_, c)| {
                matches!(&c.phase, Phase::Registration { link: Some(l), pairing: None, .. } if l.phone == phone && l.entered.is_none())
                    && !c.closed
            })
            .map(|(id, _)| *id)
            .ok_or(AdminError::NoPendingLinkCode)?;
        let Some(Conn { phase: Phase::Registration { noise_pub, keys, link: Some(link), .. }, .. }) =
            self.conns.get(&conn)
        else {
            return Err(AdminError::NoPendingLinkCode);
        };
        let (noise_pub, keys) = (*noise_pub, (**keys).clone());
        let companion_eph_pub = code
            .unwrap_ephemeral(&link.wrapped_companion_eph)
            .map_err(|e| AdminError::BadRequest(e.to_string()))?;
        let reference = link.reference.clone();
        let unix = self.unix(now);
        let a = self.accounts.get_mut(phone).ok_or(AdminError::UnknownPhone)?;
        let device = a.add_device(noise_pub, keys, unix).map_err(|_| AdminError::DeviceLimit)?.id;
        let jid = a.device_jid(device);
        let primary_identity_pub = a.identity_pub;
        let primary_eph = KeyPair::generate(&mut self.rng);
        let (mut salt, mut iv) = ([0u8; 32], [0u8; 16]);
        self.rng.fill_bytes(&mut salt);
        self.rng.fill_bytes(&mut iv);
        let wrapped = code.wrap_ephemeral(primary_eph.public(), &salt, &iv);
        let id = self.next_stanza_id();
        let notification = Node::new("notification")
            .attr("from", server_jid())
            .attr("type", "link_code_companion_reg")
            .attr("id", id)
            .attr("t", unix.to_string())
            .children([Node::new("link_code_companion_reg").attr("stage", "primary_hello").children([
                Node::new("link_code_pairing_wrapped_primary_ephemeral_pub").bytes(wrapped.to_vec()),
                Node::new("primary_identity_pub").bytes(primary_identity_pub.to_vec()),
                Node::new("link_code_pairing_ref").bytes(reference.into_bytes()),
            ])]);
        if let Some(Conn { phase: Phase::Registration { link: Some(l), .. }, .. }) = self.conns.get_mut(&conn)
        {
            l.entered = Some(EnteredCode { primary_eph, companion_eph_pub, device });
        }
        self.refs.retain(|_, (owner, _)| *owner != conn);
        self.send_node(conn, &notification);
        Ok(jid)
    }
}
