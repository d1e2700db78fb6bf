//! The dictionary-version-3 token tables (protocol/02-binary-node.md §4.3): index → string for
//! the decoder and string → token for the encoder. The tables are the committed text files under
//! `tokens/` (line k is index k-1); the reverse map is built once, on first use. Nothing here
//! touches the wire format beyond the token numbers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Number of entries of the single-byte table, including the unused index 0.
const SINGLE_LEN: usize = 236;
/// Number of entries of each double-byte table.
const DOUBLE_LEN: usize = 256;

const SINGLE_SRC: &str = include_str!("tokens/tokens-single.txt");
const DOUBLE_SRC: [&str; 4] = [
    include_str!("tokens/tokens-double-0.txt"),
    include_str!("tokens/tokens-double-1.txt"),
    include_str!("tokens/tokens-double-2.txt"),
    include_str!("tokens/tokens-double-3.txt"),
];

/// Where a string sits in the dictionaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// Single-byte token; index 0 is the empty string (written as `LIST_EMPTY`, as Baileys does).
    Single(u8),
    /// Double-byte token: dictionary 0–3 and index within it.
    Double(u8, u8),
}

/// A small multiply-rotate hasher: token lookups hash short strings on every encode, and
/// SipHash's DoS resistance buys nothing for a fixed, public key set.
#[derive(Default)]
struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

struct Tables {
    single: Vec<&'static str>,
    double: [Vec<&'static str>; 4],
    lookup: HashMap<&'static str, Token, BuildHasherDefault<TokenHasher>>,
    /// Longest token, so longer strings skip the hash lookup.
    max_len: usize,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let single: Vec<&'static str> = SINGLE_SRC.lines().collect();
        let double = DOUBLE_SRC.map(|src| src.lines().collect::<Vec<&'static str>>());
        let mut lookup = HashMap::with_capacity_and_hasher(SINGLE_LEN + 4 * DOUBLE_LEN, Default::default());
        // Double tokens first so that a single token wins if a string were ever in both
        // (none is today; the encoder preference order is single, then double).
        for (d, table) in (0u8..).zip(double.iter()) {
            for (i, tok) in (0u8..=255).zip(table.iter()) {
                lookup.entry(*tok).or_insert(Token::Double(d, i));
            }
        }
        for (i, tok) in (0u8..=255).zip(single.iter()) {
            lookup.insert(*tok, Token::Single(i));
        }
        let max_len = lookup.keys().map(|k| k.len()).max().unwrap_or(0);
        Tables { single, double, lookup, max_len }
    })
}

/// The token for `s`, if it has one. `""` maps to `Single(0)`, mirroring Baileys 6.7.21, which
/// finds the empty string at index 0 and writes `0x00`.
pub(crate) fn lookup(s: &str) -> Option<Token> {
    let t = tables();
    if s.len() > t.max_len {
        return None;
    }
    t.lookup.get(s).copied()
}

/// The single-byte token at `index` (1–235 are valid; 0 is `""`).
pub(crate) fn single(index: u8) -> Option<&'static str> {
    tables().single.get(usize::from(index)).copied()
}

/// The token at `index` of double-byte dictionary `dict` (0–3).
pub(crate) fn double(dict: u8, index: u8) -> Option<&'static str> {
    tables().double.get(usize::from(dict))?.get(usize::from(index)).copied()
}

/// Number of single-byte entries, so the decoder knows where tokens end and tags begin.
pub(crate) fn single_len() -> usize {
    tables().single.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The committed tables are the dictionary-v3 files (sizes and SHA-256 from protocol §4.3).
    #[test]
    fn tables_match_protocol_digests() {
        let digests = [
            (SINGLE_SRC, "34af7d0ba6b51a2a59091374163c9fc6be56ee7957781d6ec4cda91c4ae09cc0"),
            (DOUBLE_SRC[0], "9caea4f9c169762e49bbe19e6af8cf9a04a9e0ebb76584f202ebd7b59c87d769"),
            (DOUBLE_SRC[1], "7c99ed9e1ae1c8a3274dc560664a5d7b808396ba3aaafe5b11da8e838de6750b"),
            (DOUBLE_SRC[2], "ee7425b329885fcf5aaaf4a184f30e1fed21fcf0bbdcf98bd8cef1fe3dd66803"),
            (DOUBLE_SRC[3], "056e3944ba065b904089f490a3f0fc588248825e3d84768c849436515fc7661a"),
        ];
        for (src, want) in digests {
            assert_eq!(hex::encode(Sha256::digest(src.as_bytes())), want);
        }
        assert_eq!(single_len(), SINGLE_LEN);
        for d in 0..4 {
            assert_eq!(tables().double[d].len(), DOUBLE_LEN);
        }
        assert_eq!(tables().lookup.len(), SINGLE_LEN + 4 * DOUBLE_LEN, "no token appears twice");
    }

    /// The handy indices of protocol §4.3 resolve both ways.
    #[test]
    fn handy_indices() {
        let singles = [
            ("xmlstreamend", 2),
            ("s.whatsapp.net", 3),
            ("type", 4),
            ("id", 8),
            ("to", 17),
            ("xmlns", 22),
            ("iq", 25),
            ("t", 26),
            ("success", 76),
            ("ping", 86),
            ("w:p", 87),
            ("stream:error", 157),
            ("device-identity", 230),
        ];
        for (s, i) in singles {
            assert_eq!(lookup(s), Some(Token::Single(i)), "{s}");
            assert_eq!(single(i), Some(s));
        }
        let doubles = [
            ("failure", 2, 60),
            ("conflict", 0, 14),
            ("replaced", 0, 17),
            ("active", 0, 1),
            ("pair-device", 1, 238),
        ];
        for (s, d, i) in doubles {
            assert_eq!(lookup(s), Some(Token::Double(d, i)), "{s}");
            assert_eq!(double(d, i), Some(s));
        }
        for raw in ["pair-success", "pair-device-sign", "md", "ib", "device_removed"] {
            assert_eq!(lookup(raw), None, "{raw}");
        }
        assert_eq!(lookup(""), Some(Token::Single(0)));
        assert_eq!(double(4, 0), None);
    }
}
