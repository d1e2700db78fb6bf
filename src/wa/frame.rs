//! WhatsApp Web socket framing: the intro header (`WA 06 03`, optionally preceded by an `ED`
//! edge-routing pre-intro) and 3-byte big-endian length-prefixed frames.
//!
//! Framing is independent of WebSocket message boundaries: [`FrameDecoder`] treats inbound
//! binary messages as one byte stream and yields whole frames however they were split or
//! coalesced. No IO here, and nothing in this module decrypts.

use thiserror::Error;

/// Protocol magic sent after `WA` in the intro header (protocol/01-transport.md §2).
pub const WA_MAGIC: u8 = 6;
/// Binary token dictionary version negotiated by the intro header (protocol/02-binary-node.md §4.3).
pub const DICT_VERSION: u8 = 3;
/// The 4-byte intro header; also the Noise prologue.
pub const INTRO: [u8; 4] = [b'W', b'A', WA_MAGIC, DICT_VERSION];
/// Magic of the edge-routing pre-intro: `E D 00 01` (protocol/01-transport.md §2.1).
pub const EDGE_ROUTING_MAGIC: [u8; 4] = [b'E', b'D', 0, 1];
/// Size of the big-endian length prefix of every frame.
pub const LENGTH_PREFIX: usize = 3;
/// The largest payload a 3-byte length can describe (exclusive bound, 16 MiB).
pub const MAX_WIRE_FRAME: usize = 1 << 24;
/// Default largest accepted payload; matches the protocol's own ceiling.
pub const DEFAULT_MAX_FRAME: usize = MAX_WIRE_FRAME - 1;

/// Everything that can go wrong while framing or de-framing.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Our own bug or a caller error: the payload does not fit a 3-byte length.
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload length that was offered or announced.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The peer opened the stream with something other than `WA 06 03` or `ED 00 01`.
    #[error("bad intro header {found:02x?}")]
    BadIntro {
        /// The first bytes received.
        found: Vec<u8>,
    },
    /// The peer spoke a protocol version or token dictionary we do not implement.
    #[error("unsupported intro version {magic}/{dict}")]
    UnsupportedVersion {
        /// Magic byte (expected 6).
        magic: u8,
        /// Dictionary version (expected 3).
        dict: u8,
    },
    /// Caller error: edge routing info longer than a 3-byte length can describe.
    #[error("edge routing info of {len} bytes is too long")]
    RoutingTooLong {
        /// Length of the routing info.
        len: usize,
    },
}

/// Builds the bytes a client writes before its first frame: the optional `ED` pre-intro
/// carrying opaque routing info, then `WA 06 03`.
///
/// # Errors
/// [`FrameError::RoutingTooLong`] when `routing` does not fit a 3-byte length.
pub fn intro_header(routing: Option<&[u8]>) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(4 + routing.map_or(0, |r| 7 + r.len()));
    if let Some(r) = routing {
        if r.len() >= MAX_WIRE_FRAME {
            return Err(FrameError::RoutingTooLong { len: r.len() });
        }
        out.extend_from_slice(&EDGE_ROUTING_MAGIC);
        push_len(&mut out, r.len());
        out.extend_from_slice(r);
    }
    out.extend_from_slice(&INTRO);
    Ok(out)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Callers check len < 2^24, so the three low bytes carry the whole value.
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
}

/// Appends one length-prefixed frame carrying `payload` to `out`.
///
/// # Errors
/// [`FrameError::TooLarge`] when the payload needs more than 3 length bytes.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if payload.len() >= MAX_WIRE_FRAME {
        return Err(FrameError::TooLarge { len: payload.len(), max: DEFAULT_MAX_FRAME });
    }
    out.reserve(LENGTH_PREFIX + payload.len());
    push_len(out, payload.len());
    out.extend_from_slice(payload);
    Ok(())
}

/// Returns a new buffer with one frame carrying `payload`.
///
/// # Errors
/// As [`encode_frame`].
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame(payload, &mut out)?;
    Ok(out)
}

