//! The double ratchet of one session state (protocol/10-signal.md §5): root and chain steps,
//! the DH-ratchet step on a new remote ratchet key, skipped message keys (bounded), message
//! encryption (AES-256-CBC + truncated HMAC) and decryption. Works on a state the caller owns;
//! callers run it on a copy so that a failure leaves their state untouched.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::SignalError;
use super::keys::{PublicKey, agree};
use super::primitives::{ChainKey, MessageKeys, aes_cbc_decrypt, aes_cbc_encrypt, hkdf};
use super::wire::SignalMessage;
use crate::wa::noise::{KeyPair, PrivateKey};

/// Largest forward jump of one decrypt within a chain (WA Web `signalFutureMessagesMax`,
/// libsignal-node's "Over 2000 messages into the future").
pub const MAX_FORWARD_JUMP: u32 = 2000;
/// Skipped message keys kept per receiving chain; the oldest are evicted first.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// Receiving chains kept per session state (whatsapp-rust `MAX_RECEIVER_CHAINS`).
pub const MAX_RECEIVING_CHAINS: usize = 5;

/// A skipped message-key seed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SkippedKey {
    pub(crate) index: u32,
    pub(crate) seed: [u8; 32],
}

/// A chain of the peer's ratchet key. `chain` is `None` once a later ratchet step closed it;
/// its skipped keys stay usable.
#[derive(Clone)]
pub(crate) struct ReceivingChain {
    pub(crate) their_key: PublicKey,
    pub(crate) chain: Option<ChainKey>,
    pub(crate) next_index: u32,
    pub(crate) skipped: VecDeque<SkippedKey>,
}

impl ReceivingChain {
    fn new(their_key: PublicKey, key: [u8; 32]) -> Self {
        Self { their_key, chain: Some(ChainKey { key, index: 0 }), next_index: 0, skipped: VecDeque::new() }
    }

    /// Derives and stores the seeds of `next_index..until` and moves the chain to `until`.
    fn skip_to(&mut self, until: u32) -> Result<(), SignalError> {
        if until <= self.next_index {
            return Ok(());
        }
        let Some(mut chain) = self.chain.take() else {
            return Err(SignalError::ChainClosed { counter: until });
        };
        if until - self.next_index > MAX_FORWARD_JUMP {
            let next = self.next_index;
            self.chain = Some(chain);
            return Err(SignalError::TooFarAhead { counter: until, next, max: MAX_FORWARD_JUMP });
        }
        while chain.index < until {
            self.skipped.push_back(SkippedKey { index: chain.index, seed: chain.message_seed() });
            chain = chain.next();
        }
        while self.skipped.len() > MAX_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
        self.next_index = until;
        self.chain = Some(chain);
        Ok(())
    }

    /// The message-key seed for `counter`, consuming it (each key decrypts once).
    fn take_seed(&mut self, counter: u32) -> Result<[u8; 32], SignalError> {
        if counter < self.next_index {
            let pos = self.skipped.iter().position(|k| k.index == counter);
            return match pos.and_then(|p| self.skipped.remove(p)) {
                Some(k) => Ok(k.seed),
                None => Err(SignalError::Duplicate { counter, next: self.next_index }),
            };
        }
        self.skip_to(counter)?;
        let Some(chain) = self.chain.take() else {
            return Err(SignalError::ChainClosed { counter });
        };
        let seed = chain.message_seed();
        self.chain = Some(chain.next());
        self.next_index = counter.saturating_add(1);
        Ok(seed)
    }
}

/// The prekey header an initiator repeats until its first reply arrives.
#[derive(Clone, Debug)]
pub(crate) struct PendingPreKey {
    pub(crate) pre_key_id: Option<u32>,
    pub(crate) signed_pre_key_id: u32,
    pub(crate) base_key: PublicKey,
}

/// One session state: everything needed to encrypt to and decrypt from one remote device.
#[derive(Clone)]
pub(crate) struct SessionState {
    pub(crate) local_identity: PublicKey,
    pub(crate) remote_identity: PublicKey,
    pub(crate) local_registration_id: u32,
    pub(crate) remote_registration_id: u32,
    pub(crate) root_key: [u8; 32],
    pub(crate) our_ratchet: KeyPair,
    pub(crate) their_ratchet: PublicKey,
    /// Chain of `our_ratchet`; its index is the next counter to send.
    pub(crate) sending: Option<ChainKey>,
    /// Last counter sent on the previous sending chain (libsignal's convention).
    pub(crate) previous_counter: u32,
    /// Oldest first, at most [`MAX_RECEIVING_CHAINS`].
    pub(crate) receiving: Vec<ReceivingChain>,
    pub(crate) pending_pre_key: Option<PendingPreKey>,
    /// The initiator's X3DH base key: identifies the session across both sides.
    pub(crate) base_key: PublicKey,
}

