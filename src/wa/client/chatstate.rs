//! Typing indicators: `<chatstate to="{chat}"><composing/></chatstate>` (or `<paused/>`), the
//! stanza WA Web sends while the user types in a chat. Used by the host's outbox to show
//! "typing…" before a paced message. Sans-IO like the rest of the client: it only queues a frame.

use std::time::Instant;

use super::Client;
use super::send::{SendError, parse_recipient};
use crate::wa::binary::Node;
use crate::wa::jid::Jid;

/// The chatstate stanza for `chat`: `composing` while typing, `paused` when stopped.
pub(crate) fn chatstate_node(chat: &Jid, composing: bool) -> Node {
    let state = if composing { "composing" } else { "paused" };
    Node::new("chatstate").attr("to", chat.to_string()).children([Node::new(state)])
}

impl Client {
    /// Shows (`composing = true`) or clears the typing indicator in the chat with `to` (a phone
    /// number, user JID or group JID). Nothing is persisted; the server does not answer.
    ///
    /// # Errors
    /// [`SendError::NotLoggedIn`] off line; [`SendError::InvalidRecipient`] for a bad `to`.
    pub fn send_chatstate(&mut self, _now: Instant, to: &str, composing: bool) -> Result<(), SendError> {
        if !self.is_logged_in() {
            return Err(SendError::NotLoggedIn);
        }
        let chat = parse_recipient(to)?;
        self.send_node(&chatstate_node(&chat, composing));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;
    use crate::wa::client::{ClientConfig, Creds};

    /// The stanza has WA Web's shape: `chatstate` addressed to the chat with one state child.
    #[test]
    fn stanza_shape() {
        let chat = parse_recipient("15550001111").unwrap();
        let n = chatstate_node(&chat, true);
        assert_eq!(n.tag, "chatstate");
        assert_eq!(n.attr_str("to"), Some("15550001111@s.whatsapp.net"));
        assert!(n.child("composing").is_some());
        assert!(chatstate_node(&chat, false).child("paused").is_some());
    }

    /// Off line nothing is queued and the caller hears `NotLoggedIn`.
    #[test]
    fn refused_when_not_logged_in() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let creds = Creds::generate(&mut rng);
        #[expect(clippy::disallowed_methods, reason = "an arbitrary origin; the client never reads it")]
        let now = Instant::now();
        let mut c = Client::new(ClientConfig::default(), creds, Box::new(rng), now, 0);
        assert!(matches!(c.send_chatstate(now, "15550001111", true), Err(SendError::NotLoggedIn)));
        assert!(c.poll_output().is_none());
    }
}
