use serde::{Deserialize, Serialize};

/// What inspection saw in one message: the input of the policy stage.
/// Computed once per message, stored with it, shown by `tomare inspect`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub subject: String,
    /// Addresses in the From header.
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub message_id: String,
    /// Address headers that did not parse cleanly, e.g. a newline or stray
    /// text in Bcc: `"Bcc: <raw value>"`.
    pub malformed_headers: Vec<String>,
    /// Text of the body parts (text/plain, and HTML made readable).
    pub body_text: String,
    /// As stored with a queued message, the texts are left to the archive
    /// and only their lengths (in characters) kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_chars: Option<u64>,
    pub attachments: Vec<Attachment>,
    pub detections: Vec<Detection>,
    /// False when something could not be read to the end; the reasons say
    /// what. The default rules hold such mail (fail closed).
    pub complete: bool,
    pub incomplete_reasons: Vec<String>,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attachment {
    /// Where it sits: `a.zip/b.docx`.
    pub path: String,
    pub name: String,
    /// The declared MIME type (from the message), or the detected one for
    /// files inside archives.
    pub content_type: String,
    /// What the bytes are, by their magic: `pdf`, `docx`, `zip`, `text`…
    pub detected_type: String,
    /// The name's extension says one thing, the bytes another
    /// (`invoice.pdf` that is a zip).
    pub type_mismatch: bool,
    pub size: u64,
    /// Password-protected (encrypted zip entry, PDF with a user password,
    /// encrypted Office file).
    pub encrypted: bool,
    pub text: String,
    /// Stored without its text: the text's length in characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_chars: Option<u64>,
    /// Why the text could not be read (fully), if it could not.
    pub error: Option<String>,
}

impl Facts {
    /// A copy without the extracted texts (those can be 20 MB), keeping
    /// their lengths: what the queue stores; the archive keeps the texts.
    pub fn without_texts(&self) -> Facts {
        let chars = |s: &str| Some(s.chars().count() as u64);
        Facts {
            body_text: String::new(),
            body_chars: chars(&self.body_text),
            attachments: self
                .attachments
                .iter()
                .map(|a| Attachment { text_chars: chars(&a.text), ..a.clone_without_text() })
                .collect(),
            subject: self.subject.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            cc: self.cc.clone(),
            bcc: self.bcc.clone(),
            message_id: self.message_id.clone(),
            malformed_headers: self.malformed_headers.clone(),
            detections: self.detections.clone(),
            complete: self.complete,
            incomplete_reasons: self.incomplete_reasons.clone(),
            size: self.size,
        }
    }
}

impl Attachment {
    fn clone_without_text(&self) -> Attachment {
        Attachment {
            path: self.path.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            detected_type: self.detected_type.clone(),
            type_mismatch: self.type_mismatch,
            size: self.size,
            encrypted: self.encrypted,
            text: String::new(),
            text_chars: None,
            error: self.error.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// `keyword`, `regex`, `my_number`, `credit_card`, `phone`,
    /// `bank_account` or `email_list`.
    pub detector: String,
    /// The keyword or regex name that matched; empty for the built-in ones.
    pub name: String,
    /// `subject`, `body`, or an attachment's path.
    pub location: String,
    /// Short context; digits of personal numbers are masked.
    pub excerpt: String,
    /// Matches of this detector and name in this location.
    pub count: usize,
}
