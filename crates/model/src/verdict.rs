//! What the rules decided about a message: the typed record the review
//! stage writes, the queue acts on, the store keeps and the archive,
//! `queue show` and the web read back (all through serde, never by key).

use crate::Address;
use serde::{Deserialize, Serialize};

/// The strongest thing any rule asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    #[default]
    Deliver,
    Hold,
    Approval,
    Reject,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Deliver => "deliver",
            Outcome::Hold => "hold",
            Outcome::Approval => "approval",
            Outcome::Reject => "reject",
        }
    }
}

/// What happens when nobody decides an approval before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    #[default]
    Reject,
    Release,
    /// Ask the deputy, with a new deadline.
    Escalate,
}

impl OnTimeout {
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Reject => "reject",
            OnTimeout::Release => "release",
            OnTimeout::Escalate => "escalate",
        }
    }

    pub fn parse(s: &str) -> Option<OnTimeout> {
        [OnTimeout::Reject, OnTimeout::Release, OnTimeout::Escalate].into_iter().find(|o| o.as_str() == s)
    }
}

/// How attachments leave for the recipients outside the org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtectMode {
    /// Packed into an AES-256 zip; the password follows in its own mail.
    Zip,
    /// Removed; a download link (recallable) replaces them. Stronger than
    /// a zip: a link can be revoked after the mail went out.
    Link,
}

impl ProtectMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectMode::Zip => "zip",
            ProtectMode::Link => "link",
        }
    }

    pub fn parse(s: &str) -> Option<ProtectMode> {
        [ProtectMode::Zip, ProtectMode::Link].into_iter().find(|m| m.as_str() == s)
    }
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired {
    pub name: String,
    /// In plain words: the rule's description and what in this message
    /// made it fire.
    pub reason: String,
}

/// An approval the rules require.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalPlan {
    /// The approver's address or `group:NAME`; empty when the directory
    /// names no supervisor for the sender.
    pub approver: String,
    pub timeout_seconds: u64,
    pub on_timeout: OnTimeout,
    #[serde(default)]
    pub deputy: Option<String>,
}

/// The verdict on one message. Stored with it as JSON; a stored verdict
/// from before a field existed reads with that field empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Verdict {
    pub outcome: Outcome,
    #[serde(default)]
    pub hold_seconds: u64,
    #[serde(default)]
    pub rules: Vec<Fired>,
    /// `convert_to_bcc`, `add_recipient`, `add_header`.
    #[serde(default)]
    pub transforms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// `undisclosed` or `sender`, when To/Cc become Bcc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert_to_bcc: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_recipients: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Attachments protected for outside recipients (a link wins over a
    /// zip when rules disagree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<ProtectMode>,
}

impl Verdict {
    /// The names of the rules that fired, in order.
    pub fn rule_names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_reads_back_as_written_and_old_shapes_still_read() {
        let v = Verdict {
            outcome: Outcome::Approval,
            hold_seconds: 300,
            rules: vec![Fired { name: "r".into(), reason: "社外秘".into() }],
            transforms: vec!["add_recipient".into()],
            approval: Some(ApprovalPlan {
                approver: "group:leads".into(),
                timeout_seconds: 3600,
                on_timeout: OnTimeout::Escalate,
                deputy: Some("d@example.com".into()),
            }),
            add_recipients: vec!["boss@example.com".parse().unwrap()],
            add_headers: vec![("X-A".into(), "b".into())],
            ..Verdict::default()
        };
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<Verdict>(&text).unwrap(), v);
        // As the release before wrote it (and `{}` for a message no rule saw).
        let old = r#"{"outcome":"hold","hold_seconds":60,"rules":[{"name":"x","reason":"y"}],"transforms":[],
                     "approval":{"approver":"","timeout_seconds":10,"on_timeout":"reject","deputy":null}}"#;
        let read: Verdict = serde_json::from_str(old).unwrap();
        assert_eq!(read.outcome, Outcome::Hold);
        assert_eq!(read.approval.unwrap().on_timeout, OnTimeout::Reject);
        assert!(serde_json::from_str::<Verdict>("{}").is_err(), "no outcome is no verdict");
        assert!(serde_json::from_str::<Verdict>(r#"{"outcome":"later"}"#).is_err());
    }
}

/// Which notice a person is owed about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// To the sender: a rule rejected the message (or its approval timed out).
    Rejected,
    /// To the sender: the approver refused it.
    Denied,
    /// To a `notify` recipient: the message is held.
    Held,
    /// To a `notify` recipient: the message waits for approval.
    AwaitingApproval,
    /// To an approver (or, when escalated, the deputy): please decide.
    ApprovalRequest,
    /// To the sender: the approver approved it (it goes out now).
    Approved,
    /// To the sender: someone else cancelled it.
    Cancelled,
    /// To the sender: someone else sent it before its hold ended.
    Released,
    /// To an approver: half the time to decide is gone.
    Reminder,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 9] = [
        NoticeKind::Rejected,
        NoticeKind::Denied,
        NoticeKind::Held,
        NoticeKind::AwaitingApproval,
        NoticeKind::ApprovalRequest,
        NoticeKind::Approved,
        NoticeKind::Cancelled,
        NoticeKind::Released,
        NoticeKind::Reminder,
    ];

    /// As stored (the `notices.kind` column) and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Rejected => "rejected",
            NoticeKind::Denied => "denied",
            NoticeKind::Held => "held",
            NoticeKind::AwaitingApproval => "awaiting-approval",
            NoticeKind::ApprovalRequest => "approval-request",
            NoticeKind::Approved => "approved",
            NoticeKind::Cancelled => "cancelled",
            NoticeKind::Released => "released",
            NoticeKind::Reminder => "reminder",
        }
    }

    pub fn parse(s: &str) -> Option<NoticeKind> {
        NoticeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod notice_tests {
    use super::*;

    #[test]
    fn notice_kinds_read_back_as_stored() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        assert_eq!(NoticeKind::parse("escalate"), None);
        for o in [OnTimeout::Reject, OnTimeout::Release, OnTimeout::Escalate] {
            assert_eq!(OnTimeout::parse(o.as_str()), Some(o));
        }
    }
}
