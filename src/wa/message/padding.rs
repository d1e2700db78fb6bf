//! WA plaintext padding (protocol/11-messages.md §4): N bytes each equal to N, N in 1..=16,
//! appended before Signal encryption and stripped after decryption (`<enc v="2">`).
//! Randomness is injected.

use rand_core::CryptoRngCore;

use super::error::PlaintextError;

/// Appends `n` padding bytes of value `n` (callers pass 1..=16; 0 is bumped to 1, larger values
/// are capped at 16).
pub fn pad_with(mut plaintext: Vec<u8>, n: u8) -> Vec<u8> {
    let n = n.clamp(1, 16);
    plaintext.extend(std::iter::repeat_n(n, usize::from(n)));
    plaintext
}

/// Appends random padding of 1..=16 bytes (as WA Web does: `(rand & 0x0f) + 1`).
pub fn pad(plaintext: Vec<u8>, rng: &mut impl CryptoRngCore) -> Vec<u8> {
    let mut b = [0u8; 1];
    rng.fill_bytes(&mut b);
    pad_with(plaintext, (b[0] & 0x0f) + 1)
}

/// Strips the padding: the last byte N (1..=len) says how many bytes to drop; all of them
/// must equal N.
pub fn unpad(plaintext: &[u8]) -> Result<&[u8], PlaintextError> {
    let Some(&pad) = plaintext.last() else {
        return Err(PlaintextError::Empty);
    };
    let n = usize::from(pad);
    if n == 0 || n > plaintext.len() {
        return Err(PlaintextError::BadPadLength { pad, len: plaintext.len() });
    }
    let (body, tail) = plaintext.split_at(plaintext.len() - n);
    if tail.iter().any(|b| *b != pad) {
        return Err(PlaintextError::BadPadBytes { pad });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// Random padding is 1..=16 bytes, covers the whole range, and unpads to the input.
    #[test]
    fn random_pad_range_and_round_trip() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut seen = [false; 17];
        for _ in 0..2000 {
            let padded = pad(b"hello".to_vec(), &mut rng);
            let n = padded.len() - 5;
            assert!((1..=16).contains(&n));
            seen[n] = true;
            assert_eq!(unpad(&padded).unwrap(), b"hello");
        }
        assert!(seen[1..].iter().all(|s| *s), "every length 1..=16 occurs");
    }

    /// Malformed padding gives the matching typed error.
    #[test]
    fn malformed_padding_is_typed() {
        assert_eq!(unpad(&[]), Err(PlaintextError::Empty));
        assert_eq!(unpad(&[1, 0]), Err(PlaintextError::BadPadLength { pad: 0, len: 2 }));
        assert_eq!(unpad(&[3, 3]), Err(PlaintextError::BadPadLength { pad: 3, len: 2 }));
        assert_eq!(unpad(&[9, 2, 1, 2]), Err(PlaintextError::BadPadBytes { pad: 2 }));
        assert_eq!(unpad(&[2, 2]).unwrap(), b"");
    }

    proptest! {
        /// Arbitrary bytes never panic the unpadder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = unpad(&bytes);
        }

        /// pad_with then unpad is the identity for every body and length.
        #[test]
        fn pad_unpad_identity(body in proptest::collection::vec(any::<u8>(), 0..64), n in 1u8..=16) {
            let padded = pad_with(body.clone(), n);
            prop_assert_eq!(unpad(&padded).unwrap(), &body[..]);
        }
    }
}
