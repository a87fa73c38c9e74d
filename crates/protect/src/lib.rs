//! Protected attachments: what tomare does when a verdict says
//! `protect_attachments`. For the recipients outside the org, the files are
//! taken out of the message and either kept encrypted behind a download
//! link ([`vault`]) or packed into an AES-256 zip; the password of a zip
//! (or of a password link) follows in a mail of its own once the message
//! was delivered. The archive keeps the message as received.
//!
//! Who gets what: recipients inside the org get the files as they are;
//! recipients in `[protect] zip_domains` get the zip; the other outside
//! recipients get what the rules asked for (link or zip).

pub mod mails;
pub mod vault;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tomare_config::{Config, LinkAccess, PasswordTo};
use tomare_model::i18n::{Lang, t};
use tomare_model::{Address, Envelope, MessageId, ProtectMode};
use tomare_store::{NewLink, NewProtection, NewSecret, ProtectedFile};
use tomare_transform::protect::{attachments, file_part, replace_attachments, text_part};
pub use vault::Vault;

pub use tomare_queue::Copy;

/// The protected copies of one message, and the rows they need.
#[derive(Debug, Default)]
pub struct Protected {
    pub link: Option<Vec<u8>>,
    pub zip: Option<Vec<u8>>,
    pub record: NewProtection,
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A download link's token: 32 random bytes, URL-safe; none without the
/// system's randomness.
fn token() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(format!("no randomness for a link: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// How a link's password is kept: generated, high in entropy, so a salted
/// SHA-256 is enough (no dictionary to try).
pub fn password_hash(token_hash: &str, password: &str) -> String {
    sha256_hex(format!("{token_hash}:{password}").as_bytes())
}

/// How a one-time code is kept.
pub fn code_hash(id: &MessageId, email: &str, code: &str) -> String {
    sha256_hex(format!("{id}:{}:{code}", email.to_lowercase()).as_bytes())
}

/// A six-digit one-time code; none without the system's randomness.
pub fn new_code() -> Option<String> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).ok()?;
    Some(format!("{:06}", u32::from_le_bytes(b) % 1_000_000))
}

/// Which copy `rcpt` gets when a message is protected with `mode`: the
/// one rule the scheduler applies too ([`tomare_queue::copy_for`]).
pub fn copy_for(config: &Config, mode: ProtectMode, rcpt: &Address) -> Copy {
    tomare_queue::copy_for(config, rcpt, mode == ProtectMode::Link, true)
}

pub struct Protector {
    pub vault: Arc<Vault>,
    config: Config,
}

impl Protector {
    pub fn new(config: &Config, vault: Arc<Vault>) -> Protector {
        Protector { vault, config: config.clone() }
    }

    /// The URL of a link's page.
    pub fn url(&self, token: &str) -> String {
        format!("{}/d/{token}", self.config.web.base_url())
    }

