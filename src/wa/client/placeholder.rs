//! `<unavailable>` messages (view-once, click-to-WhatsApp ad leads, hosted fan-out): the server
//! gives a companion the stanza without any `<enc>`, and the content has to be asked from our
//! own primary phone with a peer `PLACEHOLDER_MESSAGE_RESEND` request
//! (`PeerDataOperationRequestMessage`, sent as a `category="peer"` message to our own device 0).
//! The phone answers with a `PEER_DATA_OPERATION_REQUEST_RESPONSE_MESSAGE` carrying the stored
//! `WebMessageInfo`, which is surfaced as a normal received message, once.
//!
//! References: whatsmeow `message.go` (`decryptMessages`: unavailable → request from phone, then
//! ack; `handlePlaceholderResendResponse`), `send.go` (`BuildUnavailableMessageRequest`);
//! Baileys `messages-recv` `requestPlaceholderResend` and `process-message` (the response).
//! No IO, no clock.

use std::collections::VecDeque;
use std::time::Instant;

use prost::Message as _;

use super::{Client, ReceivedMessage};
use crate::wa::jid::Jid;
use crate::wa::message::{InboundMessage, MessageContent, content_of};
use crate::wa::proto::{self, message::ProtocolMessage};

/// Placeholder requests awaiting the phone's answer (oldest dropped first).
const PENDING_KEPT: usize = 256;
/// Answered message ids remembered to drop a second answer.
const DONE_KEPT: usize = 1024;
/// `ProtocolMessage.Type` of a peer data operation request (waE2E).
const PDO_REQUEST: i32 = proto::message::protocol_message::Type::PeerDataOperationRequestMessage as i32;
/// `ProtocolMessage.Type` of its response (waE2E).
const PDO_RESPONSE: i32 =
    proto::message::protocol_message::Type::PeerDataOperationRequestResponseMessage as i32;
/// `PeerDataOperationRequestType.PLACEHOLDER_MESSAGE_RESEND` (waE2E).
const PLACEHOLDER_RESEND: i32 = proto::PeerDataOperationRequestType::PlaceholderMessageResend as i32;

/// Placeholder-resend requests in flight and answered, carried across connections with the
/// key cache (not persisted).
#[derive(Debug, Default)]
pub(crate) struct Placeholders {
    /// Asked, not answered: the message as the `<unavailable>` stanza described it.
    pending: VecDeque<ReceivedMessage>,
    /// Message ids already surfaced from an answer, oldest first.
    done: VecDeque<String>,
}

impl Placeholders {
    fn is_known(&self, id: &str) -> bool {
        self.done.iter().any(|d| d == id) || self.pending.iter().any(|p| p.id == id)
    }

    fn add_pending(&mut self, m: ReceivedMessage) {
        while self.pending.len() >= PENDING_KEPT {
            self.pending.pop_front();
        }
        self.pending.push_back(m);
    }

    fn take_pending(&mut self, id: &str) -> Option<ReceivedMessage> {
        let pos = self.pending.iter().position(|p| p.id == id)?;
        self.pending.remove(pos)
    }

    fn mark_done(&mut self, id: &str) {
        while self.done.len() >= DONE_KEPT {
            self.done.pop_front();
        }
        self.done.push_back(id.to_owned());
    }
}

