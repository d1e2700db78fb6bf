//! Message ids in the WA-Web format (protocol/11-messages.md §1): `"3EB0"` + 18 upper-hex
//! characters of SHA-256(u64_be(unix seconds) ‖ own user ‖ "@c.us" ‖ 16 random bytes).
//! Time and randomness are injected; nothing here reads a clock or the OS RNG.

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

/// The fixed prefix of WA-Web message ids.
pub const MESSAGE_ID_PREFIX: &str = "3EB0";

/// The id for `unix_secs`, our user part (`None` before login) and 16 random bytes.
pub fn message_id_from(unix_secs: u64, own_user: Option<&str>, random: &[u8; 16]) -> String {
    let mut h = Sha256::new();
    h.update(unix_secs.to_be_bytes());
    if let Some(user) = own_user {
        h.update(user.as_bytes());
        h.update(b"@c.us");
    }
    h.update(random);
    let digest = h.finalize();
    let mut id = String::with_capacity(22);
    id.push_str(MESSAGE_ID_PREFIX);
    for b in digest.iter().take(9) {
        id.push_str(&format!("{b:02X}"));
    }
    id
}

/// A fresh id from the injected `rng` (16 random bytes, see [`message_id_from`]).
pub fn new_message_id(unix_secs: u64, own_user: Option<&str>, rng: &mut impl CryptoRngCore) -> String {
    let mut random = [0u8; 16];
    rng.fill_bytes(&mut random);
    message_id_from(unix_secs, own_user, &random)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// Ids are 22 characters, start with 3EB0 and are upper hex, like the transcript's ids.
    #[test]
    fn shape_matches_transcript_ids() {
        let id = message_id_from(1_795_436_576, Some("15550000001"), &[7; 16]);
        assert_eq!(id.len(), "3EB0CA77CE5D0FA9DA0A18".len());
        assert!(id.starts_with("3EB0"));
        assert!(id[4..].chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
    }

    /// The id is the SHA-256 prefix of the documented preimage (recomputed independently).
    #[test]
    fn hash_preimage_is_as_documented() {
        let mut pre = 1_795_436_576u64.to_be_bytes().to_vec();
        pre.extend_from_slice(b"155@c.us");
        pre.extend_from_slice(&[1; 16]);
        let d = Sha256::digest(&pre);
        let want = format!("3EB0{}", hex::encode_upper(&d[..9]));
        assert_eq!(message_id_from(1_795_436_576, Some("155"), &[1; 16]), want);
        assert_ne!(message_id_from(1_795_436_576, None, &[1; 16]), want, "user part is hashed");
    }

    /// Different randomness gives different ids (uniqueness comes from the injected rng).
    #[test]
    fn rng_makes_ids_unique() {
        let mut rng = StdRng::seed_from_u64(1);
        let a = new_message_id(5, Some("1"), &mut rng);
        let b = new_message_id(5, Some("1"), &mut rng);
        assert_ne!(a, b);
    }
}