    /// Protects `base` (the message as the rules rewrote it) for the
    /// recipients outside the org. `Ok(None)`: nothing to protect (no
    /// files, nobody outside). Files of a link are written to the vault
    /// here; its rows go with the decision.
    pub fn protect(
        &self,
        id: &MessageId,
        envelope: &Envelope,
        extra: &[Address],
        base: &[u8],
        mode: ProtectMode,
        now: i64,
    ) -> std::io::Result<Option<Protected>> {
        let files = attachments(base);
        if files.is_empty() {
            return Ok(None);
        }
        let mut to_link = Vec::new();
        let mut to_zip = Vec::new();
        for r in envelope.rcpt_to.iter().chain(extra) {
            match copy_for(&self.config, mode, r) {
                Copy::Plain => {}
                Copy::Link => to_link.push(r.to_string().to_lowercase()),
                Copy::Zip => to_zip.push(r.to_string().to_lowercase()),
            }
        }
        if to_link.is_empty() && to_zip.is_empty() {
            return Ok(None);
        }
        let sender = envelope.mail_from.to_string();
        let p = &self.config.protect;
        let mut out = Protected::default();
        let offset = self.config.org.utc_offset_minutes();
        let listing: String = files
            .iter()
            .map(|f| format!("  {} ({})\r\n", f.name, tomare_model::size_text(f.data.len() as u64)))
            .collect();
        if !to_link.is_empty() {
            let token = token()?;
            let token_hash = sha256_hex(token.as_bytes());
            let expires_at = now + p.link_expiry.0.as_millis() as i64;
            let until = tomare_model::local_time(expires_at, offset);
            let mut password = None;
            if p.link_access == LinkAccess::Password {
                password = Some(tomare_transform::zip::password().map_err(std::io::Error::other)?);
            }
            let mut text = String::new();
            for lang in [Lang::Ja, Lang::En] {
                let access = match p.link_access {
                    LinkAccess::None => String::new(),
                    LinkAccess::Code => t(lang, "protect.link.access.code", &[]) + "\r\n",
                    LinkAccess::Password => t(lang, "protect.link.access.password", &[]) + "\r\n",
                };
                text.push_str(&format!(
                    "{}\r\n\r\n{}\r\n{}\r\n{}\r\n{listing}{}\r\n{access}\r\n",
                    t(lang, "protect.link.lead", &[]),
                    t(lang, "protect.link.url", &[&self.url(&token)]),
                    t(lang, "protect.from", &[&sender]),
                    t(lang, "protect.files", &[]),
                    t(lang, "protect.link.until", &[&until, &p.link_max_downloads]),
                ));
            }
            // Without a copy the files would go out as they are: no link then.
            out.link = Some(
                replace_attachments(base, &[text_part("plain", &text)])
                    .ok_or_else(|| std::io::Error::other("the message could not be rebuilt without its files"))?,
            );
            let slices: Vec<&[u8]> = files.iter().map(|f| f.data.as_slice()).collect();
            self.vault.put(id, &slices)?;
            if let Some(pw) = &password {
                out.record.secrets.push(self.secret("link", pw, &sender, &to_link));
            }
            out.record.link = Some(NewLink {
                password_hash: password.as_deref().map(|pw| password_hash(&token_hash, pw)),
                token_hash,
                sender: sender.clone(),
                recipients: to_link,
                access: p.link_access.as_str().to_string(),
                expires_at,
                max_downloads: p.link_max_downloads,
                files: files
                    .iter()
                    .enumerate()
                    .map(|(idx, f)| ProtectedFile {
                        idx: idx as u32,
                        name: f.name.clone(),
                        content_type: f.content_type.clone(),
                        size: f.data.len() as u64,
                        sha256: sha256_hex(&f.data),
                        downloads: 0,
                    })
                    .collect(),
            });
        }
        if !to_zip.is_empty() {
            let password = tomare_transform::zip::password().map_err(std::io::Error::other)?;
            let packed = tomare_transform::zip::pack(&files, &password).map_err(std::io::Error::other)?;
            let name = tomare_transform::zip::archive_name(&files);
            let key = if p.password_to == PasswordTo::Sender { "protect.zip.lead_sender" } else { "protect.zip.lead" };
            let mut text = String::new();
            for lang in [Lang::Ja, Lang::En] {
                text.push_str(&format!(
                    "{}\r\n{}\r\n{listing}\r\n",
                    t(lang, key, &[&name]),
                    t(lang, "protect.files", &[])
                ));
            }
            out.zip =
                replace_attachments(base, &[text_part("plain", &text), file_part(&name, "application/zip", &packed)]);
            out.record.secrets.push(self.secret("zip", &password, &sender, &to_zip));
        }
        Ok(Some(out))
    }

    fn secret(&self, kind: &str, password: &str, sender: &str, recipients: &[String]) -> NewSecret {
        let send_to = match self.config.protect.password_to {
            PasswordTo::Recipients => recipients.to_vec(),
            PasswordTo::Sender => vec![sender.to_string()],
        };
        NewSecret {
            kind: kind.into(),
            sealed: self.vault.seal(&format!("secret/{kind}"), password.as_bytes()),
            send_to,
        }
    }

