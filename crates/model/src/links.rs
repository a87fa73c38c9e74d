//! One-click actions in notice mails. The queue asks for a link when it
//! writes a notice; the web listener signs the links and acts on them
//! (`tomare_web::links`). A link names its action in its path so a person
//! can read what it does.

use crate::MessageId;

/// What a link in a notice does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// The sender stops a held (or waiting) message.
    Cancel,
    /// The sender sends a held message now.
    Release,
    Approve,
    Deny,
}

impl LinkAction {
    pub const ALL: [LinkAction; 4] = [LinkAction::Cancel, LinkAction::Release, LinkAction::Approve, LinkAction::Deny];

    /// The path segment: `…/cancel/…`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Cancel => "cancel",
            LinkAction::Release => "release",
            LinkAction::Approve => "approve",
            LinkAction::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<LinkAction> {
        LinkAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Makes the links a notice carries: bound to one message, one action and
/// the person the notice goes to, valid until `expires_at` (ms).
pub trait ActionLinks: Send + Sync {
    fn link(&self, id: &MessageId, action: LinkAction, person: &str, expires_at: i64) -> String;
}
