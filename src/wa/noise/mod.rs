//! WhatsApp's Noise XX variant (protocol/01-transport.md §4–5): the symmetric state built on
//! snow's primitives, the client and server handshake typestates, the server certificate chain
//! (verification and minting), XEdDSA signatures and the post-handshake transport ciphers.
//! Sans-IO: no sockets, no clock, no OS RNG; framing belongs to `wa::frame`.

mod cert;
mod cipher;
mod handshake;
mod keys;
mod symmetric;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod vectors;
pub mod xeddsa;

pub use cert::{
    CertChainBuilder, CertError, CertFacts, CertRole, TrustAnchor, VerifiedCertChain, decode_cert_chain,
    verify_cert_chain,
};
pub use cipher::{CipherError, TAG_LEN, Transport, TransportCipher};
pub use handshake::{
    ClientFinished, ClientHandshake, ExpectClientFinish, ExpectClientHello, ExpectServerHello,
    HandshakeError, ReceivedServerHello, SendClientFinish, ServerFinished, ServerHandshake,
};
pub(crate) use keys::ct_eq;
pub use keys::{KEY_LEN, KeyPair, PrivateKey};
