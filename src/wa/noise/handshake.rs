//! WhatsApp's Noise XX handshake as typestates (protocol/01-transport.md §4.4): the client
//! (initiator) and the simulator's server (responder). Each step consumes its state and returns
//! the next one, so a failed step leaves nothing to misuse. Inputs and outputs are
//! `HandshakeMessage` protobuf bytes, i.e. frame payloads: framing (and the intro header) is
//! `wa::frame`'s job. Keys and randomness are injected; no clock, no IO.
//!
//! Certificate verification is a separate, explicit step on the client
//! ([`ReceivedServerHello::verify`]): there is no runtime way to skip it.

use prost::Message as _;
use rand_core::CryptoRngCore;

use super::cert::{CertError, TrustAnchor, VerifiedCertChain, decode_cert_chain, verify_cert_chain};
use super::cipher::{CipherError, Transport, TransportCipher};
use super::keys::{KEY_LEN, KeyPair};
use super::symmetric::{NOISE_XX_NAME, SymmetricState};
use crate::wa::proto::handshake_message::{ClientFinish, ClientHello, ServerHello};
use crate::wa::proto::{CertChain, HandshakeMessage};

/// Why a handshake step failed. The connection must be closed; the state is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer sent bytes that are not a `HandshakeMessage` protobuf (peer misbehaved).
    #[error("{message} is not a valid handshake protobuf")]
    Decode {
        /// Which message we expected.
        message: &'static str,
        /// The protobuf error.
        #[source]
        source: prost::DecodeError,
    },
    /// A field the step needs is absent (peer misbehaved or speaks another handshake).
    #[error("{field} is missing")]
    MissingField {
        /// Dotted field path.
        field: &'static str,
    },
    /// A key field has the wrong length (peer misbehaved).
    #[error("{field} is {actual} bytes, expected {expected}")]
    BadLength {
        /// Dotted field path.
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Received length.
        actual: usize,
    },
    /// A peer key is a low-order point, giving an all-zero shared secret (peer misbehaved).
    #[error("{field} is a low-order point")]
    LowOrderKey {
        /// Dotted field path.
        field: &'static str,
    },
    /// An encrypted field did not decrypt (wrong keys, tampering, or a peer that is not
    /// speaking WA's handshake).
    #[error("{field} did not decrypt")]
    Decrypt {
        /// Dotted field path.
        field: &'static str,
        /// The AEAD error.
        #[source]
        source: CipherError,
    },
    /// Encrypting our own field failed (an internal bug: handshake counters never get near 2^32).
    #[error("encrypting {field} failed")]
    Encrypt {
        /// Dotted field path.
        field: &'static str,
        /// The AEAD error.
        #[source]
        source: CipherError,
    },
    /// The server's certificate chain was rejected (untrusted or wrong server: do not retry
    /// blindly).
    #[error("server certificate chain rejected")]
    Certificate {
        /// The failed check.
        #[source]
        source: CertError,
    },
}

fn decode(bytes: &[u8], message: &'static str) -> Result<HandshakeMessage, HandshakeError> {
    HandshakeMessage::decode(bytes).map_err(|source| HandshakeError::Decode { message, source })
}

fn key32(bytes: Option<&[u8]>, field: &'static str) -> Result<[u8; KEY_LEN], HandshakeError> {
    let bytes = bytes.ok_or(HandshakeError::MissingField { field })?;
    <[u8; KEY_LEN]>::try_from(bytes).map_err(|_| HandshakeError::BadLength {
        field,
        expected: KEY_LEN,
        actual: bytes.len(),
    })
}

/// `MixKey(DH(ours, theirs))`, refusing an all-zero shared secret.
fn mix_dh(
    sym: &mut SymmetricState,
    ours: &KeyPair,
    theirs: &[u8; KEY_LEN],
    field: &'static str,
) -> Result<(), HandshakeError> {
    let shared = ours.private().agree(theirs).ok_or(HandshakeError::LowOrderKey { field })?;
    sym.mix_key(&shared[..]);
    Ok(())
}

fn open(sym: &mut SymmetricState, ct: Option<&[u8]>, field: &'static str) -> Result<Vec<u8>, HandshakeError> {
    let ct = ct.ok_or(HandshakeError::MissingField { field })?;
    sym.decrypt_and_hash(ct).map_err(|source| HandshakeError::Decrypt { field, source })
}

