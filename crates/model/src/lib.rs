//! Plain data that crosses the pipeline's stages: message ids, envelopes,
//! queue states, clock helpers and the process-wide metrics counters.
//!
//! This crate does no I/O; every stage depends on it and on nothing else of
//! the project's, so stages stay independent of each other.

mod address;
mod escape;
mod facts;
mod health;
pub mod i18n;
mod id;
mod links;
mod metrics;
mod state;
mod time;
mod verdict;

pub use address::{Address, AddressError, SendAs};
pub use escape::{escape_controls, html_escape, needs_escape};
pub use facts::{Attachment, Detection, Facts};
pub use health::Health;
pub use id::MessageId;
pub use links::{ActionLinks, LinkAction, actor_account};
pub use metrics::Metrics;
pub use state::{RcptStatus, State};
pub use time::{local_time, now_ms, parse_utc_offset, rfc2822, rfc3339};
pub use verdict::{ApprovalPlan, Fired, NoticeKind, OnTimeout, Outcome, ProtectMode, Verdict};

use serde::{Deserialize, Serialize};

/// The organisation (tenant) every row belongs to.
pub type OrgId = i64;

/// What the SMTP client told us: who sends, to whom, from where.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path; [`Address::null`] for `<>`.
    pub mail_from: Address,
    pub rcpt_to: Vec<Address>,
    pub helo: String,
    pub client_ip: String,
    /// The SMTP AUTH identity, when the client authenticated.
    pub auth_user: Option<String>,
}

impl Envelope {
    /// Whether any recipient is outside `internal` (by its domain field).
    pub fn has_external(&self, internal: &[String]) -> bool {
        self.rcpt_to.iter().any(|r| !r.is_internal(internal))
    }
}

/// NFKC, then lower case: the form keywords and text are compared in, so
/// full/half width and case do not matter.
pub fn normalize(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    if text.is_ascii() {
        // NFKC leaves ASCII as it is.
        return text.to_ascii_lowercase();
    }
    text.nfkc().flat_map(char::to_lowercase).collect()
}

/// The domain part of an address, lower-cased; empty when there is none.
pub fn domain_of(address: &str) -> String {
    address.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase()).unwrap_or_default()
}

/// Whether `domain` is one of `internal` or a subdomain of one.
pub fn is_internal_domain(domain: &str, internal: &[String]) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    internal.iter().any(|d| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        domain == d || domain.strip_suffix(&d).is_some_and(|rest| rest.ends_with('.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_domains_match_subdomains_only_on_label_boundary() {
        let internal = vec!["example.com".to_string()];
        assert!(is_internal_domain("example.com", &internal));
        assert!(is_internal_domain("Mail.Example.COM", &internal));
        assert!(!is_internal_domain("badexample.com", &internal));
        assert!(!is_internal_domain("example.com.evil.net", &internal));
        assert_eq!(domain_of("Taro@Example.COM"), "example.com");
        assert_eq!(domain_of("nodomain"), "");
    }
}

/// The bytes of a message to deliver: in memory, or (a big one) its spool
/// file, read a piece at a time as it is sent.
#[derive(Debug, Clone)]
pub enum Payload {
    Bytes(Vec<u8>),
    File { path: std::path::PathBuf, len: u64 },
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How one recipient fared in one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptOutcome {
    pub address: Address,
    pub class: OutcomeClass,
    /// The remote server's reply, or what went wrong before it could answer.
    pub reply: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    Delivered,
    /// 4xx or a connection problem: try again later.
    Temporary,
    /// 5xx: give up and tell the sender.
    Permanent,
}

/// A size as people read it: `12 B`, `3 KB`, `1.5 MB` (powers of 1000).
pub fn size_text(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.0} KB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}
