//! The simulator's group registry entry and its `w:g2` `<group>` node (create result and
//! metadata answer, shaped as in protocol/14-baileys-messaging-transcript.md).
//!
//! Data only; no routing here.

use crate::wa::binary::Node;
use crate::wa::jid::{Jid, Server};

/// One group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The group id (digits, the user part of `id@g.us`).
    pub(crate) id: String,
    /// Subject.
    pub(crate) subject: String,
    /// Phone of the creator.
    pub(crate) creator: String,
    /// Unix seconds of creation.
    pub(crate) creation: u64,
    /// Member phones (creator first), no duplicates.
    pub(crate) members: Vec<String>,
}

impl Group {
    /// `id@g.us`.
    pub(crate) fn jid(&self) -> Jid {
        Jid::new(self.id.clone(), Server::Group)
    }

    /// True if `phone` is a member.
    pub(crate) fn has(&self, phone: &str) -> bool {
        self.members.iter().any(|m| m == phone)
    }

    /// `<group id creator creation subject s_t s_o size addressing_mode="pn"><participant …/></group>`.
    pub(crate) fn node(&self) -> Node {
        let user = |p: &str| Jid::new(p, Server::User);
        let participants = self.members.iter().map(|m| {
            let n = Node::new("participant").attr("jid", user(m));
            if *m == self.creator { n.attr("type", "superadmin") } else { n }
        });
        Node::new("group")
            .attr("id", self.id.as_str())
            .attr("creator", user(&self.creator))
            .attr("creation", self.creation.to_string())
            .attr("subject", self.subject.as_str())
            .attr("s_t", self.creation.to_string())
            .attr("s_o", user(&self.creator))
            .attr("size", self.members.len().to_string())
            .attr("addressing_mode", "pn")
            .children(participants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group node lists every member, the creator as superadmin.
    #[test]
    fn group_node_shape() {
        let g = Group {
            id: "120363000000000001".into(),
            subject: "S".into(),
            creator: "1555".into(),
            creation: 7,
            members: vec!["1555".into(), "1666".into()],
        };
        let n = g.node();
        assert_eq!(g.jid().to_string(), "120363000000000001@g.us");
        assert_eq!(n.attr_str("size"), Some("2"));
        let p: Vec<_> = n.children_with_tag("participant").map(|p| p.attr_str("type")).collect();
        assert_eq!(p, vec![Some("superadmin"), None]);
        assert!(g.has("1666") && !g.has("1777"));
    }
}