fn seal(sym: &mut SymmetricState, pt: &[u8], field: &'static str) -> Result<Vec<u8>, HandshakeError> {
    sym.encrypt_and_hash(pt).map_err(|source| HandshakeError::Encrypt { field, source })
}

// ---------------------------------------------------------------- client (initiator)

/// Entry point of the client side.
#[derive(Debug)]
pub struct ClientHandshake;

impl ClientHandshake {
    /// Starts the handshake: returns the state waiting for the server hello and the
    /// `HandshakeMessage{clientHello}` bytes to send (frame them after the intro header).
    /// `prologue` is the 4-byte intro header `WA 06 03` (not an edge-routing pre-intro).
    pub fn start(noise_static: KeyPair, ephemeral: KeyPair, prologue: &[u8]) -> (ExpectServerHello, Vec<u8>) {
        let mut sym = SymmetricState::new(NOISE_XX_NAME);
        sym.mix_hash(prologue);
        sym.mix_hash(ephemeral.public());
        let hello = HandshakeMessage {
            client_hello: Some(ClientHello {
                ephemeral: Some(ephemeral.public().to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        };
        (ExpectServerHello { sym, noise_static, ephemeral }, hello.encode_to_vec())
    }

    /// Like [`ClientHandshake::start`], drawing the ephemeral key from `rng`.
    pub fn start_with_rng(
        noise_static: KeyPair,
        prologue: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> (ExpectServerHello, Vec<u8>) {
        Self::start(noise_static, KeyPair::generate(rng), prologue)
    }
}

/// Client state: client hello sent, waiting for the server hello.
pub struct ExpectServerHello {
    sym: SymmetricState,
    noise_static: KeyPair,
    ephemeral: KeyPair,
}

impl std::fmt::Debug for ExpectServerHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpectServerHello").finish_non_exhaustive()
    }
}

impl ExpectServerHello {
    /// Processes the server hello frame payload: decrypts the server static key and the
    /// certificate chain. The chain is *not* verified yet; call [`ReceivedServerHello::verify`].
    ///
    /// # Errors
    /// Decode, missing-field, length, low-order-key, decrypt and certificate-decode errors.
    pub fn handle(mut self, payload: &[u8]) -> Result<ReceivedServerHello, HandshakeError> {
        let msg = decode(payload, "server hello")?;
        let hello = msg.server_hello.ok_or(HandshakeError::MissingField { field: "server_hello" })?;
        let server_ephemeral = key32(hello.ephemeral.as_deref(), "server_hello.ephemeral")?;
        if hello.r#static.is_none() {
            return Err(HandshakeError::MissingField { field: "server_hello.static" });
        }
        if hello.payload.is_none() {
            return Err(HandshakeError::MissingField { field: "server_hello.payload" });
        }
        let sym = &mut self.sym;
        sym.mix_hash(&server_ephemeral);
        mix_dh(sym, &self.ephemeral, &server_ephemeral, "server_hello.ephemeral")?;
        let server_static = open(sym, hello.r#static.as_deref(), "server_hello.static")?;
        let server_static = key32(Some(&server_static), "server_hello.static (decrypted)")?;
        mix_dh(sym, &self.ephemeral, &server_static, "server_hello.static (decrypted)")?;
        let cert_bytes = open(sym, hello.payload.as_deref(), "server_hello.payload")?;
        let cert_chain =
            decode_cert_chain(&cert_bytes).map_err(|source| HandshakeError::Certificate { source })?;
        Ok(ReceivedServerHello {
            sym: self.sym,
            noise_static: self.noise_static,
            server_ephemeral,
            server_static,
            cert_chain,
        })
    }

    /// [`ExpectServerHello::handle`] followed by [`ReceivedServerHello::verify`].
    ///
    /// # Errors
    /// As both steps.
    pub fn handle_and_verify(
        self,
        payload: &[u8],
        anchor: &TrustAnchor,
        now_unix: u64,
    ) -> Result<SendClientFinish, HandshakeError> {
        self.handle(payload)?.verify(anchor, now_unix)
    }
}

/// Client state: server hello decrypted, certificate chain not yet verified.
pub struct ReceivedServerHello {
    sym: SymmetricState,
    noise_static: KeyPair,
    server_ephemeral: [u8; KEY_LEN],
    server_static: [u8; KEY_LEN],
    cert_chain: CertChain,
}

impl std::fmt::Debug for ReceivedServerHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedServerHello").field("cert_chain", &self.cert_chain).finish_non_exhaustive()
    }
}