/// The peer message that asks our phone for the content of message `key`.
pub(crate) fn placeholder_request(key: proto::MessageKey) -> proto::Message {
    use proto::peer_data_operation_request_message::PlaceholderMessageResendRequest;
    proto::Message {
        protocol_message: Some(Box::new(ProtocolMessage {
            r#type: Some(PDO_REQUEST),
            peer_data_operation_request_message: Some(proto::PeerDataOperationRequestMessage {
                peer_data_operation_request_type: Some(PLACEHOLDER_RESEND),
                placeholder_message_resend_request: vec![PlaceholderMessageResendRequest {
                    message_key: Some(key),
                }],
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The placeholder-resend answers in a decrypted message, as `(stanza id, WebMessageInfo)`;
/// empty for anything else (undecodable items are skipped).
pub(crate) fn placeholder_answers(message: &proto::Message) -> Vec<proto::WebMessageInfo> {
    let Some(resp) = message
        .protocol_message
        .as_deref()
        .filter(|p| p.r#type == Some(PDO_RESPONSE))
        .and_then(|p| p.peer_data_operation_request_response_message.as_ref())
        .filter(|r| r.peer_data_operation_request_type == Some(PLACEHOLDER_RESEND))
    else {
        return Vec::new();
    };
    resp.peer_data_operation_result
        .iter()
        .filter_map(|r| r.placeholder_message_resend_response.as_ref()?.web_message_info_bytes.as_deref())
        .filter_map(|b| match proto::WebMessageInfo::decode(b) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "placeholder answer does not decode; skipped");
                None
            }
        })
        .collect()
}

impl Client {
    /// An `<unavailable>` message (already acked): ask our phone for its content, once per id.
    pub(crate) fn request_placeholder(&mut self, now: Instant, msg: &InboundMessage, own: &Jid) {
        if msg.is_peer() || self.msg.keys.placeholders.is_known(&msg.id) {
            return;
        }
        let sender = msg.sender().clone();
        let from_me = sender.user == own.user && sender.server == own.server;
        let chat = if msg.is_group_like() {
            msg.from.clone()
        } else if from_me {
            msg.recipient.clone().unwrap_or_else(|| own.to_non_ad())
        } else {
            msg.from.to_non_ad()
        };
        let key = proto::MessageKey {
            remote_jid: Some(chat.to_string()),
            from_me: Some(from_me),
            id: Some(msg.id.clone()),
            participant: msg.is_group_like().then(|| sender.to_non_ad().to_string()),
        };
        self.msg.keys.placeholders.add_pending(ReceivedMessage {
            id: msg.id.clone(),
            chat: chat.to_string(),
            sender: sender.to_string(),
            from_me,
            text: None,
            timestamp: msg.t,
            offline: msg.offline,
            push_name: msg.notify.clone(),
        });
        tracing::info!(
            msg_id = %msg.id,
            kind = msg.unavailable.as_deref().unwrap_or_default(),
            "unavailable message; asking the phone"
        );
        self.send_peer(now, own, placeholder_request(key));
    }

    /// Turns the phone's placeholder answers into received messages: each message id at most
    /// once (a second answer is dropped), text only (like every other received message).
    pub(crate) fn placeholder_messages(
        &mut self,
        answers: Vec<proto::WebMessageInfo>,
    ) -> Vec<ReceivedMessage> {
        let mut out = Vec::new();
        for w in answers {
            let key = w.key.clone().unwrap_or_default();
            let Some(id) = key.id.clone().filter(|i| !i.is_empty()) else { continue };
            let places = &mut self.msg.keys.placeholders;
            if places.done.iter().any(|d| *d == id) {
                tracing::debug!(msg_id = %id, "placeholder answered again; dropped");
                continue;
            }
            let asked = places.take_pending(&id);
            places.mark_done(&id);
            let Some(MessageContent::Text(text)) = w.message.as_ref().map(content_of) else {
                tracing::debug!(msg_id = %id, "placeholder answer without text; not surfaced");
                continue;
            };
            let m = match asked {
                Some(mut m) => {
                    m.text = Some(text);
                    m
                }
                None => {
                    // Asked on an earlier run: what the answer itself says.
                    let chat = key.remote_jid.clone().unwrap_or_default();
                    let sender =
                        w.participant.clone().or(key.participant.clone()).unwrap_or_else(|| chat.clone());
                    ReceivedMessage {
                        id,
                        chat,
                        sender,
                        from_me: key.from_me.unwrap_or(false),
                        text: Some(text),
                        timestamp: w.message_timestamp.unwrap_or_default(),
                        offline: false,
                        push_name: w.push_name.clone(),
                    }
                }
            };
            out.push(m);
        }
        out
    }
}
