//! tomare's own notices: to a sender that their message is held, waits,
//! was not sent, or that someone else approved, cancelled or sent it; to an
//! approver that a message waits for them. Plain text and simple HTML, in
//! the person's language (both, Japanese first, when they chose none),
//! with the facts that matter and the one-click links. Every value from the
//! message is kept on one line in the text and escaped in the HTML.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt::Write;
use tomare_model::i18n::{Lang, t};
use tomare_model::{LinkAction, MessageId, NoticeKind, html_escape, rfc2822};

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
    pub kind: NoticeKind,
    /// Why (the rules' reasons, the approver's comment), or for approved,
    /// cancelled and released notices who did it (an event's actor).
    pub reason: &'a str,
    pub now: i64,
    /// One-click links (what each does, its address).
    pub links: &'a [(LinkAction, String)],
    /// The language of the person it goes to; None: both.
    pub lang: Option<Lang>,
    /// Every recipient, and whether it is outside the org.
    pub recipients: &'a [(String, bool)],
    pub attachments: &'a [String],
    /// Detector hits with masked excerpts (for approvers).
    pub hits: &'a [String],
    /// What tomare will change in the message before it goes out.
    pub changes: &'a [String],
    /// When the hold ends or the approval's deadline, in the org's time zone.
    pub until: Option<&'a str>,
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Lines longer than SMTP allows (998 bytes) are broken, on a character.
fn fold(line: &str) -> String {
    const MAX: usize = 900;
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len() + line.len() / MAX * 4);
    let mut len = 0;
    for c in line.chars() {
        if len + c.len_utf8() > MAX {
            out.push_str("\r\n  ");
            len = 2;
        }
        out.push(c);
        len += c.len_utf8();
    }
    out
}

/// Who did it, from an event's actor: `web:boss@x` → `boss@x (web)`.
fn who(actor: &str) -> String {
    match tomare_model::actor_account(actor) {
        Some((account, via)) => format!("{account} ({via})"),
        None => actor.to_string(),
    }
}

impl SenderNotice<'_> {
    /// `key` in the person's language, or both (Japanese first) joined by
    /// `sep`.
    fn tr(&self, key: &str, args: &[&dyn std::fmt::Display], sep: &str) -> String {
        match self.lang {
            Some(l) => t(l, key, args),
            None => format!("{}{sep}{}", t(Lang::Ja, key, args), t(Lang::En, key, args)),
        }
    }

    fn label(&self, key: &str) -> String {
        self.tr(key, &[], " / ")
    }

    fn kind_key(&self) -> &'static str {
        match self.kind {
            NoticeKind::Rejected => "rejected",
            NoticeKind::Denied => "denied",
            NoticeKind::Held => "held",
            NoticeKind::AwaitingApproval => "awaiting",
            NoticeKind::ApprovalRequest => "request",
            NoticeKind::Approved => "approved",
            NoticeKind::Cancelled => "cancelled",
            NoticeKind::Released => "released",
            NoticeKind::Reminder => "reminder",
        }
    }

    /// The opening lines: what happened.
    fn lead(&self) -> String {
        let k = self.kind_key();
        match self.kind {
            NoticeKind::Approved | NoticeKind::Cancelled | NoticeKind::Released => {
                let when = tomare_model::rfc3339(self.now);
                self.tr(&format!("notice.{k}.lead"), &[&who(self.reason), &when], "\r\n")
            }
            NoticeKind::ApprovalRequest | NoticeKind::Reminder => {
                let cli = format!(
                    "tomare queue approve {}  /  tomare queue deny {} --reason \"...\"",
                    self.queue_id, self.queue_id
                );
                format!("{}\r\n{cli}", self.tr(&format!("notice.{k}.lead"), &[], "\r\n"))
            }
            _ => self.tr(&format!("notice.{k}.lead"), &[], "\r\n"),
        }
    }

    /// The facts, as (label, lines) pairs, in the order shown.
    fn facts(&self) -> Vec<(String, Vec<String>)> {
        let mut f = vec![
            (self.label("notice.sender"), vec![one_line(self.mail_from)]),
            (self.label("notice.subject"), vec![one_line(self.subject)]),
        ];
        if !self.recipients.is_empty() {
            let external = self.label("notice.external");
            let lines = self
                .recipients
                .iter()
                .map(|(a, outside)| if *outside { format!("{} [{external}]", one_line(a)) } else { one_line(a) })
                .collect();
            f.push((self.label("notice.recipients"), lines));
        }
        if !self.attachments.is_empty() {
            f.push((self.label("notice.attachments"), self.attachments.iter().map(|a| one_line(a)).collect()));
        }
        if let Some(until) = self.until {
            let key = match self.kind {
                NoticeKind::Held => Some("notice.until.held"),
                NoticeKind::AwaitingApproval | NoticeKind::ApprovalRequest | NoticeKind::Reminder => {
                    Some("notice.until.deadline")
                }
                _ => None,
            };
            if let Some(key) = key {
                f.push((self.label(key), vec![until.to_string()]));
            }
        }
        let reason_shown = !matches!(self.kind, NoticeKind::Approved | NoticeKind::Cancelled | NoticeKind::Released);
        if reason_shown && !self.reason.is_empty() {
            f.push((self.label("notice.reason"), vec![one_line(self.reason)]));
        }
        if !self.hits.is_empty() {
            f.push((self.label("notice.hits"), self.hits.iter().map(|h| one_line(h)).collect()));
        }
        if !self.changes.is_empty() {
            f.push((self.label("notice.changes"), self.changes.iter().map(|c| one_line(c)).collect()));
        }
        f.push(("tomare ID".into(), vec![self.queue_id.to_string()]));
        f.push(("Message-ID".into(), vec![one_line(self.message_id_header)]));
        f
    }

    fn link_name(&self, a: LinkAction) -> String {
        self.label(&format!("notice.link.{}", a.as_str()))
    }
}