impl ReceivedServerHello {
    /// The server's static public key (decrypted).
    pub fn server_static(&self) -> &[u8; KEY_LEN] {
        &self.server_static
    }

    /// The server's certificate chain as received (unverified).
    pub fn cert_chain(&self) -> &CertChain {
        &self.cert_chain
    }

    /// Verifies the chain against `anchor` at `now_unix` (all nine checks of
    /// protocol/01-transport.md §5.4) and moves on to sending the client finish.
    ///
    /// # Errors
    /// [`HandshakeError::Certificate`] with the failed check.
    pub fn verify(self, anchor: &TrustAnchor, now_unix: u64) -> Result<SendClientFinish, HandshakeError> {
        let verified = verify_cert_chain(&self.cert_chain, &self.server_static, anchor, now_unix)
            .map_err(|source| HandshakeError::Certificate { source })?;
        Ok(self.into_finish(Some(verified)))
    }

    /// Skips certificate verification. Only for the Baileys golden vector, whose chain carries
    /// all-zero signatures; compiled into tests only.
    #[cfg(test)]
    pub(crate) fn accept_unverified_for_vectors(self) -> SendClientFinish {
        self.into_finish(None)
    }

    fn into_finish(self, verified: Option<VerifiedCertChain>) -> SendClientFinish {
        SendClientFinish {
            sym: self.sym,
            noise_static: self.noise_static,
            server_ephemeral: self.server_ephemeral,
            verified,
        }
    }
}

/// Client state: server authenticated, ready to send the client finish.
pub struct SendClientFinish {
    sym: SymmetricState,
    noise_static: KeyPair,
    server_ephemeral: [u8; KEY_LEN],
    /// `None` only via the test-only vector escape.
    verified: Option<VerifiedCertChain>,
}

impl std::fmt::Debug for SendClientFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendClientFinish").field("verified", &self.verified).finish_non_exhaustive()
    }
}

impl SendClientFinish {
    /// The verified certificate chain (validity windows, serials).
    pub fn verified_chain(&self) -> Option<&VerifiedCertChain> {
        self.verified.as_ref()
    }

