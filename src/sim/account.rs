//! The simulator's account registry: phones (each with a simulated primary device and its
//! identity key), their companion devices, the 4-companion limit and per-device counters.
//!
//! Pure bookkeeping: no sockets, no clocks (times come in as unix seconds).

use std::collections::BTreeMap;

use super::prekeys::CompanionKeys;

/// Most companion devices one account may have (linked or being linked), as on the real server.
pub const MAX_COMPANIONS: usize = 4;

/// A companion device slot of an account.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    /// Device number `N` of `phone:N@s.whatsapp.net` (≥ 1; never reused).
    pub(crate) id: u16,
    /// The companion's Noise static key (the login must present it).
    pub(crate) noise_pub: [u8; 32],
    /// The companion's public Signal keys (registration payload + uploads).
    pub(crate) keys: CompanionKeys,
    /// ADV key index given at pairing.
    pub(crate) key_index: u32,
    /// Unix seconds when pairing started.
    pub(crate) linked_at: u64,
    /// Successful logins so far.
    pub(crate) logins: u64,
    /// False until the companion's `pair-device-sign` verified.
    pub(crate) confirmed: bool,
    /// The last `<presence>` it sent: `(type, name)`.
    pub(crate) presence: Option<(String, Option<String>)>,
}

/// A phone number with its simulated primary device.
#[derive(Debug)]
pub(crate) struct Account {
    /// Digits of the phone number.
    pub(crate) phone: String,
    /// Display name of the primary (used as business/push name).
    pub(crate) name: String,
    /// User part of the account's LID.
    pub(crate) lid_user: String,
    /// The primary's identity private key (signs ADV account signatures).
    pub(crate) identity_priv: [u8; 32],
    /// The primary's identity public key.
    pub(crate) identity_pub: [u8; 32],
    /// Companions by device id.
    pub(crate) devices: BTreeMap<u16, Device>,
    next_device: u16,
    next_key_index: u32,
    /// Set by the `ban` fault: every later login gets `<failure reason="403"/>`.
    pub(crate) banned: bool,
}

/// Why a new companion could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceLimitReached;

impl Account {
    /// A new account whose primary has the given identity key pair.
    pub(crate) fn new(
        phone: String,
        name: String,
        lid_user: String,
        identity_priv: [u8; 32],
        identity_pub: [u8; 32],
    ) -> Self {
        Self {
            phone,
            name,
            lid_user,
            identity_priv,
            identity_pub,
            devices: BTreeMap::new(),
            next_device: 1,
            next_key_index: 1,
            banned: false,
        }
    }

    /// `phone@s.whatsapp.net`.
    pub(crate) fn jid(&self) -> String {
        format!("{}@s.whatsapp.net", self.phone)
    }

    /// `phone:N@s.whatsapp.net`.
    pub(crate) fn device_jid(&self, id: u16) -> String {
        format!("{}:{id}@s.whatsapp.net", self.phone)
    }

    /// `lid:N@lid`.
    pub(crate) fn device_lid(&self, id: u16) -> String {
        format!("{}:{id}@lid", self.lid_user)
    }

    /// Reserves a device slot for a companion that is being linked.
    pub(crate) fn add_device(
        &mut self,
        noise_pub: [u8; 32],
        keys: CompanionKeys,
        now_unix: u64,
    ) -> Result<&Device, DeviceLimitReached> {
        if self.devices.len() >= MAX_COMPANIONS {
            return Err(DeviceLimitReached);
        }
        let id = self.next_device;
        self.next_device = self.next_device.saturating_add(1);
        let key_index = self.next_key_index;
        self.next_key_index = self.next_key_index.saturating_add(1);
        let d = Device {
            id,
            noise_pub,
            keys,
            key_index,
            linked_at: now_unix,
            logins: 0,
            confirmed: false,
            presence: None,
        };
        Ok(self.devices.entry(id).or_insert(d))
    }

    /// The confirmed device with this id whose noise key matches, for a login.
    pub(crate) fn login_device(&mut self, id: u16, noise_pub: &[u8; 32]) -> Option<&mut Device> {
        self.devices.get_mut(&id).filter(|d| d.confirmed && &d.noise_pub == noise_pub)
    }
}

/// Splits `phone:N@s.whatsapp.net` (or `phone.0:N@…`) into its user and device number.
pub(crate) fn parse_device_jid(jid: &str) -> Option<(String, u16)> {
    let (user_dev, server) = jid.split_once('@')?;
    if server != "s.whatsapp.net" {
        return None;
    }
    let (user, dev) = user_dev.split_once(':')?;
    let user = user.split_once('.').map_or(user, |(u, _)| u);
    Some((user.to_owned(), dev.parse().ok()?))
}

/// Formats unix seconds as RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`).
pub(crate) fn rfc3339(unix: u64) -> String {
    crate::types::rfc3339_utc(unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CompanionKeys {
        CompanionKeys::identity_only([0; 32])
    }

    /// The fifth companion is refused; ids are never reused after a removal.
    #[test]
    fn device_limit_and_ids() {
        let mut a = Account::new("1555".into(), "A".into(), "99".into(), [1; 32], [2; 32]);
        for i in 1..=4u16 {
            assert_eq!(a.add_device([i as u8; 32], keys(), 0).unwrap().id, i);
        }
        assert_eq!(a.add_device([9; 32], keys(), 0).map(|d| d.id), Err(DeviceLimitReached));
        a.devices.remove(&2);
        assert_eq!(a.add_device([9; 32], keys(), 0).unwrap().id, 5);
    }

    /// Only confirmed devices with the registered noise key may log in.
    #[test]
    fn login_requires_confirmed_matching_key() {
        let mut a = Account::new("1555".into(), "A".into(), "99".into(), [1; 32], [2; 32]);
        let id = a.add_device([7; 32], keys(), 0).unwrap().id;
        assert!(a.login_device(id, &[7; 32]).is_none());
        a.devices.get_mut(&id).unwrap().confirmed = true;
        assert!(a.login_device(id, &[8; 32]).is_none());
        assert!(a.login_device(id, &[7; 32]).is_some());
    }

    /// Device JIDs parse; RFC 3339 formatting matches known instants.
    #[test]
    fn jid_and_time_helpers() {
        assert_eq!(parse_device_jid("15550001111:3@s.whatsapp.net"), Some(("15550001111".into(), 3)));
        assert_eq!(parse_device_jid("15550001111@s.whatsapp.net"), None);
        assert_eq!(parse_device_jid("x:3@lid"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