/// What the decoder expects at the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Server side: the client's intro (and optional `ED` pre-intro) comes first.
    ExpectIntro,
    /// Frames only.
    Frames,
}

/// Incremental de-framer. Feed it every inbound WebSocket binary message with
/// [`FrameDecoder::push`], then drain whole frames with [`FrameDecoder::next_frame`].
///
/// Memory is bounded: a frame announcing more than `max_frame` bytes is an error before any
/// of it is buffered beyond what the peer actually sent.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of unread data in `buf` (compacted lazily to avoid quadratic copying).
    start: usize,
    max_frame: usize,
    phase: Phase,
    routing: Option<Vec<u8>>,
}

impl FrameDecoder {
    /// A client-side decoder: the server never sends an intro, so frames start at byte 0.
    pub fn client(max_frame: usize) -> Self {
        Self::new(max_frame, Phase::Frames)
    }

    /// A server-side decoder: expects `WA 06 03` (optionally after an `ED` pre-intro) first.
    pub fn server(max_frame: usize) -> Self {
        Self::new(max_frame, Phase::ExpectIntro)
    }

    fn new(max_frame: usize, phase: Phase) -> Self {
        Self { buf: Vec::new(), start: 0, max_frame: max_frame.min(DEFAULT_MAX_FRAME), phase, routing: None }
    }

    /// Appends received bytes. Cheap; parsing happens in [`Self::next_frame`].
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The routing info of an `ED` pre-intro, if the client sent one (server side).
    pub fn edge_routing(&self) -> Option<&[u8]> {
        self.routing.as_deref()
    }

    /// True once the intro has been consumed (always true on the client side).
    pub fn intro_done(&self) -> bool {
        self.phase == Phase::Frames
    }

