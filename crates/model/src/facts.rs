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
    /// The text was read by OCR (an image, a scanned PDF page).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ocr: bool,
}

impl Facts {
    /// A copy without the extracted texts (those can be 20 MB), keeping
    /// their lengths: what the queue stores; the archive keeps the texts.
    /// The texts are moved aside while the rest is cloned, never copied.
    pub fn without_texts(&mut self) -> Facts {
        let body = std::mem::take(&mut self.body_text);
        let texts: Vec<String> = self.attachments.iter_mut().map(|a| std::mem::take(&mut a.text)).collect();
        let chars = |s: &str| Some(s.chars().count() as u64);
        let mut slim = self.clone();
        slim.body_chars = chars(&body);
        for (a, t) in slim.attachments.iter_mut().zip(&texts) {
            a.text_chars = chars(t);
        }
        self.body_text = body;
        for (a, t) in self.attachments.iter_mut().zip(texts) {
            a.text = t;
        }
        slim
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

impl Detection {
    /// For people: what was found, where, how often, and the masked excerpt.
    pub fn line(&self) -> String {
        let what =
            if self.name.is_empty() { self.detector.clone() } else { format!("{} {}", self.detector, self.name) };
        format!("{what} ({}, ×{}): {}", self.location, self.count, self.excerpt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_copy_has_lengths_not_texts_and_the_original_keeps_them() {
        let attachment =
            Attachment { name: "a.txt".into(), text: "社外秘".into(), size: 9, ..Attachment::default() };
        let mut facts = Facts {
            subject: "s".into(),
            body_text: "本文です".into(),
            attachments: vec![attachment],
            ..Facts::default()
        };
        let before = facts.clone();
        let slim = facts.without_texts();
        assert_eq!(facts, before, "the original keeps its texts");
        assert_eq!((slim.body_text.as_str(), slim.body_chars), ("", Some(4)));
        assert_eq!((slim.attachments[0].text.as_str(), slim.attachments[0].text_chars), ("", Some(3)));
        assert_eq!(
            (slim.subject.as_str(), slim.attachments[0].name.as_str(), slim.attachments[0].size),
            ("s", "a.txt", 9)
        );
    }
}
