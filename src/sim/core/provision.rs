//! Provisioning without a QR round trip (benchmarks and load tests): registers a companion
//! device for a phone straight into the account registry and returns exactly what the phone's
//! pair-success would have carried, so the caller finishes "pairing" locally (the companion
//! verifies the HMAC and the account signature and adds its device signature, as after a scan)
//! and writes its creds into its own store.
//!
//! Sans-IO like the rest of the core. Never used by the login path: a provisioned device logs in
//! exactly like a scanned one (confirmed, noise key checked).

use prost::Message as _;
use rand::RngCore as _;

use super::{AdminError, Sim};
use crate::wa::noise::KeyPair;
use crate::wa::pair::adv;
use crate::wa::proto;

/// The companion's public material, as its QR code would show it. `Debug` hides the ADV secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CompanionKeys {
    /// Noise static public key (checked at every login).
    pub noise_pub: [u8; 32],
    /// Signal identity public key (signed by the primary's account signature).
    pub identity_pub: [u8; 32],
    /// The ADV secret the pair-success HMAC is keyed with.
    pub adv_secret: [u8; 32],
}

impl std::fmt::Debug for CompanionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanionKeys").field("adv_secret", &"[redacted]").finish_non_exhaustive()
    }
}

/// What pairing would have produced: the `<pair-success>` contents.
#[derive(Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// `phone:N@s.whatsapp.net`.
    pub device_jid: String,
    /// `lid:N@lid`.
    pub device_lid: String,
    /// The `<device-identity>` bytes: an `ADVSignedDeviceIdentityHMAC` over the account-signed
    /// identity (verify with [`adv::verify_pair_success`]).
    pub device_identity: Vec<u8>,
    /// The primary's platform (`<platform name>`).
    pub platform: String,
    /// The account's business/push name (`<biz name>`), if any.
    pub business_name: Option<String>,
}

impl std::fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioned").field("platform", &self.platform).finish_non_exhaustive()
    }
}

/// The platform every simulated primary reports.
const PLATFORM: &str = "android";

impl Sim {
    /// Creates `phone` if needed and links a confirmed companion with `keys`, as if its QR had
    /// been scanned and its `pair-device-sign` verified. `prekeys` is how many one-time pre-keys
    /// the server believes the device uploaded (≥ 5 skips the upload at login).
    ///
    /// # Errors
    /// [`AdminError::BadRequest`] for a malformed phone, [`AdminError::DeviceLimit`] when the
    /// account already has four companions.
    pub fn provision_companion(
        &mut self,
        now: std::time::Instant,
        phone: &str,
        name: &str,
        keys: &CompanionKeys,
        prekeys: u32,
    ) -> Result<Provisioned, AdminError> {
        self.add_phone(phone, name)?;
        let unix = self.unix(now);
        let raw_id = self.rng.next_u32();
        let mut random = [0u8; 64];
        self.rng.fill_bytes(&mut random);
        let a = self.accounts.get_mut(phone).ok_or(AdminError::UnknownPhone)?;
        let d = a
            .add_device(
                keys.noise_pub,
                crate::sim::prekeys::CompanionKeys::identity_only(keys.identity_pub),
                unix,
            )
            .map_err(|_| AdminError::DeviceLimit)?;
        let (device, key_index) = (d.id, d.key_index);
        if let Some(d) = a.devices.get_mut(&device) {
            d.confirmed = true;
            d.keys.assume_pool(prekeys);
        }
        let details = proto::AdvDeviceIdentity {
            raw_id: Some(raw_id),
            timestamp: Some(unix),
            key_index: Some(key_index),
            account_type: None,
            device_type: None,
        }
        .encode_to_vec();
        let primary = KeyPair::from_private_bytes(a.identity_priv);
        let msg = adv::account_signature_message(false, &details, &keys.identity_pub);
        let account_signature = crate::wa::noise::xeddsa::sign(primary.private(), &msg, &random);
        let account = proto::AdvSignedDeviceIdentity {
            details: Some(details),
            account_signature_key: Some(a.identity_pub.to_vec()),
            account_signature: Some(account_signature.to_vec()),
            device_signature: None,
        }
        .encode_to_vec();
        let hmac = adv::adv_hmac(&keys.adv_secret, false, &account);
        let device_identity = proto::AdvSignedDeviceIdentityHmac {
            details: Some(account),
            hmac: Some(hmac.to_vec()),
            account_type: None,
        }
        .encode_to_vec();
        self.stats.pairings += 1;
        Ok(Provisioned {
            device_jid: a.device_jid(device),
            device_lid: a.device_lid(device),
            device_identity,
            platform: PLATFORM.to_owned(),
            business_name: Some(a.name.clone()).filter(|n| !n.is_empty()),
        })
    }

