//! ADV (account/device identity) checks of QR and link-code pairing, both sides
//! (protocol/04-pairing-login.md §1.4–§1.5): the HMAC over the signed identity, the account
//! signature prefixes, the companion's device signature and the `pair-device-sign` body.
//!
//! Pure crypto over bytes and prost messages; no stanzas, no IO.

use hmac::{Hmac, Mac};
use prost::Message as _;
use sha2::Sha256;

use crate::wa::noise::{PrivateKey, xeddsa};
use crate::wa::proto;

/// Prefix of the account-signature message (E2EE account).
pub const ACCOUNT_SIG_PREFIX: [u8; 2] = [6, 0];
/// Prefix of the account-signature message for a hosted device.
pub const ACCOUNT_SIG_PREFIX_HOSTED: [u8; 2] = [6, 5];
/// Prefix of the device-signature message (E2EE account).
pub const DEVICE_SIG_PREFIX: [u8; 2] = [6, 1];
/// Prefix of the device-signature message for a hosted account.
pub const DEVICE_SIG_PREFIX_HOSTED: [u8; 2] = [6, 6];
/// Prefix of the HMAC input for a hosted account.
pub const HMAC_PREFIX_HOSTED: [u8; 2] = [6, 5];

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8; 32], hosted: bool) -> HmacSha256 {
    // HMAC zero-pads keys shorter than the block (64 bytes), so the padded key is the same
    // key and the infallible constructor applies.
    let mut key = zeroize::Zeroizing::new([0u8; 64]);
    key[..32].copy_from_slice(secret);
    let mut m = <HmacSha256 as Mac>::new(key.as_ref().into());
    if hosted {
        m.update(&HMAC_PREFIX_HOSTED);
    }
    m
}

/// `HMAC-SHA256(adv_secret, [6,5]? ‖ details)`: the MAC the primary puts in pair-success.
pub fn adv_hmac(secret: &[u8; 32], hosted: bool, details: &[u8]) -> [u8; 32] {
    let mut m = mac(secret, hosted);
    m.update(details);
    m.finalize().into_bytes().into()
}

/// The message the primary signs: `prefix ‖ device details ‖ companion identity`.
pub fn account_signature_message(hosted: bool, details: &[u8], companion_identity: &[u8; 32]) -> Vec<u8> {
    let prefix = if hosted { ACCOUNT_SIG_PREFIX_HOSTED } else { ACCOUNT_SIG_PREFIX };
    [&prefix[..], details, companion_identity].concat()
}

/// The message the companion signs: `prefix ‖ details ‖ companion identity ‖ account key`.
pub fn device_signature_message(
    hosted: bool,
    details: &[u8],
    companion_identity: &[u8; 32],
    account_key: &[u8; 32],
) -> Vec<u8> {
    let prefix = if hosted { DEVICE_SIG_PREFIX_HOSTED } else { DEVICE_SIG_PREFIX };
    [&prefix[..], details, companion_identity, account_key].concat()
}

/// Why a pair-success `<device-identity>` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvError {
    /// A protobuf did not decode. The server misbehaved.
    #[error("malformed {what}")]
    Malformed {
        /// Which message.
        what: &'static str,
    },
    /// The HMAC does not match our ADV secret (reply `401 hmac-mismatch`).
    #[error("adv hmac mismatch")]
    HmacMismatch,
    /// The account signature is missing, has the wrong size or does not verify
    /// (reply `401 signature-mismatch`).
    #[error("account signature mismatch")]
    SignatureMismatch,
}

/// A verified pair-success identity, ready to be persisted and answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The full `ADVSignedDeviceIdentity` with our device signature added (persist this).
    pub account: Vec<u8>,
    /// The `pair-device-sign` content: the same message without `accountSignatureKey`.
    pub reply: Vec<u8>,
    /// The primary's identity key (`accountSignatureKey`).
    pub account_key: [u8; 32],
    /// `keyIndex` of the device identity (the `key-index` attribute of the reply).
    pub key_index: u32,
}

