//! Account administration inside the simulator core: phones (each with its simulated primary
//! Signal peer), the device list, unlinking, fault injection and the counters.
//!
//! No sockets, no clocks.

use std::time::Instant;

use rand::RngCore;

use super::{AdminError, DeviceInfo, HOSTED_DEVICE, Sim};
use crate::sim::account::{Account, parse_device_jid, rfc3339};
use crate::sim::faults::{Fault, Stats};
use crate::sim::phone::Phone;
use crate::wa::binary::Node;
use crate::wa::frame;
use crate::wa::jid::{Jid, Server};
use crate::wa::noise::KeyPair;

impl Sim {
    /// Creates a phone (account with a simulated primary). Returns `(created, jid)`.
    ///
    /// # Errors
    /// [`AdminError::BadRequest`] unless `phone` is 5–20 digits.
    pub fn add_phone(&mut self, phone: &str, name: &str) -> Result<(bool, String), AdminError> {
        if !(5..=20).contains(&phone.len())
            || !phone.bytes().all(|b| b.is_ascii_digit())
            || phone.starts_with('0')
        {
            return Err(AdminError::BadRequest(format!("phone must be 5-20 digits, got {phone:?}")));
        }
        if let Some(a) = self.accounts.get(phone) {
            return Ok((false, a.jid()));
        }
        let kp = KeyPair::generate(&mut self.rng);
        let lid = self.next_lid.to_string();
        self.next_lid += 1;
        let a = Account::new(phone.to_owned(), name.to_owned(), lid, *kp.private().to_bytes(), *kp.public());
        let jid = a.jid();
        let primary = Phone::new(Jid::new(phone, Server::User), *kp.private().to_bytes(), &mut self.rng);
        self.phones.insert(phone.to_owned(), primary);
        self.accounts.insert(phone.to_owned(), a);
        Ok((true, jid))
    }

    /// Gives `phone`'s account a hosted (Cloud API) device, `phone:99@hosted`: listed in usync
    /// with `is_hosted="true"`, answering bundle fetches and decrypting what reaches it (its
    /// inbox: [`Self::hosted_inbox`]). Returns its JID; idempotent.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`].
    pub fn add_hosted_device(&mut self, phone: &str) -> Result<String, AdminError> {
        if !self.accounts.contains_key(phone) {
            return Err(AdminError::UnknownPhone);
        }
        let jid = Jid::new(phone, Server::Hosted).with_device(HOSTED_DEVICE);
        if !self.hosted.contains_key(phone) {
            let kp = KeyPair::generate(&mut self.rng);
            let peer = Phone::new(Jid::new(phone, Server::Hosted), *kp.private().to_bytes(), &mut self.rng);
            self.hosted.insert(phone.to_owned(), peer);
        }
        Ok(jid.to_string())
    }

    /// What `phone`'s hosted device decrypted, oldest first.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`] (also when the account has no hosted device).
    pub fn hosted_inbox(&self, phone: &str) -> Result<Vec<crate::sim::InboxEntry>, AdminError> {
        self.hosted.get(phone).map(|p| p.inbox().to_vec()).ok_or(AdminError::UnknownPhone)
    }

    /// The companions of a phone.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`].
    pub fn devices(&self, phone: &str) -> Result<Vec<DeviceInfo>, AdminError> {
        let a = self.accounts.get(phone).ok_or(AdminError::UnknownPhone)?;
        Ok(a.devices
            .values()
            .filter(|d| d.confirmed)
            .map(|d| DeviceInfo {
                device_jid: a.device_jid(d.id),
                linked_at: rfc3339(d.linked_at),
                online: self.live.contains_key(&(phone.to_owned(), d.id)),
                logins: d.logins,
                presence: d.presence.clone(),
            })
            .collect())
    }

    pub(super) fn unlink(&mut self, phone: &str, device: u16) -> bool {
        let removed = self.accounts.get_mut(phone).and_then(|a| a.devices.remove(&device)).is_some();
        self.queues.remove(&(phone.to_owned(), device));
        if let Some(conn) = self.live.remove(&(phone.to_owned(), device)) {
            let e = Node::new("stream:error")
                .attr("code", "401")
                .children([Node::new("conflict").attr("type", "device_removed")]);
            self.stream_error(conn, e, "401");
        }
        removed
    }

    /// Unlinks a device (`device` is `N` or the full device JID); its live socket gets 401.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`] / [`AdminError::UnknownDevice`].
    pub fn remove_device(&mut self, _now: Instant, phone: &str, device: &str) -> Result<(), AdminError> {
        if !self.accounts.contains_key(phone) {
            return Err(AdminError::UnknownPhone);
        }
        let id = match device.parse::<u16>() {
            Ok(n) => n,
            Err(_) => match parse_device_jid(device) {
                Some((user, n)) if user == phone => n,
                _ => return Err(AdminError::UnknownDevice),
            },
        };
        if self.unlink(phone, id) { Ok(()) } else { Err(AdminError::UnknownDevice) }
    }

    /// Injects a fault into the live connection of `device_jid`.
    ///
    /// # Errors
    /// [`AdminError::UnknownDevice`] or [`AdminError::NotOnline`].
    pub fn inject_fault(&mut self, _now: Instant, device_jid: &str, fault: Fault) -> Result<(), AdminError> {
        let (phone, device) = parse_device_jid(device_jid).ok_or(AdminError::UnknownDevice)?;
        if !self.accounts.get(&phone).is_some_and(|a| a.devices.contains_key(&device)) {
            return Err(AdminError::UnknownDevice);
        }
        if fault == Fault::Logout {
            self.unlink(&phone, device);
            return Ok(());
        }
        if fault == Fault::CorruptNextMessage {
            self.corrupt_next.insert((phone, device));
            return Ok(());
        }
        if fault == Fault::UndecryptableNextMessage {
            self.undecryptable_next.insert((phone, device));
            return Ok(());
        }
        let conn = *self.live.get(&(phone.clone(), device)).ok_or(AdminError::NotOnline)?;
        match fault {
            Fault::Drop => self.close(conn),
            Fault::Conflict => {
                self.live.remove(&(phone, device));
                self.stats.replaced += 1;
                let e = Node::new("stream:error").children([Node::new("conflict").attr("type", "replaced")]);
                self.stream_error(conn, e, "440");
            }
            Fault::Ban => {
                if let Some(a) = self.accounts.get_mut(&phone) {
                    a.banned = true;
                }
                self.stream_error(conn, Node::new("failure").attr("reason", "403"), "403");
            }
            Fault::Unavailable => {
                self.stats.count_error("503");
                self.send_node(conn, &Node::new("stream:error").attr("code", "503"));
                self.send_node(conn, &Node::new("xmlstreamend"));
                self.close(conn);
            }
            Fault::MutePongs => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.mute_pongs = true;
                }
            }
            Fault::CorruptFrame => {
                let mut junk = vec![0u8; 48];
                self.rng.fill_bytes(&mut junk);
                if let Ok(b) = frame::frame(&junk) {
                    self.send_raw(conn, b);
                }
            }
            Fault::Logout | Fault::CorruptNextMessage | Fault::UndecryptableNextMessage => {}
        }
        Ok(())
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.unacked = self.queues.values().map(|q| q.len() as u64).sum();
        s
    }
}