/// A header field's value as RFC 2047 encoded words (UTF-8, base64), each
/// at most 75 characters, folded onto lines of their own: a subject of any
/// length stays within SMTP's line limit.
pub fn encoded_words(text: &str) -> String {
    // 39 bytes of text are 52 characters of base64: 64 with the framing,
    // 73 after "Subject: ".
    let mut words = Vec::new();
    let mut piece = String::new();
    for c in one_line(text).chars() {
        if piece.len() + c.len_utf8() > 39 {
            words.push(format!("=?UTF-8?B?{}?=", B64.encode(&piece)));
            piece.clear();
        }
        piece.push(c);
    }
    if !piece.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", B64.encode(&piece)));
    }
    words.join("\r\n ")
}

/// The header block of a mail of tomare's own (a notice, an invitation),
/// up to and including `MIME-Version`: from the org's MAILER-DAEMON, marked
/// automatic so that nobody's autoresponder answers it.
pub fn own_head(
    org_name: &str,
    postmaster_domain: &str,
    to: &str,
    subject: &str,
    now: i64,
    message_id: &str,
) -> String {
    format!(
        "From: {org} <MAILER-DAEMON@{postmaster_domain}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{message_id}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n",
        org = one_line(org_name).replace(['<', '>', '"'], ""),
        to = one_line(to),
        subject = encoded_words(subject),
        date = rfc2822(now),
    )
}

/// [`own_head`] for a plain-text mail (UTF-8, 8 bit), up to the blank line
/// before its body: invitations, one-time codes, passwords.
pub fn own_text_head(
    org_name: &str,
    postmaster_domain: &str,
    to: &str,
    subject: &str,
    now: i64,
    message_id: &str,
) -> String {
    let mut out = own_head(org_name, postmaster_domain, to, subject, now, message_id);
    out.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    out
}

