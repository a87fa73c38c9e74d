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

/// The person an event's actor names, and how they acted: `web:taro@x`,
/// `api:taro@x`, `link:taro@x`, with anything after a space a note (`web:
/// root@x (admin, for boss@x)`). `cli`, `policy`, `timeout` name nobody.
pub fn actor_account(actor: &str) -> Option<(&str, &str)> {
    let (via, rest) = actor.split_once(':')?;
    if !matches!(via, "web" | "api" | "link") {
        return None;
    }
    let account = rest.split(' ').next().unwrap_or(rest);
    (!account.is_empty()).then_some((account, via))
}

#[cfg(test)]
mod actor_tests {
    use super::*;

    #[test]
    fn actors_name_their_person_and_way() {
        assert_eq!(actor_account("web:taro@x"), Some(("taro@x", "web")));
        assert_eq!(actor_account("web:root@x (admin, for boss@x)"), Some(("root@x", "web")));
        assert_eq!(actor_account("link:boss@x"), Some(("boss@x", "link")));
        assert_eq!(actor_account("cli"), None);
        assert_eq!(actor_account("smtp:x"), None);
        assert_eq!(actor_account("web:"), None);
    }
}