    /// Encrypts our static key and `client_payload` (serialized `ClientPayload`) into the
    /// `HandshakeMessage{clientFinish}` bytes and derives the transport ciphers.
    ///
    /// # Errors
    /// [`HandshakeError::Encrypt`] (internal bug only).
    pub fn finish(mut self, client_payload: &[u8]) -> Result<ClientFinished, HandshakeError> {
        let sym = &mut self.sym;
        let enc_static = seal(sym, self.noise_static.public(), "client_finish.static")?;
        mix_dh(sym, &self.noise_static, &self.server_ephemeral, "server_hello.ephemeral")?;
        let enc_payload = seal(sym, client_payload, "client_finish.payload")?;
        let message = HandshakeMessage {
            client_finish: Some(ClientFinish {
                r#static: Some(enc_static),
                payload: Some(enc_payload),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (k1, k2) = self.sym.split();
        Ok(ClientFinished {
            message: message.encode_to_vec(),
            transport: Transport { send: TransportCipher::new(&k1), recv: TransportCipher::new(&k2) },
            verified: self.verified,
        })
    }
}

/// The client's handshake result.
#[derive(Debug)]
pub struct ClientFinished {
    /// `HandshakeMessage{clientFinish}` bytes to send as the next frame payload.
    pub message: Vec<u8>,
    /// Client write (k1) and read (k2) ciphers.
    pub transport: Transport,
    /// The verified certificate chain (`None` only in the golden-vector test).
    pub verified: Option<VerifiedCertChain>,
}

// ---------------------------------------------------------------- server (responder)

/// Entry point of the server (simulator) side.
#[derive(Debug)]
pub struct ServerHandshake;

impl ServerHandshake {
    /// Prepares a responder with its long-term `static_key`, a fresh `ephemeral` key, the
    /// serialized `CertChain` certifying `static_key`, and the prologue (`WA 06 03`).
    pub fn start(
        static_key: KeyPair,
        ephemeral: KeyPair,
        cert_chain: Vec<u8>,
        prologue: &[u8],
    ) -> ExpectClientHello {
        let mut sym = SymmetricState::new(NOISE_XX_NAME);
        sym.mix_hash(prologue);
        ExpectClientHello { sym, static_key, ephemeral, cert_chain }
    }

    /// Like [`ServerHandshake::start`], drawing the ephemeral key from `rng`.
    pub fn start_with_rng(
        static_key: KeyPair,
        cert_chain: Vec<u8>,
        prologue: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> ExpectClientHello {
        Self::start(static_key, KeyPair::generate(rng), cert_chain, prologue)
    }
}

/// Server state: waiting for the client hello.
pub struct ExpectClientHello {
    sym: SymmetricState,
    static_key: KeyPair,
    ephemeral: KeyPair,
    cert_chain: Vec<u8>,
}

impl std::fmt::Debug for ExpectClientHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpectClientHello").finish_non_exhaustive()
    }
}

impl ExpectClientHello {
    /// Processes the client hello payload (after the intro header) and returns the next state
    /// plus the `HandshakeMessage{serverHello}` bytes to send. Only XX is spoken: `static` and
    /// `payload` of an IK-style hello are ignored, which makes an IK client fall back.
    ///
    /// # Errors
    /// Decode, missing-field, length (ephemeral must be 32 bytes) and low-order-key errors.
    pub fn handle(mut self, payload: &[u8]) -> Result<(ExpectClientFinish, Vec<u8>), HandshakeError> {
        let msg = decode(payload, "client hello")?;
        let hello = msg.client_hello.ok_or(HandshakeError::MissingField { field: "client_hello" })?;
        let client_ephemeral = key32(hello.ephemeral.as_deref(), "client_hello.ephemeral")?;
        let sym = &mut self.sym;
        sym.mix_hash(&client_ephemeral);
        sym.mix_hash(self.ephemeral.public());
        mix_dh(sym, &self.ephemeral, &client_ephemeral, "client_hello.ephemeral")?;
        let enc_static = seal(sym, self.static_key.public(), "server_hello.static")?;
        mix_dh(sym, &self.static_key, &client_ephemeral, "client_hello.ephemeral")?;
        let enc_cert = seal(sym, &self.cert_chain, "server_hello.payload")?;
        let reply = HandshakeMessage {
            server_hello: Some(ServerHello {
                ephemeral: Some(self.ephemeral.public().to_vec()),
                r#static: Some(enc_static),
                payload: Some(enc_cert),
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok((ExpectClientFinish { sym: self.sym, ephemeral: self.ephemeral }, reply.encode_to_vec()))
    }
}

/// Server state: server hello sent, waiting for the client finish.
pub struct ExpectClientFinish {
    sym: SymmetricState,
    ephemeral: KeyPair,
}

impl std::fmt::Debug for ExpectClientFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpectClientFinish").finish_non_exhaustive()
    }
}

impl ExpectClientFinish {
    /// Processes the client finish payload: decrypts the client's static key and its
    /// `ClientPayload` bytes (left to the caller to decode) and derives the transport ciphers.
    ///
    /// # Errors
    /// Decode, missing-field, length, low-order-key and decrypt errors.
    pub fn handle(mut self, payload: &[u8]) -> Result<ServerFinished, HandshakeError> {
        let msg = decode(payload, "client finish")?;
        let finish = msg.client_finish.ok_or(HandshakeError::MissingField { field: "client_finish" })?;
        if finish.payload.is_none() {
            return Err(HandshakeError::MissingField { field: "client_finish.payload" });
        }
        let sym = &mut self.sym;
        let client_static = open(sym, finish.r#static.as_deref(), "client_finish.static")?;
        let client_static = key32(Some(&client_static), "client_finish.static (decrypted)")?;
        mix_dh(sym, &self.ephemeral, &client_static, "client_finish.static (decrypted)")?;
        let client_payload = open(sym, finish.payload.as_deref(), "client_finish.payload")?;
        let (k1, k2) = self.sym.split();
        Ok(ServerFinished {
            client_static,
            client_payload,
            transport: Transport { send: TransportCipher::new(&k2), recv: TransportCipher::new(&k1) },
        })
    }
}

/// The server's handshake result.
#[derive(Debug)]
pub struct ServerFinished {
    /// The client's static (noise) public key, authenticated by the handshake.
    pub client_static: [u8; KEY_LEN],
    /// The decrypted, still serialized `ClientPayload`.
    pub client_payload: Vec<u8>,
    /// Server write (k2) and read (k1) ciphers.
    pub transport: Transport,
}

#[cfg(test)]
mod tests;
