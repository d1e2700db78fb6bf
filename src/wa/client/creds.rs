//! The companion's long-term credentials (what must survive a restart to log in without a
//! QR), generated once before the first connect, completed at pairing.
//!
//! Plain data; `Debug` never prints secrets. Persistence is the store's job (via
//! `Output::Persist`).

use std::fmt;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::wa::noise::{KeyPair, xeddsa};

/// A Signal pre-key: id + X25519 key pair.
#[derive(Clone)]
pub struct PreKey {
    /// Key id (24 bits on the wire).
    pub id: u32,
    /// The key pair.
    pub key: KeyPair,
}

impl fmt::Debug for PreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The signed pre-key: a pre-key plus the identity key's XEdDSA signature over `05 ‖ pub`.
#[derive(Clone)]
pub struct SignedPreKey {
    /// The pre-key.
    pub key: PreKey,
    /// 64-byte signature by the identity key.
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKey").field("id", &self.key.id).finish_non_exhaustive()
    }
}

/// Who we are after pairing.
#[derive(Clone, PartialEq, Eq)]
pub struct Me {
    /// Our device JID `phone:N@s.whatsapp.net`.
    pub jid: String,
    /// Our LID device JID, if the server gave one.
    pub lid: Option<String>,
    /// The full `ADVSignedDeviceIdentity` (with our device signature).
    pub account: Vec<u8>,
    /// The primary's identity key.
    pub account_key: [u8; 32],
    /// The primary's platform (`<platform name>`).
    pub platform: Option<String>,
}

impl fmt::Debug for Me {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Me")
            .field("jid", &"[phone redacted]")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl Me {
    /// The phone number (user part of [`Me::jid`]).
    pub fn phone(&self) -> &str {
        self.jid.split(['@', ':', '.']).next().unwrap_or_default()
    }

    /// Our device number.
    pub fn device(&self) -> u16 {
        self.jid
            .split_once(':')
            .and_then(|(_, r)| r.split('@').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0)
    }
}

/// Everything a companion persists to log in again.
#[derive(Clone)]
pub struct Creds {
    /// Noise static key (its public half is in the QR and is checked at login).
    pub noise_key: KeyPair,
    /// Signal identity key.
    pub identity_key: KeyPair,
    /// Signal registration id.
    pub registration_id: u32,
    /// Signed pre-key.
    pub signed_pre_key: SignedPreKey,
    /// HMAC key of pair-success (QR field 4; replaced during pair-code pairing).
    pub adv_secret: Zeroizing<[u8; 32]>,
    /// Set once paired.
    pub me: Option<Me>,
    /// Our push name as last learned (pair-success `<biz name>`); announced with `<presence>`.
    pub push_name: Option<String>,
    /// Next pre-key id to hand out.
    pub next_pre_key_id: u32,
}

impl fmt::Debug for Creds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Creds")
            .field("registration_id", &self.registration_id)
            .field("me", &self.me)
            .field("next_pre_key_id", &self.next_pre_key_id)
            .finish_non_exhaustive()
    }
}

/// Signs a pre-key public key the Signal way (`05 ‖ pub`).
pub(crate) fn sign_pre_key(identity: &KeyPair, public: &[u8; 32], random: &[u8; 64]) -> [u8; 64] {
    let mut msg = [0u8; 33];
    msg[0] = 5;
    msg[1..].copy_from_slice(public);
    xeddsa::sign(identity.private(), &msg, random)
}

impl Creds {
    /// Fresh, unpaired credentials.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let noise_key = KeyPair::generate(&mut &mut *rng);
        let identity_key = KeyPair::generate(&mut &mut *rng);
        let registration_id = rng.next_u32() & 0x3fff;
        let spk = KeyPair::generate(&mut &mut *rng);
        let mut random = [0u8; 64];
        rng.fill_bytes(&mut random);
        let signature = sign_pre_key(&identity_key, spk.public(), &random);
        let mut adv = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(adv.as_mut());
        Self {
            noise_key,
            identity_key,
            registration_id,
            signed_pre_key: SignedPreKey { key: PreKey { id: 1, key: spk }, signature },
            adv_secret: adv,
            me: None,
            push_name: None,
            next_pre_key_id: 1,
        }
    }

    /// True once pairing completed.
    pub fn is_paired(&self) -> bool {
        self.me.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Debug output never contains key bytes or the phone number.
    #[test]
    fn debug_redacts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut c = Creds::generate(&mut rng);
        c.me = Some(Me {
            jid: "15550001111:3@s.whatsapp.net".into(),
            lid: None,
            account: vec![],
            account_key: [0; 32],
            platform: None,
        });
        let d = format!("{c:?}");
        assert!(!d.contains("1555"));
        assert_eq!(c.me.as_ref().unwrap().phone(), "15550001111");
        assert_eq!(c.me.as_ref().unwrap().device(), 3);
    }
}
