//! What an archive record says besides its blob: typed, written and read
//! through serde. The JSON is what the chain hashes, and records stay for
//! years, so a record written by an older release reads as it was written:
//! every field has a default, addresses stay the text they were stored as,
//! and a field whose shape changed (an old `"verdict": {}` when no rules
//! looked) reads as absent rather than hiding the rest of the record.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use tomare_model::{Facts, RcptStatus, State, Verdict};
use tomare_store::{EventRow, RecipientRow};

/// The kinds of record in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A queued message as it arrived (after review).
    Received,
    /// Its final state, and the bytes delivered when the rules rewrote it.
    Final,
    /// A message from `tomare archive import`.
    Imported,
    /// Retention removed a message's content.
    Purge,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Received => "received",
            RecordKind::Final => "final",
            RecordKind::Imported => "imported",
            RecordKind::Purge => "purge",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        [RecordKind::Received, RecordKind::Final, RecordKind::Imported, RecordKind::Purge]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A `received` record: the envelope, the headers the index shows, and
/// what review found and decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReceivedMeta {
    pub id: String,
    /// Canonical; empty for the null sender (tomare's own notices and DSNs).
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub helo: String,
    pub client_ip: String,
    pub auth_user: Option<String>,
    pub received_at: i64,
    pub size: u64,
    pub subject: String,
    pub header_from: String,
    pub message_id_header: String,
    /// As the queue stored them (texts left out: the index has them).
    #[serde(deserialize_with = "lenient")]
    pub facts: Option<Facts>,
    #[serde(deserialize_with = "lenient")]
    pub verdict: Option<Verdict>,
}

/// A `final` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinalMeta {
    pub id: String,
    #[serde(deserialize_with = "lenient")]
    pub state: Option<State>,
    #[serde(deserialize_with = "lenient_list")]
    pub recipients: Vec<FinalRecipient>,
    pub attempts: i64,
    #[serde(deserialize_with = "lenient_list")]
    pub events: Vec<EventRow>,
    /// The blob is the rewritten message the rules made.
    pub rewritten: bool,
}

/// How one recipient ended, as a final record keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinalRecipient {
    /// The address as stored then (older records: before addresses were
    /// parsed strictly).
    pub address: String,
    #[serde(deserialize_with = "lenient")]
    pub status: Option<RcptStatus>,
    pub reply: String,
    pub attempts: i64,
}

impl From<&RecipientRow> for FinalRecipient {
    fn from(r: &RecipientRow) -> FinalRecipient {
        FinalRecipient {
            address: r.address.to_string(),
            status: Some(r.status),
            reply: r.reply.clone(),
            attempts: r.attempts,
        }
    }
}

/// An `imported` record: what the message's own headers say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportedMeta {
    pub id: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub message_id_header: String,
    pub size: u64,
    pub date: i64,
}

/// A message's original record (received or imported), as replay and
/// reindex need it.
#[derive(Debug, Clone, PartialEq)]
pub enum Original {
    Received(Box<ReceivedMeta>),
    Imported(ImportedMeta),
}

impl Original {
    /// Reads the meta of a `received` or `imported` record; a damaged one
    /// reads empty rather than hiding the message.
    pub fn read(kind: RecordKind, meta: Option<&str>) -> Original {
        let meta = meta.unwrap_or("{}");
        match kind {
            RecordKind::Imported => Original::Imported(serde_json::from_str(meta).unwrap_or_default()),
            _ => Original::Received(Box::new(serde_json::from_str(meta).unwrap_or_default())),
        }
    }

    /// The envelope sender (the From header for imported mail).
    pub fn mail_from(&self) -> &str {
        match self {
            Original::Received(m) => &m.mail_from,
            Original::Imported(m) => &m.mail_from,
        }
    }

    /// The envelope recipients (the address headers' for imported mail).
    pub fn recipients(&self) -> &[String] {
        match self {
            Original::Received(m) => &m.recipients,
            Original::Imported(m) => &m.recipients,
        }
    }

