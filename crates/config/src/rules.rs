//! Rules as written in the config (`[[rule]]`) or a rules file: a condition
//! tree over the Facts and actions. The policy crate evaluates them; here
//! they are only data, so a bad rule is refused with its line like any other
//! config error.

use crate::{ByteSize, Duration};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub when: Cond,
    pub then: Vec<Action>,
    /// Later rules are not evaluated when this one fires.
    #[serde(default)]
    pub stop: bool,
}

/// A count range; both ends inclusive and optional.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub min: Option<usize>,
    pub max: Option<usize>,
}

impl Count {
    pub fn contains(&self, n: usize) -> bool {
        self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectionCond {
    /// `keyword`, `regex`, `my_number`, `credit_card`, `phone`,
    /// `bank_account`, `email_list`; any when empty.
    #[serde(default)]
    pub detector: Vec<String>,
    /// Keyword or regex names; any when empty.
    #[serde(default)]
    pub name: Vec<String>,
    /// `subject`, `body`, `attachments` (any attachment); anywhere when empty.
    #[serde(default)]
    pub r#in: Vec<String>,
    /// Matches counted over the locations that qualify.
    #[serde(default = "one")]
    pub min: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextCond {
    /// Keywords (matched after NFKC and case folding) …
    #[serde(default)]
    pub contains: Vec<String>,
    /// … or a regular expression over the normalised text.
    pub matches: Option<String>,
    /// `subject`, `body`, `attachments`; all of them when empty.
    #[serde(default)]
    pub r#in: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttachmentCond {
    /// Detected types (`pdf`, `xlsx`, `zip`…); any when empty.
    #[serde(default)]
    pub r#type: Vec<String>,
    /// Regular expression over the file name (case-insensitive).
    pub name: Option<String>,
    pub encrypted: Option<bool>,
    /// Could not be read (password, corrupt, unsupported).
    pub not_inspectable: Option<bool>,
    /// Has detections of these detectors (any detector when empty list is
    /// given as `detected = []`, no condition when absent).
    pub detected: Option<Vec<String>>,
    /// How many attachments must match.
    #[serde(default = "one")]
    pub min: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SizeCond {
    pub min: Option<ByteSize>,
    pub max: Option<ByteSize>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeCond {
    /// "HH:MM" local time (Japan unless `utc_offset` says otherwise); the
    /// range may wrap midnight ("22:00" to "06:00").
    pub from: String,
    pub to: String,
    #[serde(default = "jst")]
    pub utc_offset: String,
    /// Also on Saturdays and Sundays, all day.
    #[serde(default)]
    pub weekends: bool,
}

fn jst() -> String {
    "+09:00".into()
}

/// One node of a condition tree: a table with exactly one key.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    /// Envelope recipients outside internal_domains.
    ExternalRecipients(Count),
    /// External addresses visible in To and Cc.
    VisibleExternalRecipients(Count),
    /// Distinct external recipient domains.
    ExternalDomains(Count),
    /// Any envelope recipient's domain is one of these (or a subdomain).
    RecipientDomain(Vec<String>),
    /// Every envelope recipient is internal.
    AllInternal(bool),
    /// The envelope sender is one of these addresses (or `@domain`).
    Sender(Vec<String>),
    /// The sender is in one of these directory groups.
    SenderGroup(Vec<String>),
    Text(TextCond),
    Detection(DetectionCond),
    Attachment(AttachmentCond),
    AttachmentCount(Count),
    InspectionIncomplete(bool),
    MalformedHeaders(bool),
    /// Distinct email addresses in the body text.
    BodyAddresses(Count),
    /// An external recipient domain this org never sent to before.
    FirstContact(bool),
    /// An external recipient domain that looks like an internal or known
    /// one without being it (exmaple.co.jp for example.co.jp).
    LookalikeDomain(bool),
    Size(SizeCond),
    TimeOfDay(TimeCond),
}

pub use tomare_model::OnTimeout;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// `supervisor` (the sender's, from the directory), a user's address,
    /// or `group:NAME`.
    #[serde(default = "supervisor")]
    pub approver: String,
    #[serde(default = "four_hours")]
    pub timeout: Duration,
    #[serde(default = "reject")]
    pub on_timeout: OnTimeout,
    /// Who decides after an escalation (`on_timeout = "escalate"`).
    pub deputy: Option<String>,
}

fn supervisor() -> String {
    "supervisor".into()
}
fn four_hours() -> Duration {
    Duration::secs(4 * 3600)
}
fn reject() -> OnTimeout {
    OnTimeout::Reject
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Hold(Duration),
    RequireApproval(Approval),
    /// The reason the sender is told.
    Reject(String),
    /// `undisclosed` (To: undisclosed-recipients:;) or `sender` (To: the sender).
    ConvertToBcc(String),
    /// `supervisor` or an address; added to the envelope, not the headers.
    AddRecipient(String),
    AddHeader(Header),
    /// `sender` or `admin`.
    Notify(String),
    /// `link` (the files are downloaded from a link instead) or `zip` (an
    /// AES-256 zip, its password in a mail of its own), for the recipients
    /// outside the org. `[protect] zip_domains` get the zip either way.
    ProtectAttachments(String),
}

/// A rules file given by `[policy] rules_file`: only `[[rule]]` tables.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    #[serde(default)]
    pub rule: Vec<Rule>,
}
