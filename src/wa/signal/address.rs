//! Signal addresses: which remote device a session belongs to, and which (group, sender) a
//! sender key belongs to. Storage keys only; the wire never carries them. No JID parsing here:
//! the message layer maps JIDs to addresses.

use std::fmt;

/// A remote device as Signal sees it: a user name (phone number or LID user, with the domain
/// suffix the message layer chooses) and a device id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalAddress {
    name: String,
    device_id: u32,
}

impl SignalAddress {
    /// The address of device `device_id` of user `name`.
    pub fn new(name: impl Into<String>, device_id: u32) -> Self {
        Self { name: name.into(), device_id }
    }

    /// The user part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device id.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }
}

/// libsignal-node's form, `name.device`.
impl fmt::Display for SignalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.device_id)
    }
}

/// A sender key's owner: one sender device within one group (group JID string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderKeyName {
    group: String,
    sender: SignalAddress,
}

impl SenderKeyName {
    /// The sender key of `sender` in `group`.
    pub fn new(group: impl Into<String>, sender: SignalAddress) -> Self {
        Self { group: group.into(), sender }
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The sending device.
    pub fn sender(&self) -> &SignalAddress {
        &self.sender
    }
}

/// Baileys' storage form, `group::name::device`.
impl fmt::Display for SenderKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}::{}", self.group, self.sender.name, self.sender.device_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Display forms match libsignal-node's and Baileys' storage keys.
    #[test]
    fn display_forms() {
        let a = SignalAddress::new("15550001111", 7);
        assert_eq!(a.to_string(), "15550001111.7");
        assert_eq!(SenderKeyName::new("123@g.us", a).to_string(), "123@g.us::15550001111::7");
    }
}