    /// The next whole frame's payload, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// A bad intro or an oversized frame. The stream cannot be resynchronised after an
    /// error; the caller closes the connection.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.phase == Phase::ExpectIntro && !self.read_intro()? {
            return Ok(None);
        }
        let avail = &self.buf[self.start..];
        let Some(&[a, b, c]) = avail.first_chunk::<LENGTH_PREFIX>() else {
            return Ok(None);
        };
        let len = (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
        if len > self.max_frame {
            return Err(FrameError::TooLarge { len, max: self.max_frame });
        }
        let Some(payload) = avail.get(LENGTH_PREFIX..LENGTH_PREFIX + len) else {
            return Ok(None);
        };
        let out = payload.to_vec();
        self.start += LENGTH_PREFIX + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(out))
    }

    /// Consumes the intro if complete. Returns whether frames may now be read.
    fn read_intro(&mut self) -> Result<bool, FrameError> {
        let avail = &self.buf[self.start..];
        let mut off = 0;
        // Validate as early as two bytes so garbage is rejected without waiting for more.
        match avail.get(..2) {
            None => {
                if let Some(&b0) = avail.first()
                    && b0 != b'W'
                    && b0 != b'E'
                {
                    return Err(FrameError::BadIntro { found: avail.to_vec() });
                }
                return Ok(false);
            }
            Some(b"ED") => {
                let Some(hdr) = avail.get(..7) else { return Ok(false) };
                if hdr[..4] != EDGE_ROUTING_MAGIC {
                    return Err(FrameError::BadIntro { found: hdr[..4].to_vec() });
                }
                let len = (usize::from(hdr[4]) << 16) | (usize::from(hdr[5]) << 8) | usize::from(hdr[6]);
                let Some(r) = avail.get(7..7 + len) else { return Ok(false) };
                self.routing = Some(r.to_vec());
                off = 7 + len;
            }
            Some(b"WA") => {}
            Some(other) => return Err(FrameError::BadIntro { found: other.to_vec() }),
        }
        let Some(intro) = avail.get(off..off + 4) else { return Ok(false) };
        if &intro[..2] != b"WA" {
            return Err(FrameError::BadIntro { found: intro.to_vec() });
        }
        if intro[2] != WA_MAGIC || intro[3] != DICT_VERSION {
            return Err(FrameError::UnsupportedVersion { magic: intro[2], dict: intro[3] });
        }
        self.start += off + 4;
        self.phase = Phase::Frames;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(d: &mut FrameDecoder) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame().expect("valid stream") {
            out.push(f);
        }
        out
    }

    /// The intro header and length prefix match protocol/01-transport.md §2–3.
    #[test]
    fn intro_and_prefix_layout() {
        assert_eq!(intro_header(None).unwrap(), vec![0x57, 0x41, 0x06, 0x03]);
        assert_eq!(
            intro_header(Some(&[0xaa, 0xbb])).unwrap(),
            vec![b'E', b'D', 0, 1, 0, 0, 2, 0xaa, 0xbb, b'W', b'A', 6, 3]
        );
        assert_eq!(frame(&[1, 2, 3]).unwrap(), vec![0, 0, 3, 1, 2, 3]);
        assert_eq!(frame(&vec![0; 0x01_02_03]).unwrap()[..3], [1, 2, 3]);
        assert!(matches!(frame(&vec![0; MAX_WIRE_FRAME]), Err(FrameError::TooLarge { .. })));
    }

    /// A server decoder consumes the intro (with and without ED) and then frames.
    #[test]
    fn server_reads_intro_forms() {
        for routing in [None, Some(&b"route"[..])] {
            let mut bytes = intro_header(routing).unwrap();
            encode_frame(b"hello", &mut bytes).unwrap();
            let mut d = FrameDecoder::server(1024);
            d.push(&bytes);
            assert_eq!(drain(&mut d), vec![b"hello".to_vec()]);
            assert_eq!(d.edge_routing(), routing);
        }
    }

    /// Garbage or a wrong version is rejected with a typed error, as early as possible.
    #[test]
    fn bad_intro_is_an_error() {
        let mut d = FrameDecoder::server(1024);
        d.push(b"GET / HTTP/1.1");
        assert!(matches!(d.next_frame(), Err(FrameError::BadIntro { .. })));
        let mut d = FrameDecoder::server(1024);
        d.push(&[b'W', b'A', 5, 3]);
        assert_eq!(d.next_frame(), Err(FrameError::UnsupportedVersion { magic: 5, dict: 3 }));
        let mut d = FrameDecoder::server(1024);
        d.push(b"X");
        assert!(d.next_frame().is_err());
    }

    /// An announced length above the limit fails before the body arrives.
    #[test]
    fn oversized_frame_rejected_early() {
        let mut d = FrameDecoder::client(10);
        d.push(&[0, 0, 11]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: 11, max: 10 }));
        let mut d = FrameDecoder::client(10);
        d.push(&[0, 0, 10]);
        assert_eq!(d.next_frame(), Ok(None));
    }

    /// Empty frames are legal and distinct from "need more bytes".
    #[test]
    fn empty_frame() {
        let mut d = FrameDecoder::client(10);
        d.push(&[0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Ok(Some(vec![])));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 2);
    }

    proptest! {
        /// Any split or coalescing of the byte stream yields the same frames in order.
        #[test]
        fn chunking_is_transparent(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
            cuts in proptest::collection::vec(0usize..4000, 0..20),
            server in any::<bool>(),
        ) {
            let mut stream = if server { intro_header(None).unwrap() } else { Vec::new() };
            for p in &payloads {
                encode_frame(p, &mut stream).unwrap();
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = if server { FrameDecoder::server(1 << 16) } else { FrameDecoder::client(1 << 16) };
            let mut got = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain(std::iter::once(stream.len())) {
                d.push(&stream[prev..c]);
                prev = c;
                got.extend(drain(&mut d));
            }
            prop_assert_eq!(got, payloads);
            prop_assert_eq!(d.buffered(), 0);
        }

        /// Arbitrary bytes never panic either decoder; they yield frames, "need more" or an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), server in any::<bool>()) {
            let mut d = if server { FrameDecoder::server(512) } else { FrameDecoder::client(512) };
            d.push(&bytes);
            for _ in 0..bytes.len() + 1 {
                match d.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
