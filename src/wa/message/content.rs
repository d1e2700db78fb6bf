//! Plaintext framing of the `waE2E.Message` protobuf (protocol/11-messages.md §4–5): encode +
//! pad for sending, unpad + decode on receipt, the device-sent (DSM) wrapper for our own other
//! devices, the SKDM carrier for groups, and a typed view of the content ([`MessageContent`]).
//! Signal encryption happens elsewhere; randomness is injected.

use prost::Message as _;
use rand_core::CryptoRngCore;

use super::error::PlaintextError;
use super::padding::{pad, unpad};
use crate::wa::jid::Jid;
use crate::wa::proto::Message;
use crate::wa::proto::message::{DeviceSentMessage, ExtendedTextMessage, SenderKeyDistributionMessage};

/// What a decrypted message says, as far as this crate understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageContent {
    /// Text: `conversation` or `extendedTextMessage.text`.
    Text(String),
    /// Anything else (media, protocol messages, reactions, …); the raw protobuf is kept by the
    /// caller.
    Other,
}

/// A decoded plaintext: the content plus what the envelope said.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedMessage {
    /// The typed content (after unwrapping a DSM).
    pub content: MessageContent,
    /// `Some(chat)` when this was a device-sent copy of our own message to `chat`.
    pub device_sent_to: Option<String>,
    /// A sender-key distribution carried along (groups): `(group id, axolotl SKDM bytes)`.
    pub skdm: Option<(String, Vec<u8>)>,
    /// The full protobuf (before unwrapping), for callers that handle more kinds.
    pub message: Message,
}

/// A plain text message (`conversation`).
pub fn text_message(text: &str) -> Message {
    Message { conversation: Some(text.to_owned()), ..Default::default() }
}

/// The DSM our own other devices get for a 1:1 send to `destination`: the original message
/// wrapped in `deviceSentMessage`, its `messageContextInfo` copied to the outer level.
pub fn device_sent(message: &Message, destination: &Jid) -> Message {
    Message {
        device_sent_message: Some(Box::new(DeviceSentMessage {
            destination_jid: Some(destination.to_non_ad().to_string()),
            message: Some(Box::new(message.clone())),
            phash: None,
        })),
        message_context_info: message.message_context_info.clone(),
        ..Default::default()
    }
}

/// The pairwise payload that hands a device our sender key for `group`: a `Message` carrying
/// `senderKeyDistributionMessage` (the axolotl bytes include their version byte).
pub fn skdm_message(group: &Jid, axolotl_skdm: &[u8]) -> Message {
    Message {
        sender_key_distribution_message: Some(SenderKeyDistributionMessage {
            group_id: Some(group.to_string()),
            axolotl_sender_key_distribution_message: Some(axolotl_skdm.to_vec()),
        }),
        ..Default::default()
    }
}

/// Serialises and pads a message: the Signal plaintext for `pkmsg`/`msg`/`skmsg`.
pub fn encode_plaintext(message: &Message, rng: &mut impl CryptoRngCore) -> Vec<u8> {
    pad(message.encode_to_vec(), rng)
}

/// The typed content of a message (text or other), not looking into a DSM.
pub fn content_of(message: &Message) -> MessageContent {
    if let Some(text) = &message.conversation {
        return MessageContent::Text(text.clone());
    }
    match &message.extended_text_message {
        Some(ExtendedTextMessage { text: Some(text), .. }) => MessageContent::Text(text.clone()),
        _ => MessageContent::Other,
    }
}

/// Unpads and decodes a decrypted `<enc v="2">` plaintext; unwraps a DSM.
pub fn decode_plaintext(plaintext: &[u8]) -> Result<DecodedMessage, PlaintextError> {
    let body = unpad(plaintext)?;
    let message = Message::decode(body).map_err(|e| PlaintextError::Protobuf { reason: e.to_string() })?;
    let skdm = message
        .sender_key_distribution_message
        .as_ref()
        .and_then(|s| Some((s.group_id.clone()?, s.axolotl_sender_key_distribution_message.clone()?)));
    let (content, device_sent_to) = match &message.device_sent_message {
        Some(dsm) => (
            dsm.message.as_deref().map_or(MessageContent::Other, content_of),
            Some(dsm.destination_jid.clone().unwrap_or_default()),
        ),
        None => (content_of(&message), None),
    };
    Ok(DecodedMessage { content, device_sent_to, skdm, message })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::wa::message::padding::pad_with;

    /// conversation and extendedTextMessage both decode to Text; padding is stripped.
    #[test]
    fn text_kinds_decode() {
        let mut rng = StdRng::seed_from_u64(3);
        let d = decode_plaintext(&encode_plaintext(&text_message("hi"), &mut rng)).unwrap();
        assert_eq!(d.content, MessageContent::Text("hi".into()));
        assert_eq!(d.device_sent_to, None);
        let ext = Message {
            extended_text_message: Some(ExtendedTextMessage {
                text: Some("link".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = decode_plaintext(&pad_with(ext.encode_to_vec(), 16)).unwrap();
        assert_eq!(d.content, MessageContent::Text("link".into()));
        let d = decode_plaintext(&pad_with(Message::default().encode_to_vec(), 1)).unwrap();
        assert_eq!(d.content, MessageContent::Other);
    }

    /// A DSM unwraps to the inner text and names the destination chat.
    #[test]
    fn dsm_round_trip() {
        let peer: Jid = "15550000002:1@s.whatsapp.net".parse().unwrap();
        let dsm = device_sent(&text_message("yo"), &peer);
        let d = decode_plaintext(&pad_with(dsm.encode_to_vec(), 4)).unwrap();
        assert_eq!(d.content, MessageContent::Text("yo".into()));
        assert_eq!(d.device_sent_to.as_deref(), Some("15550000002@s.whatsapp.net"));
    }

    /// The SKDM carrier exposes group id and axolotl bytes.
    #[test]
    fn skdm_is_exposed() {
        let g: Jid = "120363000000000001@g.us".parse().unwrap();
        let d = decode_plaintext(&pad_with(skdm_message(&g, &[0x33, 1, 2]).encode_to_vec(), 2)).unwrap();
        assert_eq!(d.skdm, Some(("120363000000000001@g.us".into(), vec![0x33, 1, 2])));
        assert_eq!(d.content, MessageContent::Other);
    }

    /// Bad padding and bad protobufs give typed errors.
    #[test]
    fn errors_are_typed() {
        assert_eq!(decode_plaintext(&[]), Err(PlaintextError::Empty));
        assert!(matches!(decode_plaintext(&[0xff, 0xff, 1]), Err(PlaintextError::Protobuf { .. })));
    }

    proptest! {
        /// Arbitrary bytes never panic the plaintext decoder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_plaintext(&bytes);
        }
    }
}