/// The notice as a message (text and HTML), ready to queue.
pub fn notice(n: &SenderNotice<'_>) -> Vec<u8> {
    let headline = n.label(&format!("notice.{}.title", n.kind_key()));
    let subject_line = one_line(n.subject);
    let lead = n.lead();
    let facts = n.facts();

    let mut text = format!("{lead}\r\n\r\n");
    for (label, lines) in &facts {
        let _ = write!(text, "{label}:\r\n");
        for l in lines {
            let _ = write!(text, "  {}\r\n", fold(l));
        }
    }
    // Each link on a line of its own: mail clients make a bare line clickable.
    for (action, url) in n.links {
        let _ = write!(text, "\r\n{}:\r\n  {url}\r\n", n.link_name(*action));
    }

    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\"><p>{}</p><table>",
        html_escape(&lead.replace("\r\n", "\n")).replace('\n', "<br>")
    );
    for (label, lines) in &facts {
        let lines: Vec<String> = lines.iter().map(|l| html_escape(l)).collect();
        let _ = write!(
            html,
            "<tr><th style=\"text-align:left;vertical-align:top;padding-right:1em\">{}</th><td>{}</td></tr>",
            html_escape(label),
            lines.join("<br>")
        );
    }
    html.push_str("</table>");
    for (action, url) in n.links {
        let _ = write!(
            html,
            "<p><a href=\"{}\" style=\"display:inline-block;padding:.5em 1em;border:1px solid #b3261e;\
             border-radius:.3em;text-decoration:none\">{}</a></p>",
            html_escape(url),
            html_escape(&n.link_name(*action))
        );
    }
    html.push_str("</body></html>");
    let html = B64.encode(html);
    let mut html_lines = String::new();
    for chunk in html.as_bytes().chunks(76) {
        html_lines.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        html_lines.push_str("\r\n");
    }

    let boundary = format!("=_tomare_{}", MessageId::generate(n.now));
    let message_id = format!("{}.{}.{}@{}", n.queue_id, n.kind.as_str(), n.now, n.reporting_mta);
    let subject = format!("{headline}: {subject_line}");
    let mut out = own_head(n.org_name, n.postmaster_domain, n.to, &subject, n.now, &message_id);
    let _ = write!(
        out,
        "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {text}\r\n\
         --{boundary}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {html_lines}\
         --{boundary}--\r\n",
    );
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SenderNotice<'static> {
        SenderNotice {
            reporting_mta: "gw.example.com",
            org_name: "Example",
            postmaster_domain: "example.com",
            queue_id: "Q1",
            mail_from: "taro@example.com",
            to: "taro@example.com",
            subject: "見積書",
            message_id_header: "<m@x>",
            kind: NoticeKind::Held,
            reason: "",
            now: 0,
            links: &[],
            lang: None,
            recipients: &[],
            attachments: &[],
            hits: &[],
            changes: &[],
            until: None,
        }
    }

    fn parts(out: &[u8]) -> (String, String, String) {
        let text = String::from_utf8(out.to_vec()).unwrap();
        let parsed = mail_parser::MessageParser::new().parse(out).unwrap();
        let subject = parsed.subject().unwrap_or_default().to_string();
        let plain = parsed.body_text(0).unwrap().to_string();
        let html = parsed.body_html(0).unwrap().to_string();
        assert!(text.lines().all(|l| l.len() <= 998), "no line over 998 bytes");
        (subject, plain, html)
    }

    #[test]
    fn a_held_notice_says_what_who_when_and_what_changes_with_its_links() {
        let links = [
            (LinkAction::Cancel, "https://gw.example.com/a/cancel/abc.def".to_string()),
            (LinkAction::Release, "https://gw.example.com/a/release/ghi.jkl".to_string()),
        ];
        let recipients = [("partner@customer.test".to_string(), true), ("colleague@example.com".to_string(), false)];
        let attachments = ["見積書.pdf".to_string()];
        let changes = ["To/Cc → Bcc".to_string()];
        let n = SenderNotice {
            reason: "Mail to outside waits.",
            links: &links,
            recipients: &recipients,
            attachments: &attachments,
            changes: &changes,
            until: Some("2026-12-02 16:20 (+09:00)"),
            ..base()
        };
        let out = notice(&n);
        let raw = String::from_utf8(out.clone()).unwrap();
        assert!(raw.contains("送信を取り消す / Cancel:\r\n  https://gw.example.com/a/cancel/abc.def\r\n"), "{raw}");
        assert!(raw.contains("今すぐ送信する / Send now:\r\n  https://gw.example.com/a/release/ghi.jkl\r\n"), "{raw}");
        let (subject, plain, html) = parts(&out);
        assert_eq!(subject, "保留中 / Held: 見積書");
        for want in [
            "partner@customer.test [社外 / external]",
            "colleague@example.com",
            "見積書.pdf",
            "2026-12-02 16:20 (+09:00)",
            "To/Cc → Bcc",
            "Mail to outside waits.",
        ] {
            assert!(plain.contains(want), "{want}: {plain}");
            assert!(html.contains(want) || html.contains(&html_escape(want)), "{want}: {html}");
        }
        assert!(html.contains("href=\"https://gw.example.com/a/cancel/abc.def\""), "{html}");
    }

    #[test]
    fn in_the_persons_language_and_nothing_from_the_message_escapes() {
        let recipients = [("\"<script>\"@customer.test".to_string(), true)];
        let n = SenderNotice {
            kind: NoticeKind::Denied,
            reason: "Not to this customer.\r\nBcc: injected@evil.test",
            subject: "見積<b>\r\nBcc: x@evil.test",
            recipients: &recipients,
            lang: Some(Lang::En),
            ..base()
        };
        let out = notice(&n);
        let raw = String::from_utf8(out.clone()).unwrap();
        assert!(!raw.contains("\r\nBcc:"), "no header injection: {raw}");
        let (subject, plain, html) = parts(&out);
        assert!(subject.starts_with("Not sent: 見積<b>"), "{subject}");
        assert!(plain.contains("it was not approved") && !plain.contains("承認者"), "English only: {plain}");
        assert!(plain.contains("Not to this customer.  Bcc: injected@evil.test"), "{plain}");
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }

    #[test]
    fn someone_elses_decision_names_them() {
        let n =
            SenderNotice { kind: NoticeKind::Approved, reason: "web:boss@example.com", lang: Some(Lang::Ja), ..base() };
        let (subject, plain, _) = parts(&notice(&n));
        assert_eq!(subject, "承認されました: 見積書");
        assert!(plain.contains("boss@example.com (web)") && plain.contains("1970-01-01T00:00:00Z"), "{plain}");
        let n = SenderNotice { kind: NoticeKind::Cancelled, reason: "cli", lang: Some(Lang::En), ..base() };
        let (_, plain, _) = parts(&notice(&n));
        assert!(plain.contains("cancelled by cli"), "{plain}");
    }

    #[test]
    fn a_long_subject_is_folded_into_encoded_words() {
        let long = "見積書".repeat(120);
        let n = SenderNotice { subject: &long, ..base() };
        let out = notice(&n);
        let (subject, _, _) = parts(&out);
        assert_eq!(subject, format!("保留中 / Held: {long}"), "reads back whole");
        let raw = String::from_utf8(out).unwrap();
        let head = &raw[..raw.find("\r\n\r\n").unwrap()];
        let subject_lines: Vec<&str> =
            head.lines().filter(|l| l.starts_with("Subject:") || l.starts_with(" =?")).collect();
        assert!(subject_lines.len() > 10 && subject_lines.iter().all(|l| l.len() <= 76), "{head}");
        assert_eq!(encoded_words(""), "=?UTF-8?B??=");
    }

    #[test]
    fn every_kind_has_its_words() {
        for kind in NoticeKind::ALL {
            let n = SenderNotice { kind, reason: "x", ..base() };
            let (subject, plain, _) = parts(&notice(&n));
            assert!(!subject.contains("notice."), "{kind}: {subject}");
            assert!(!plain.contains("notice."), "{kind}: {plain}");
        }
    }
}
