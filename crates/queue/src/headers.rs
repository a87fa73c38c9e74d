use mail_parser::MessageParser;

/// The few header fields the queue shows (`queue list`), decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub subject: String,
    pub from: String,
    pub message_id: String,
}

impl Summary {
    /// Reads only the header block; never fails (missing fields are empty).
    pub fn of(data: &[u8]) -> Summary {
        let Some(msg) = MessageParser::new().parse_headers(data) else {
            return Summary::default();
        };
        let from = msg.from().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string();
        Summary {
            subject: msg.subject().unwrap_or_default().to_string(),
            from,
            message_id: msg.message_id().map(|m| format!("<{m}>")).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_japanese_subject() {
        let raw = b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.com>\r\n\
Subject: =?ISO-2022-JP?B?GyRCOG4kRyQ5GyhC?=\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n";
        let s = Summary::of(raw);
        assert_eq!(s.from, "yamada@example.com");
        assert_eq!(s.message_id, "<x@y>");
        assert!(!s.subject.is_empty() && !s.subject.contains("=?"), "{}", s.subject);
        assert_eq!(Summary::of(b"garbage without headers"), Summary { ..Default::default() });
    }
}
