//! The QR string a companion shows for each `pair-device` ref, and its parser for the
//! simulated phone (protocol/04-pairing-login.md §1.2).
//!
//! Pure string/byte work; no IO, no timers (rotation is the client state machine's job).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Prefix of the current QR form (whatsmeow; WA Web).
pub const QR_PREFIX: &str = "https://wa.me/settings/linked_devices#";

/// The data encoded in a QR code.
#[derive(Clone, PartialEq, Eq)]
pub struct QrData {
    /// The server's opaque ref, as text.
    pub reference: String,
    /// The companion's Noise static public key.
    pub noise_pub: [u8; 32],
    /// The companion's Signal identity public key.
    pub identity_pub: [u8; 32],
    /// The companion's ADV secret (the HMAC key of pair-success). Secret.
    pub adv_secret: [u8; 32],
    /// The optional client-type character (5th field).
    pub client_type: Option<char>,
}

impl std::fmt::Debug for QrData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QrData")
            .field("reference", &self.reference)
            .field("client_type", &self.client_type)
            .finish_non_exhaustive()
    }
}

/// Why a QR string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// Fewer than 4 comma-separated fields. The caller passed something that is not a WA QR.
    #[error("qr string has {found} fields, need at least 4")]
    TooFewFields {
        /// Fields found.
        found: usize,
    },
    /// A key field is not base64 of 32 bytes.
    #[error("qr field {index} is not base64 of 32 bytes")]
    BadKey {
        /// 1-based field index.
        index: usize,
    },
}

impl QrData {
    /// Renders the current form: `<prefix><ref>,<noise>,<identity>,<adv>,<client_type>`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{QR_PREFIX}{},{},{},{}",
            self.reference,
            STANDARD.encode(self.noise_pub),
            STANDARD.encode(self.identity_pub),
            STANDARD.encode(self.adv_secret)
        );
        if let Some(c) = self.client_type {
            s.push(',');
            s.push(c);
        }
        s
    }

    /// Parses both the current form and Baileys 6.7.21's legacy 4-field form (anything up to
    /// `#` is dropped; the 5th field is optional).
    ///
    /// # Errors
    /// [`QrError`] when fields are missing or keys are not 32 bytes.
    pub fn parse(qr: &str) -> Result<Self, QrError> {
        let body = qr.rsplit_once('#').map_or(qr, |(_, b)| b).trim();
        let fields: Vec<&str> = body.split(',').collect();
        let [reference, noise, identity, adv, rest @ ..] = fields.as_slice() else {
            return Err(QrError::TooFewFields { found: fields.len() });
        };
        let key = |s: &str, index: usize| -> Result<[u8; 32], QrError> {
            STANDARD
                .decode(s.trim())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or(QrError::BadKey { index })
        };
        Ok(Self {
            reference: (*reference).to_owned(),
            noise_pub: key(noise, 2)?,
            identity_pub: key(identity, 3)?,
            adv_secret: key(adv, 4)?,
            client_type: rest.first().and_then(|s| s.chars().next()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// render → parse round-trips; the legacy Baileys form without prefix and client type parses too.
    #[test]
    fn roundtrip_and_legacy() {
        let q = QrData {
            reference: "2@abc/def+==".into(),
            noise_pub: [1; 32],
            identity_pub: [2; 32],
            adv_secret: [3; 32],
            client_type: Some('1'),
        };
        assert_eq!(QrData::parse(&q.render()).unwrap(), q);
        let legacy = format!(
            "{},{},{},{}",
            q.reference,
            STANDARD.encode([1u8; 32]),
            STANDARD.encode([2u8; 32]),
            STANDARD.encode([3u8; 32])
        );
        let p = QrData::parse(&legacy).unwrap();
        assert_eq!(p.client_type, None);
        assert_eq!(p.noise_pub, [1; 32]);
        assert_eq!(QrData::parse("a,b"), Err(QrError::TooFewFields { found: 2 }));
        assert_eq!(QrData::parse("a,b,c,d"), Err(QrError::BadKey { index: 2 }));
    }

    proptest! {
        /// Arbitrary strings never panic the parser.
        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            let _ = QrData::parse(&s);
        }
    }
}