/// Companion side of §1.4: checks the HMAC with `adv_secret` and the account signature, then
/// adds our device signature.
///
/// # Errors
/// [`AdvError`] for malformed protobufs, a wrong HMAC or an invalid account signature.
pub fn verify_pair_success(
    device_identity: &[u8],
    adv_secret: &[u8; 32],
    identity: &PrivateKey,
    random: &[u8; 64],
) -> Result<VerifiedIdentity, AdvError> {
    let wrapped = proto::AdvSignedDeviceIdentityHmac::decode(device_identity)
        .map_err(|_| AdvError::Malformed { what: "ADVSignedDeviceIdentityHMAC" })?;
    let hosted = wrapped.account_type == Some(proto::AdvEncryptionType::Hosted as i32);
    let details = wrapped.details.unwrap_or_default();
    let mut m = mac(adv_secret, hosted);
    m.update(&details);
    m.verify_slice(wrapped.hmac.as_deref().unwrap_or_default()).map_err(|_| AdvError::HmacMismatch)?;
    let mut account = proto::AdvSignedDeviceIdentity::decode(details.as_slice())
        .map_err(|_| AdvError::Malformed { what: "ADVSignedDeviceIdentity" })?;
    let dev_bytes = account.details.clone().unwrap_or_default();
    let dev = proto::AdvDeviceIdentity::decode(dev_bytes.as_slice())
        .map_err(|_| AdvError::Malformed { what: "ADVDeviceIdentity" })?;
    let dev_hosted = dev.device_type == Some(proto::AdvEncryptionType::Hosted as i32);
    let account_key: [u8; 32] = account
        .account_signature_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(AdvError::SignatureMismatch)?;
    let account_sig: [u8; 64] = account
        .account_signature
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(AdvError::SignatureMismatch)?;
    let own_identity = identity.public_key();
    let msg = account_signature_message(dev_hosted, &dev_bytes, &own_identity);
    if !xeddsa::verify(&account_key, &msg, &account_sig) {
        return Err(AdvError::SignatureMismatch);
    }
    let dmsg = device_signature_message(hosted, &dev_bytes, &own_identity, &account_key);
    account.device_signature = Some(xeddsa::sign(identity, &dmsg, random).to_vec());
    let full = account.encode_to_vec();
    account.account_signature_key = None;
    let reply = account.encode_to_vec();
    Ok(VerifiedIdentity { account: full, reply, account_key, key_index: dev.key_index.unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::noise::KeyPair;

    fn pair_success(
        secret: &[u8; 32],
        primary: &KeyPair,
        companion_pub: &[u8; 32],
        prefix_ok: bool,
    ) -> Vec<u8> {
        let dev = proto::AdvDeviceIdentity {
            raw_id: Some(9),
            timestamp: Some(1),
            key_index: Some(3),
            ..Default::default()
        }
        .encode_to_vec();
        let mut msg = account_signature_message(false, &dev, companion_pub);
        if !prefix_ok {
            msg[1] = 2;
        }
        let sig = xeddsa::sign(primary.private(), &msg, &[5; 64]);
        let acc = proto::AdvSignedDeviceIdentity {
            details: Some(dev),
            account_signature_key: Some(primary.public().to_vec()),
            account_signature: Some(sig.to_vec()),
            device_signature: None,
        }
        .encode_to_vec();
        let hmac = adv_hmac(secret, false, &acc);
        proto::AdvSignedDeviceIdentityHmac {
            details: Some(acc),
            hmac: Some(hmac.to_vec()),
            account_type: None,
        }
        .encode_to_vec()
    }

    /// A correct pair-success verifies; the reply drops the account key and carries a device
    /// signature that verifies under the companion identity.
    #[test]
    fn verifies_and_signs() {
        let primary = KeyPair::from_private_bytes([1; 32]);
        let companion = KeyPair::from_private_bytes([2; 32]);
        let secret = [7u8; 32];
        let v = verify_pair_success(
            &pair_success(&secret, &primary, companion.public(), true),
            &secret,
            companion.private(),
            &[0; 64],
        )
        .unwrap();
        assert_eq!(v.key_index, 3);
        assert_eq!(&v.account_key, primary.public());
        let reply = proto::AdvSignedDeviceIdentity::decode(v.reply.as_slice()).unwrap();
        assert!(reply.account_signature_key.is_none());
        let sig: [u8; 64] = reply.device_signature.unwrap().try_into().unwrap();
        let msg = device_signature_message(
            false,
            reply.details.as_deref().unwrap(),
            companion.public(),
            primary.public(),
        );
        assert!(xeddsa::verify(companion.public(), &msg, &sig));
    }

    /// A wrong ADV secret is an HMAC mismatch; a signature over the wrong prefix is a signature mismatch.
    #[test]
    fn rejects_bad_hmac_and_signature() {
        let primary = KeyPair::from_private_bytes([1; 32]);
        let companion = KeyPair::from_private_bytes([2; 32]);
        let ps = pair_success(&[7; 32], &primary, companion.public(), true);
        assert_eq!(
            verify_pair_success(&ps, &[8; 32], companion.private(), &[0; 64]),
            Err(AdvError::HmacMismatch)
        );
        let bad = pair_success(&[7; 32], &primary, companion.public(), false);
        assert_eq!(
            verify_pair_success(&bad, &[7; 32], companion.private(), &[0; 64]),
            Err(AdvError::SignatureMismatch)
        );
    }
}
