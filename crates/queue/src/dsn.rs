//! Delivery status notifications (RFC 3464): a `multipart/report` with a
//! human-readable part in Japanese and English, the machine-readable
//! `message/delivery-status`, and the original message's header.

use std::fmt::Write;
use tomare_model::{MessageId, rfc2822};

pub struct Dsn<'a> {
    pub reporting_mta: &'a str,
    pub org_name: &'a str,
    pub postmaster_domain: &'a str,
    pub queue_id: &'a str,
    pub mail_from: &'a str,
    pub received_at: i64,
    /// (recipient, last reply or reason)
    pub failures: &'a [(String, String)],
    /// The original message; only its header block is returned.
    pub original: &'a [u8],
    pub now: i64,
}

/// The enhanced status code in a reply such as `550 5.1.1 no such user`;
/// an expired deferral keeps its `4.x.x`, as Postfix reports it.
fn status_of(reply: &str) -> String {
    reply
        .split_whitespace()
        .find(|t| {
            let parts: Vec<&str> = t.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "4" | "5")
                && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
        .unwrap_or_else(|| "5.0.0".to_string())
}

fn header_block(original: &[u8]) -> &[u8] {
    let end = original.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 2).unwrap_or(original.len());
    &original[..end]
}

/// Header values must stay on one line: replies can carry anything.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

pub fn build(d: &Dsn<'_>) -> Vec<u8> {
    let boundary = format!("=_tomare_{}", MessageId::generate(d.now));
    let mut text = String::new();
    let _ = write!(
        text,
        "From: Mail Delivery System <MAILER-DAEMON@{pm}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <{qid}.dsn@{mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         This is a delivery status notification (RFC 3464).\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {org} のメールゲートウェイ (tomare) から、次の宛先にメールを配送できませんでした。\r\n\
         The mail gateway (tomare) of {org} could not deliver your message to these recipients.\r\n\
         \r\n",
        pm = d.postmaster_domain,
        to = one_line(d.mail_from),
        date = rfc2822(d.now),
        qid = d.queue_id,
        mta = d.reporting_mta,
        org = one_line(d.org_name),
    );
    for (rcpt, reply) in d.failures {
        let _ = write!(text, "  <{}>: {}\r\n", one_line(rcpt), one_line(reply));
    }
    let _ = write!(
        text,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {mta}\r\n\
         X-Tomare-Queue-ID: {qid}\r\n\
         Arrival-Date: {arrival}\r\n",
        mta = d.reporting_mta,
        qid = d.queue_id,
        arrival = rfc2822(d.received_at),
    );
    for (rcpt, reply) in d.failures {
        let reply = one_line(reply);
        let _ = write!(
            text,
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\n\
             Action: failed\r\n\
             Status: {status}\r\n\
             Diagnostic-Code: smtp; {reply}\r\n",
            rcpt = one_line(rcpt),
            status = status_of(&reply),
        );
    }
    let _ = write!(text, "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n");
    let mut out = text.into_bytes();
    out.extend_from_slice(header_block(d.original));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// What a notice to a sender is about.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_each_failed_recipient_with_its_status() {
        let failures = vec![
            ("nouser@x.test".to_string(), "550 5.1.1 no such user".to_string()),
            ("slow@y.test".to_string(), "gave up after 5d: 451 4.3.0 try later".to_string()),
        ];
        let original = b"Subject: hello\r\nMessage-ID: <m@x>\r\n\r\nsecret body\r\n";
        let out = build(&Dsn {
            reporting_mta: "gw.example.com",
            org_name: "Example",
            postmaster_domain: "example.com",
            queue_id: "Q1",
            mail_from: "taro@example.com",
            received_at: 0,
            failures: &failures,
            original,
            now: 1000,
        });
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; nouser@x.test\r\nAction: failed\r\nStatus: 5.1.1"));
        assert!(text.contains("Final-Recipient: rfc822; slow@y.test\r\nAction: failed\r\nStatus: 4.3.0"));
        assert!(text.contains("Message-ID: <m@x>"), "original header returned");
        assert!(!text.contains("secret body"), "original body not returned");
        let parsed = mail_parser::MessageParser::new().parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.parts.len(), 4, "report with three parts");
    }
}
