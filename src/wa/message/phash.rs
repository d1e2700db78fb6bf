//! The participant-list hash `phash` (protocol/11-messages.md §2.4):
//! `"2:" + base64(SHA-256(concat(sorted AD strings))[..6])` without padding, where the AD string
//! of a device is `user.agent:device@server` (agent 0). Pure function over device JIDs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha2::{Digest, Sha256};

use crate::wa::jid::Jid;

/// The AD string of a device: `user.0:device@server` (device 0 printed explicitly).
pub fn ad_string(device: &Jid) -> String {
    format!("{}.0:{}@{}", device.user, device.device, device.server.as_str())
}

/// The `phash` of a device set (order-independent).
pub fn participant_hash<'a>(devices: impl IntoIterator<Item = &'a Jid>) -> String {
    let mut ads: Vec<String> = devices.into_iter().map(ad_string).collect();
    ads.sort();
    let mut h = Sha256::new();
    for ad in &ads {
        h.update(ad.as_bytes());
    }
    let digest = h.finalize();
    format!("2:{}", STANDARD_NO_PAD.encode(&digest[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jid {
        s.parse().unwrap()
    }

    /// The published vectors (whatsapp-rust `participant_list_hash` tests) are reproduced.
    #[test]
    fn known_vectors() {
        assert_eq!(participant_hash([&j("5511999999999:3@s.whatsapp.net")]), "2:5s+YxCff");
        assert_eq!(participant_hash([&j("5511999999999@s.whatsapp.net")]), "2:RJWVxcMQ");
        let a = j("5511988887777:14@s.whatsapp.net");
        let b = j("7469250125917:21@s.whatsapp.net");
        assert_eq!(participant_hash([&a, &b]), "2:AAv/hwhn");
        assert_eq!(participant_hash([&b, &a]), "2:AAv/hwhn", "order-independent");
    }

    /// The AD string always names the agent and the device.
    #[test]
    fn ad_string_form() {
        assert_eq!(ad_string(&j("1@s.whatsapp.net")), "1.0:0@s.whatsapp.net");
        assert_eq!(ad_string(&j("1:7@lid")), "1.0:7@lid");
    }
}