    /// The password of a due secret, unsealed.
    pub fn password(&self, kind: &str, sealed: &[u8]) -> Option<String> {
        self.vault.unseal(&format!("secret/{kind}"), sealed).and_then(|p| String::from_utf8(p).ok())
    }
}

impl Protector {
    /// One round of upkeep: the password mails whose time has come are
    /// queued (then their passwords erased), and the files of links that
    /// expired, were revoked or whose message never left are removed.
    /// Returns (password mails sent, links purged).
    pub async fn sweep(&self, store: &dyn tomare_store::Store, mail: &tomare_queue::MailFn) -> (usize, usize) {
        let now = tomare_model::now_ms();
        let delay = self.config.protect.zip_password_delay.0.as_millis() as i64;
        let mut sent = 0;
        match store.due_secrets(now, delay).await {
            Ok(due) => {
                for secret in due {
                    let Some(password) = self.password(&secret.kind, &secret.sealed) else {
                        tracing::error!(id = %secret.message_id, "a sealed password does not open; not sent");
                        let _ = store.secret_sent(&secret.message_id, &secret.kind, now).await;
                        continue;
                    };
                    let (subject, sender) = match store.get(&secret.message_id).await {
                        Ok(Some((row, _))) => (row.subject, row.mail_from.to_string()),
                        _ => (String::new(), String::new()),
                    };
                    let to_sender = self.config.protect.password_to == PasswordTo::Sender;
                    let mut failed = Vec::new();
                    for to in &secret.send_to {
                        let Ok(address) = to.parse::<Address>() else { continue };
                        let m = mails::PasswordMail {
                            to,
                            kind: &secret.kind,
                            password: &password,
                            subject: &subject,
                            sender: &sender,
                            to_sender,
                        };
                        let data = mails::password_mail(&self.config, &m, now);
                        if let Err(e) = mail(address, data).await {
                            tracing::error!(id = %secret.message_id, error = %e, "could not queue the password mail");
                            failed.push(to.clone());
                        }
                    }
                    if failed.is_empty() {
                        sent += 1;
                        tracing::info!(id = %secret.message_id, kind = %secret.kind, "password mail queued");
                        let _ = store.secret_sent(&secret.message_id, &secret.kind, now).await;
                    } else {
                        // Those it reached are not sent it again.
                        let _ = store.secret_left(&secret.message_id, &secret.kind, &failed).await;
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the password mails due failed"),
        }
        let mut purged = 0;
        // Files whose link is gone (retention took the message) go too;
        // not those of a message still in review (its link comes with its
        // decision, moments after its files).
        for id in self.vault.older_than(std::time::Duration::from_secs(3600)) {
            if matches!(store.link_of(&id).await, Ok(None)) && self.vault.remove(&id).is_ok() {
                purged += 1;
            }
        }
        if let Ok(ids) = store.links_to_purge(now).await {
            for id in ids {
                match self.vault.remove(&id) {
                    Ok(()) => {
                        let _ = store.link_purged(&id, now).await;
                        purged += 1;
                    }
                    Err(e) => tracing::error!(%id, error = %e, "could not remove protected files"),
                }
            }
        }
        (sent, purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::default();
        c.protect.zip_domains = vec!["partner.test".into()];
        c
    }

    const RAW: &str = "From: t@example.com\r\nTo: a@customer.test, b@partner.test, c@example.com\r\nSubject: s\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
        --b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"plan.bin\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b--\r\n";

    #[test]
    fn each_recipient_gets_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        let c = config();
        let p = Protector::new(&c, Arc::new(Vault::open(dir.path()).unwrap()));
        let envelope = Envelope {
            mail_from: "t@example.com".parse().unwrap(),
            rcpt_to: ["a@customer.test", "b@partner.test", "c@example.com"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect(),
            helo: String::new(),
            client_ip: String::new(),
            auth_user: None,
        };
        let id = MessageId::generate(5);
        let out = p.protect(&id, &envelope, &[], RAW.as_bytes(), ProtectMode::Link, 1000).unwrap().unwrap();
        let link = out.record.link.as_ref().unwrap();
        assert_eq!(link.recipients, ["a@customer.test"]);
        assert_eq!(link.files[0].sha256, sha256_hex(&[0, 1, 2, 3, 4]));
        assert_eq!(link.expires_at, 1000 + 7 * 86_400_000);
        assert_eq!(p.vault.get(&id, 0).unwrap(), [0, 1, 2, 3, 4]);
        let text = String::from_utf8(out.link.unwrap()).unwrap();
        assert!(!text.contains("AAECAwQ="), "the file is not in the link copy");
        assert_eq!(out.record.secrets.len(), 1, "the zip's password, for partner.test");
        assert_eq!(out.record.secrets[0].send_to, ["b@partner.test"]);
        let pw = p.password("zip", &out.record.secrets[0].sealed).unwrap();
        assert_eq!(pw.len(), 16);
        let zipped = tomare_transform::protect::attachments(&out.zip.unwrap());
        assert_eq!(zipped.len(), 1);
        assert_eq!(zipped[0].name, "plan.zip");
        // Only inside: nothing to do.
        let inside = Envelope { rcpt_to: vec!["c@example.com".parse().unwrap()], ..envelope };
        assert!(p.protect(&id, &inside, &[], RAW.as_bytes(), ProtectMode::Link, 0).unwrap().is_none());
    }
}