    /// Sets how many one-time pre-keys the server holds for every companion of `phone` (a
    /// count below 5 makes the companion upload a batch at its next login). Returns the number
    /// of devices changed.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`].
    pub fn set_server_prekeys(&mut self, phone: &str, prekeys: u32) -> Result<usize, AdminError> {
        let a = self.accounts.get_mut(phone).ok_or(AdminError::UnknownPhone)?;
        for d in a.devices.values_mut() {
            d.keys.assume_pool(prekeys);
        }
        Ok(a.devices.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::sim::SimConfig;

    #[expect(clippy::disallowed_methods, reason = "an arbitrary origin for the sim's clock")]
    fn origin() -> Instant {
        Instant::now()
    }

    fn keys(seed: u8) -> (KeyPair, CompanionKeys) {
        let identity = KeyPair::from_private_bytes([seed; 32]);
        let noise = KeyPair::from_private_bytes([seed.wrapping_add(1); 32]);
        let k = CompanionKeys {
            noise_pub: *noise.public(),
            identity_pub: *identity.public(),
            adv_secret: [seed; 32],
        };
        (identity, k)
    }

    /// A provisioned identity verifies like a scanned one (HMAC + account signature) and the
    /// device is listed as linked.
    #[test]
    fn provisioned_identity_verifies_and_device_is_listed() {
        let now = origin();
        let mut sim = Sim::new(SimConfig::seeded("127.0.0.1:0".parse().unwrap(), 1), now, 1_700_000_000);
        let (identity, k) = keys(3);
        let p = sim.provision_companion(now, "15550001234", "Bench", &k, 50).unwrap();
        assert_eq!(p.device_jid, "15550001234:1@s.whatsapp.net");
        assert_eq!(p.business_name.as_deref(), Some("Bench"));
        let v = adv::verify_pair_success(&p.device_identity, &k.adv_secret, identity.private(), &[0; 64])
            .unwrap();
        assert_eq!(v.key_index, 1);
        let devices = sim.devices("15550001234").unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].device_jid, p.device_jid);
    }

    /// `Debug` of the companion keys never shows the ADV secret.
    #[test]
    fn debug_hides_adv_secret() {
        let k = CompanionKeys { noise_pub: [1; 32], identity_pub: [2; 32], adv_secret: [0xab; 32] };
        let d = format!("{k:?}");
        assert!(d.contains("[redacted]") && !d.contains("171"), "{d}");
    }

    /// A wrong ADV secret fails the HMAC, so the companion would refuse the identity.
    #[test]
    fn wrong_adv_secret_is_refused() {
        let now = origin();
        let mut sim = Sim::new(SimConfig::seeded("127.0.0.1:0".parse().unwrap(), 2), now, 1_700_000_000);
        let (identity, k) = keys(4);
        let p = sim.provision_companion(now, "15550001235", "", &k, 0).unwrap();
        let r = adv::verify_pair_success(&p.device_identity, &[9; 32], identity.private(), &[0; 64]);
        assert_eq!(r.unwrap_err(), adv::AdvError::HmacMismatch);
    }

    /// The fifth companion is refused; pre-key counts can be reset per phone.
    #[test]
    fn device_limit_and_prekey_reset() {
        let now = origin();
        let mut sim = Sim::new(SimConfig::seeded("127.0.0.1:0".parse().unwrap(), 3), now, 1_700_000_000);
        for i in 0..4u8 {
            sim.provision_companion(now, "15550001236", "", &keys(10 + i).1, 50).unwrap();
        }
        let r = sim.provision_companion(now, "15550001236", "", &keys(20).1, 50);
        assert_eq!(r.unwrap_err(), AdminError::DeviceLimit);
        assert_eq!(sim.set_server_prekeys("15550001236", 0).unwrap(), 4);
        assert_eq!(sim.set_server_prekeys("19990000000", 0).unwrap_err(), AdminError::UnknownPhone);
    }
}