    /// When it was received (the Date header for imported mail).
    pub fn at(&self) -> i64 {
        match self {
            Original::Received(m) => m.received_at,
            Original::Imported(m) => m.date,
        }
    }

    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            Original::Received(m) => m.verdict.as_ref(),
            Original::Imported(_) => None,
        }
    }
}

/// A field that reads as None when its shape is not today's.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

/// A list whose items that do not read are left out.
fn lenient_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let items = match v {
        serde_json::Value::Array(items) => items,
        _ => Vec::new(),
    };
    Ok(items.into_iter().filter_map(|i| serde_json::from_value(i).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_by_the_release_before_read_back() {
        // As ops.rs wrote them with json!() before these types existed.
        let received = r#"{"id":"01J","mail_from":"taro@example.com","recipients":["a@customer.test"],
            "helo":"h","client_ip":"127.0.0.1","auth_user":null,"received_at":5,"size":10,"subject":"件名",
            "header_from":"taro@example.com","message_id_header":"<a@b>","facts":{"subject":"件名","body_chars":3},
            "verdict":{"outcome":"hold","hold_seconds":60,"rules":[{"name":"r","reason":"x"}],"transforms":[]}}"#;
        let m = Original::read(RecordKind::Received, Some(received));
        assert_eq!(m.mail_from(), "taro@example.com");
        assert_eq!(m.recipients(), ["a@customer.test"]);
        assert_eq!(m.at(), 5);
        assert_eq!(m.verdict().unwrap().rule_names(), ["r"]);
        let Original::Received(r) = &m else { panic!() };
        assert_eq!(r.facts.as_ref().unwrap().body_chars, Some(3));
        // A DSN: no rules looked, `{}`.
        let dsn = r#"{"id":"x","mail_from":"","recipients":["t@example.com"],"facts":{},"verdict":{}}"#;
        let m = Original::read(RecordKind::Received, Some(dsn));
        assert!(m.verdict().is_none() && m.mail_from().is_empty());
        let imported = r#"{"id":"import-ab","mail_from":"a@x","recipients":["b@y"],"subject":"s",
            "message_id_header":"<m>","size":3,"date":7}"#;
        let m = Original::read(RecordKind::Imported, Some(imported));
        assert_eq!((m.mail_from(), m.at()), ("a@x", 7));
        let fin = r#"{"id":"01J","state":"delivered","recipients":[{"address":"a@customer.test","status":"delivered",
            "reply":"250 ok","attempts":1}],"attempts":1,"events":[{"at":1,"kind":"delivered","actor":"relay",
            "detail":""}],"rewritten":false}"#;
        let f: FinalMeta = serde_json::from_str(fin).unwrap();
        assert_eq!(f.state, Some(State::Delivered));
        assert_eq!(f.recipients[0].address, "a@customer.test");
        assert_eq!(f.recipients[0].status, Some(RcptStatus::Delivered));
        // From before addresses were parsed strictly, and a state this
        // release does not know: the rest of the record still reads.
        let older = r#"{"id":"x","state":"delivered","recipients":[{"address":"john doe@Customer.TEST",
            "status":"delivered","reply":"250","attempts":1}],"events":[{"at":1}],"facts":{"size":"big"}}"#;
        let f: FinalMeta = serde_json::from_str(older).unwrap();
        assert_eq!((f.state, f.recipients[0].address.as_str()), (Some(State::Delivered), "john doe@Customer.TEST"));
        let odd: FinalMeta = serde_json::from_str(r#"{"id":"y","state":"teleported"}"#).unwrap();
        assert_eq!((odd.id.as_str(), odd.state), ("y", None));
        let received = r#"{"id":"z","mail_from":"a@x","recipients":["b@y"],"facts":{"size":"big"},"received_at":3}"#;
        let m = Original::read(RecordKind::Received, Some(received));
        assert_eq!((m.mail_from(), m.at()), ("a@x", 3), "a facts field of another shape hides nothing else");
        // What is written now reads back the same.
        let again: FinalMeta = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(again, f);
        for k in ["received", "final", "imported", "purge"] {
            assert_eq!(RecordKind::parse(k).unwrap().as_str(), k);
        }
    }
}
