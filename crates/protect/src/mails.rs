//! The mails protection sends of its own: the password that follows a zip
//! (or a password link), and the one-time code that opens a link. Both are
//! in Japanese and English (a recipient outside has chosen no language),
//! from the org's MAILER-DAEMON like every notice.

use tomare_config::Config;
use tomare_model::i18n::both;

fn head(config: &Config, to: &str, subject: &str, now: i64, tag: &str) -> String {
    let domain = config.org.postmaster_domain();
    let mut nonce = [0u8; 6];
    let _ = getrandom::fill(&mut nonce);
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("protect.{tag}.{nonce}@{domain}");
    tomare_queue::notice::own_text_head(&config.org.name, domain, to, subject, now, &id)
}

/// A password to send, and what it opens.
pub struct PasswordMail<'a> {
    pub to: &'a str,
    /// `zip` or `link`.
    pub kind: &'a str,
    pub password: &'a str,
    /// The protected message's subject and sender.
    pub subject: &'a str,
    pub sender: &'a str,
    /// To the sender, who passes it on.
    pub to_sender: bool,
}

/// The password mail.
pub fn password_mail(config: &Config, m: &PasswordMail<'_>, now: i64) -> Vec<u8> {
    let PasswordMail { to, kind, password, subject, sender, to_sender } = *m;
    let subject = tomare_model::escape_controls(subject);
    let title = both("protect.password.subject", &[&subject], " / ");
    let lead = if to_sender {
        both("protect.password.lead.sender", &[&subject], "\r\n")
    } else {
        both(&format!("protect.password.lead.{kind}"), &[&subject, &sender], "\r\n")
    };
    let mut out = head(config, to, &title, now, "password");
    out.push_str(&format!("{lead}\r\n\r\n    {password}\r\n"));
    out.into_bytes()
}

/// The one-time code mail.
pub fn code_mail(config: &Config, to: &str, code: &str, sender: &str, now: i64) -> Vec<u8> {
    let title = both("protect.code.subject", &[], " / ");
    let mut out = head(config, to, &title, now, "code");
    out.push_str(&format!("{}\r\n\r\n    {code}\r\n", both("protect.code.lead", &[&sender], "\r\n")));
    out.into_bytes()
}