impl Drop for SessionState {
    fn drop(&mut self) {
        self.root_key.zeroize();
    }
}

/// Root step: `HKDF(salt = rootKey, ikm = DH, info = "WhisperRatchet", 64)` → (root, chain).
pub(crate) fn root_step(
    root: &[u8; 32],
    ours: &PrivateKey,
    theirs: &PublicKey,
) -> Result<([u8; 32], [u8; 32]), SignalError> {
    let mut dh = agree(ours, theirs, "ratchet key")?;
    let mut okm = [0u8; 64];
    hkdf(Some(root), &dh, b"WhisperRatchet", &mut okm);
    let (mut r, mut c) = ([0u8; 32], [0u8; 32]);
    r.copy_from_slice(&okm[..32]);
    c.copy_from_slice(&okm[32..]);
    dh.zeroize();
    okm.zeroize();
    Ok((r, c))
}

impl SessionState {
    /// Encrypts `plaintext` on the sending chain and advances it; returns the SignalMessage.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<SignalMessage, SignalError> {
        let chain = self.sending.take().ok_or(SignalError::NoSendingChain)?;
        let keys = MessageKeys::derive(&chain.message_seed());
        let ciphertext = aes_cbc_encrypt(&keys.cipher, &keys.iv, plaintext);
        let msg = SignalMessage::build(
            &keys.mac,
            &self.local_identity,
            &self.remote_identity,
            PublicKey::from_raw(*self.our_ratchet.public()),
            chain.index,
            self.previous_counter,
            ciphertext,
        );
        self.sending = Some(chain.next());
        Ok(msg)
    }

    /// Decrypts `msg`, stepping the ratchet first when it carries a new remote ratchet key.
    /// On error `self` may be half-updated: call this on a copy.
    pub(crate) fn decrypt(
        &mut self,
        msg: &SignalMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, SignalError> {
        if !self.receiving.iter().any(|c| c.their_key == msg.ratchet_key) {
            self.ratchet_step(msg.ratchet_key, msg.previous_counter, rng)?;
        }
        let chain = self
            .receiving
            .iter_mut()
            .find(|c| c.their_key == msg.ratchet_key)
            .ok_or(SignalError::ChainClosed { counter: msg.counter })?;
        let seed = chain.take_seed(msg.counter)?;
        let keys = MessageKeys::derive(&seed);
        if !msg.verify_mac(&keys.mac, &self.remote_identity, &self.local_identity) {
            return Err(SignalError::BadMac);
        }
        let plaintext = aes_cbc_decrypt(&keys.cipher, &keys.iv, &msg.ciphertext)?;
        self.pending_pre_key = None;
        Ok(plaintext)
    }

    /// DH-ratchet step for a new remote ratchet key: close the current receiving chain after
    /// keeping its keys up to `previous_counter`, derive the new receiving chain, then a fresh
    /// ratchet key pair and a new sending chain.
    fn ratchet_step(
        &mut self,
        their_new: PublicKey,
        previous_counter: u32,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), SignalError> {
        let current = self.their_ratchet;
        if let Some(prev) = self.receiving.iter_mut().find(|c| c.their_key == current)
            && prev.chain.is_some()
        {
            prev.skip_to(previous_counter.saturating_add(1))?;
            prev.chain = None;
        }
        let (root, recv) = root_step(&self.root_key, self.our_ratchet.private(), &their_new)?;
        self.receiving.push(ReceivingChain::new(their_new, recv));
        if self.receiving.len() > MAX_RECEIVING_CHAINS {
            let excess = self.receiving.len() - MAX_RECEIVING_CHAINS;
            self.receiving.drain(..excess);
        }
        if let Some(sent) = &self.sending {
            self.previous_counter = sent.index.saturating_sub(1);
        }
        self.our_ratchet = KeyPair::generate(rng);
        let (root, send) = root_step(&root, self.our_ratchet.private(), &their_new)?;
        self.root_key = root;
        self.sending = Some(ChainKey { key: send, index: 0 });
        self.their_ratchet = their_new;
        Ok(())
    }
}
