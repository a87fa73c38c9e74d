//! Delivery status notifications (RFC 3464): a `multipart/report` with a
//! human-readable part in Japanese and English, the machine-readable
//! `message/delivery-status`, and the original message's header.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt::Write;
use tomare_model::{MessageId, NoticeKind, rfc2822};

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
pub struct SenderNotice<'a> {
    pub reporting_mta: &'a str,
    pub org_name: &'a str,
    pub postmaster_domain: &'a str,
    pub queue_id: &'a str,
    pub mail_from: &'a str,
    /// Who the notice goes to (the sender, an approver, an admin).
    pub to: &'a str,
    pub subject: &'a str,
    pub message_id_header: &'a str,
    /// `rejected` (by a rule), `denied` (by an approver, or no decision in
    /// time), `held`, `awaiting-approval`, `approval-request`.
    pub kind: NoticeKind,
    pub reason: &'a str,
    pub now: i64,
    /// One-click links (what each does, its address), shown after the reason.
    pub links: &'a [(tomare_model::LinkAction, String)],
}

/// A plain notice, in Japanese and English: to a sender that their message
/// was not sent (or is held, or waits), to an approver that a message waits
/// for them — and why.
pub fn notice(n: &SenderNotice<'_>) -> Vec<u8> {
    let approve = format!("tomare queue approve {}  /  tomare queue deny {} --reason \"...\"", n.queue_id, n.queue_id);
    let (ja, en, headline) = match n.kind {
        NoticeKind::Denied => (
            "承認者が送信を許可しなかったため、次のメールは送信されませんでした。".to_string(),
            "Your message was not sent: it was not approved.".to_string(),
            "送信されませんでした / Not sent",
        ),
        NoticeKind::Held => (
            "次のメールは送信前に保留されています。保留時間が過ぎると送信されます。".to_string(),
            "This message is held before sending; it goes out when the hold ends.".to_string(),
            "保留中 / Held",
        ),
        NoticeKind::AwaitingApproval => (
            "次のメールは承認待ちです。承認されると送信されます。".to_string(),
            "This message waits for approval; it goes out once approved.".to_string(),
            "承認待ち / Awaiting approval",
        ),
        NoticeKind::ApprovalRequest => (
            format!("次のメールの送信承認をお願いします。\r\n{approve}"),
            format!("Please approve or refuse this message.\r\n{approve}"),
            "承認のお願い / Approval requested",
        ),
        NoticeKind::Rejected => (
            "社内の送信ルールにより、次のメールは送信されませんでした。".to_string(),
            "Your message was not sent: a company rule stopped it.".to_string(),
            "送信されませんでした / Not sent",
        ),
    };
    let subject_line = one_line(n.subject);
    let mut text = String::new();
    let _ = write!(
        text,
        "From: {org} <MAILER-DAEMON@{pm}>\r\n\
         To: <{to}>\r\n\
         Subject: =?UTF-8?B?{subject}?=\r\n\
         Date: {date}\r\n\
         Message-ID: <{qid}.notice@{mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {ja}\r\n{en}\r\n\r\n\
         送信者 / Sender: {sender}\r\n\
         件名 / Subject: {subject_line}\r\n\
         Message-ID: {mid}\r\n\
         tomare ID: {qid}\r\n\r\n\
         理由 / Reason:\r\n  {reason}\r\n{links}",
        org = one_line(n.org_name).replace(['<', '>', '"'], ""),
        pm = n.postmaster_domain,
        to = one_line(n.to),
        sender = one_line(n.mail_from),
        subject = B64.encode(format!("{headline}: {subject_line}")),
        date = rfc2822(n.now),
        qid = n.queue_id,
        mta = n.reporting_mta,
        mid = one_line(n.message_id_header),
        reason = one_line(n.reason),
        links = link_lines(n.links),
    );
    text.into_bytes()
}

/// The links block: each action named in both languages, then its address
/// on a line of its own (mail clients make a bare line clickable).
fn link_lines(links: &[(tomare_model::LinkAction, String)]) -> String {
    use tomare_model::LinkAction;
    let mut out = String::new();
    for (action, url) in links {
        let name = match action {
            LinkAction::Cancel => "送信を取り消す / Cancel",
            LinkAction::Release => "今すぐ送信する / Send now",
            LinkAction::Approve => "承認する / Approve",
            LinkAction::Deny => "却下する / Deny",
        };
        let _ = write!(out, "\r\n{name}:\r\n  {url}\r\n");
    }
    out
}

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

    /// Taro's notice about 見積書, of `kind`, for `reason`, with `links`.
    fn taros_notice(kind: NoticeKind, reason: &str, links: &[(tomare_model::LinkAction, String)]) -> String {
        let out = notice(&SenderNotice {
            reporting_mta: "gw.example.com",
            org_name: "Example",
            postmaster_domain: "example.com",
            queue_id: "Q1",
            mail_from: "taro@example.com",
            to: "taro@example.com",
            subject: "見積書",
            message_id_header: "<m@x>",
            kind,
            reason,
            now: 0,
            links,
        });
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn notice_says_why_in_both_languages() {
        let text = taros_notice(NoticeKind::Denied, "Not to this customer.\r\nBcc: injected@evil.test", &[]);
        assert!(text.contains("承認者が送信を許可しなかった") && text.contains("it was not approved"));
        assert!(text.contains("Not to this customer.  Bcc: injected@evil.test"), "reason kept on one line: {text}");
        assert!(!text.contains("\r\nBcc:"), "no header injection through the reason");
        let parsed = mail_parser::MessageParser::new().parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some("送信されませんでした / Not sent: 見積書"));
    }

    #[test]
    fn a_held_notice_carries_its_links_each_on_a_line_of_its_own() {
        use tomare_model::LinkAction;
        let links = [
            (LinkAction::Cancel, "https://gw.example.com/a/cancel/abc.def".to_string()),
            (LinkAction::Release, "https://gw.example.com/a/release/ghi.jkl".to_string()),
        ];
        let text = taros_notice(NoticeKind::Held, "external recipient", &links);
        assert!(text.contains("送信を取り消す / Cancel:\r\n  https://gw.example.com/a/cancel/abc.def\r\n"), "{text}");
        assert!(
            text.contains("今すぐ送信する / Send now:\r\n  https://gw.example.com/a/release/ghi.jkl\r\n"),
            "{text}"
        );
    }
}
