//! Review: an accepted message (envelope and bytes) → what inspection found
//! (Facts), what the rules decide (a Verdict, and who is asked), and the
//! message as it is to be delivered. This is the one place that happens:
//! the server's review stage, `tomare check` and `tomare rules replay` (and
//! the web UI's dry run, later) all go through [`Rules`], so a message and a
//! directory are judged the same way by all of them.
//!
//! Never does I/O beyond what it is handed: the directory and the recipient
//! history are read by the caller ([`Rules::load`] is the one place that
//! reads the imported directory from the store).

use std::sync::{Arc, RwLock};
use tomare_config::{Config, DirectoryUser, Rule};
use tomare_model::i18n::Lang;
use tomare_model::{Envelope, Facts, MessageId, OrgId, ProtectMode, State};
use tomare_policy::{Context, Directory, Engine, History, Outcome, RuleError, Verdict, lookalike};
use tomare_queue::{Review, Ruling};
use tomare_store::{ApprovalRequest, DirectoryEntry, Store};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{0}")]
    Rules(#[from] RuleError),
    #[error("{0}")]
    Store(#[from] tomare_store::StoreError),
    #[error("[detect]: {0}")]
    Detectors(String),
    #[error("archive: {0}")]
    Archive(String),
    #[error("{0}")]
    Dkim(String),
}

/// The rule engine and the directory it reads; replaced whole on reload.
pub struct Rules {
    pub engine: Engine,
    /// Shared with the web, which reads roles and supervisors from it.
    pub directory: Arc<Directory>,
}

/// What the rules decided, and whom it asks.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub verdict: Verdict,
    /// The approver, a group's members, or the org's admins when the
    /// approver could not be found (no supervisor in the directory, a group
    /// without members).
    pub ask: Vec<String>,
    /// Why the people asked are not the approver the rule named, in plain
    /// words.
    pub note: Option<String>,
}

impl Rules {
    /// The engine for `config` with `extra` rules (the rules file, or a
    /// candidate set), and the directory: the config's `[[user]]`s over the
    /// imported people.
    pub fn new(config: &Config, extra: Vec<Rule>, imported: Vec<DirectoryEntry>) -> Result<Rules, RuleError> {
        let engine = Engine::new(config, extra)?;
        let imported = imported.into_iter().map(|e| DirectoryUser {
            email: e.email,
            name: e.name,
            role: e.role,
            supervisor: e.supervisor,
            groups: e.groups,
        });
        let directory = Arc::new(Directory::new(imported.chain(config.user.iter().cloned())));
        Ok(Rules { engine, directory })
    }

    /// [`Rules::new`] with the directory imported for the config's org
    /// (`tomare users import`), read from `store` when there is one. Reads
    /// only: an org not yet in the store has imported nobody.
    pub async fn load(config: &Config, extra: Vec<Rule>, store: Option<&dyn Store>) -> Result<Rules, ReviewError> {
        let imported = match store {
            Some(store) => match store.find_org(&config.org.name).await? {
                Some(org) => store.directory(org).await?,
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        Ok(Rules::new(config, extra, imported)?)
    }

    /// [`Rules::load`] for an org the caller already knows.
    pub async fn load_for(
        config: &Config,
        extra: Vec<Rule>,
        store: &dyn Store,
        org: OrgId,
    ) -> Result<Rules, ReviewError> {
        Ok(Rules::new(config, extra, store.directory(org).await?)?)
    }

    /// The verdict on a message, at `now_ms`, with the org's `history`,
    /// and whom it asks.
    pub fn judge(
        &self,
        config: &Config,
        envelope: &Envelope,
        facts: &Facts,
        history: &History,
        now_ms: i64,
        lang: Lang,
    ) -> Judgement {
        let ctx = Context {
            internal_domains: &config.org.internal_domains,
            directory: &self.directory,
            history,
            now_ms,
            lang,
        };
        let verdict = self.engine.evaluate(envelope, facts, &ctx);
        let (mut ask, mut note) = (Vec::new(), None);
        if let Some(a) = &verdict.approval {
            ask = match a.approver.strip_prefix("group:") {
                Some(group) => self.directory.members(group).into_iter().map(String::from).collect(),
                None if a.approver.contains('@') => vec![a.approver.clone()],
                None => Vec::new(),
            };
            if ask.is_empty() {
                // Nobody the rule named: the admins decide, and it says so.
                ask = config.org.admins.clone();
                let key = if ask.is_empty() { "review.nobody_to_ask" } else { "review.admins_asked" };
                let approver = if a.approver.is_empty() { "supervisor" } else { a.approver.as_str() };
                note = Some(tomare_model::i18n::t(lang, key, &[&approver]));
            }
        }
        Judgement { verdict, ask, note }
    }
}

/// An archived message as it was received, read again: what `tomare rules
/// replay` and the web's dry run judge with a candidate set of rules.
pub struct Replayed {
    pub envelope: Envelope,
    pub facts: Facts,
    /// When it was received (the time its rules are judged at).
    pub at: i64,
}

/// Reads archived messages as they were received and inspects them again
/// (the archive keeps the bytes; the queue keeps only facts without texts).
pub struct Replayer {
    inspector: Arc<tomare_inspect::Inspector>,
}

impl Replayer {
    pub fn new(config: &Config) -> Result<Replayer, ReviewError> {
        Ok(Replayer { inspector: Arc::new(tomare_inspect::Inspector::new(config).map_err(ReviewError::Detectors)?) })
    }

    pub async fn received(
        &self,
        archive: &Arc<tomare_archive::Archive>,
        store: &Arc<dyn Store>,
        id: &str,
    ) -> Result<Replayed, ReviewError> {
        let (bytes, meta) =
            tomare_archive::ops::received(archive, store, id).await.map_err(|e| ReviewError::Archive(e.to_string()))?;
        let at = Some(meta.at()).filter(|at| *at > 0).unwrap_or_else(tomare_model::now_ms);
        let envelope = Envelope {
            mail_from: tomare_model::Address::parse_lenient(meta.mail_from())
                .unwrap_or_else(tomare_model::Address::null),
            rcpt_to: meta.recipients().iter().filter_map(|a| tomare_model::Address::parse_lenient(a)).collect(),
            helo: String::new(),
            client_ip: String::new(),
            auth_user: None,
        };
        let inspector = self.inspector.clone();
        let facts = tokio::task::spawn_blocking(move || inspector.message(&bytes))
            .await
            .map_err(|_| ReviewError::Archive("the inspector failed".into()))?;
        Ok(Replayed { envelope, facts, at })
    }
}

/// The org's recipient history and the domains of mail waiting now, as
/// the server reads them; `tomare check` and `rules replay` read the same.
/// No org in the store yet: no history yet.
pub async fn history(store: &dyn Store, org: Option<OrgId>) -> Result<History, ReviewError> {
    let Some(org) = org else { return Ok(History::default()) };
    Ok(History { contacted: store.contacted(org).await?, waiting: store.waiting_domains(org).await? })
}

/// The server's review stage: inspection, then the rules, then the
/// rewrite, for every committed message (the queue's [`Review`]).
pub struct Reviewer {
    inspector: tomare_inspect::Inspector,
    /// What the archiver is handed after each review (None without archive).
    handoffs: Option<Arc<tomare_archive::ops::Handoffs>>,
    rules: RwLock<Arc<Rules>>,
    /// Refreshed from the store by the server; the domains of mail this
    /// stage holds are added at once, so the next message sees them.
    history: Arc<RwLock<History>>,
    config: Config,
    lang: Lang,
    /// Protects attachments when a verdict says so.
    protector: Option<Arc<tomare_protect::Protector>>,
    /// `[dkim]` keys: what tomare changes or writes is signed again.
    signers: Arc<tomare_transform::dkim::Signers>,
}

/// The `[dkim]` keys, read from their files (relative to the data
/// directory): a key that does not read stops the server at start.
pub fn load_signers(config: &Config) -> Result<tomare_transform::dkim::Signers, String> {
    let mut keys = Vec::new();
    for k in config.dkim.all() {
        let path =
            if k.key_file.is_absolute() { k.key_file.clone() } else { config.storage.data_dir.join(&k.key_file) };
        let pem = std::fs::read(&path).map_err(|e| format!("[dkim] {}: {e}", path.display()))?;
        keys.push(
            tomare_transform::dkim::Signer::from_pem(&k.domain, &k.selector, &pem)
                .map_err(|e| format!("[dkim] {}: {e}", path.display()))?,
        );
    }
    Ok(tomare_transform::dkim::Signers::new(keys))
}

impl Reviewer {
    pub fn new(
        config: &Config,
        rules: Rules,
        history: Arc<RwLock<History>>,
        handoffs: Option<Arc<tomare_archive::ops::Handoffs>>,
        protector: Option<Arc<tomare_protect::Protector>>,
    ) -> Result<Reviewer, ReviewError> {
        Ok(Reviewer {
            protector,
            signers: Arc::new(load_signers(config).map_err(ReviewError::Dkim)?),
            inspector: tomare_inspect::Inspector::new(config).map_err(ReviewError::Detectors)?,
            handoffs,
            rules: RwLock::new(Arc::new(rules)),
            history,
            config: config.clone(),
            lang: Lang::from_env(),
        })
    }

    /// New rules and directory (a reload); in effect for the next message.
    pub fn replace(&self, rules: Rules) {
        let mut w = self.rules.write().unwrap_or_else(|p| p.into_inner());
        *w = Arc::new(rules);
    }

    /// The rules and directory in effect now.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Review for Reviewer {
    fn review(&self, id: &MessageId, envelope: &Envelope, data: &[u8], is_dsn: bool) -> (Facts, Ruling) {
        let facts = self.inspector.message(data);
        if is_dsn {
            // Our own DSNs and notices go to our own senders: no rules;
            // signed, as everything tomare writes.
            let mut ruling = Ruling::default_hold(&self.config, envelope, true);
            ruling.rewritten = self.signed(id, data);
            return (facts, ruling);
        }
        let rules = self.rules();
        let judgement = {
            let history = self.history.read().unwrap_or_else(|p| p.into_inner());
            rules.judge(&self.config, envelope, &facts, &history, tomare_model::now_ms(), self.lang)
        };
        let mut ruling = ruling(&judgement, envelope, data, &self.config);
        if let Some(mode) = judgement.verdict.protect
            && ruling.state != State::Rejected
        {
            self.protect(id, envelope, data, mode, &mut ruling);
        }
        self.sign(id, &mut ruling);
        if matches!(ruling.state, State::Held | State::AwaitingApproval) {
            // What this stage holds counts at once for the next message —
            // but never a domain that itself looks like one already known
            // or waiting: a held typo must not make the real one suspect.
            let mut history = self.history.write().unwrap_or_else(|p| p.into_inner());
            let settled = lookalike::settled(&self.config.org.internal_domains, &history.contacted);
            for r in &envelope.rcpt_to {
                let d = r.domain().to_lowercase();
                let admit = !r.is_internal(&self.config.org.internal_domains)
                    && lookalike::imitates(&d, &settled).is_none()
                    && lookalike::imitates_waiting(&d, &history.waiting, &settled).is_none();
                if admit {
                    history.waiting.insert(d);
                }
            }
        }
        (facts, ruling)
    }

    fn reviewed(&self, id: &MessageId, data: &Arc<Vec<u8>>, facts: Facts) {
        if let Some(handoffs) = &self.handoffs {
            handoffs.put(id.clone(), data, facts);
        }
    }
}

impl Reviewer {
    /// Every copy tomare changed, signed for the sender's domain (when a
    /// key fits); a message left as it is keeps its own signature.
    fn sign(&self, id: &MessageId, ruling: &mut Ruling) {
        if self.signers.is_empty() {
            return;
        }
        if let Some(signed) = ruling.rewritten.as_deref().and_then(|b| self.signed(id, b)) {
            ruling.rewritten = Some(signed);
        }
        for (_, bytes) in ruling.copies.iter_mut() {
            if let Some(signed) = self.signed(id, bytes) {
                *bytes = signed;
            }
        }
    }

    /// `bytes` signed for their From domain, when a key fits; a failure is
    /// logged and the bytes go as they are.
    fn signed(&self, id: &MessageId, bytes: &[u8]) -> Option<Vec<u8>> {
        match self.signers.sign(bytes, tomare_model::now_ms() / 1000) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::error!(%id, error = %e, "DKIM signing failed; sent unsigned");
                None
            }
        }
    }

    /// The protected copies of a message whose verdict asks for them. When
    /// they cannot be made (no vault, a full disk), the files must not go
    /// out as they are: a person decides (the admins; a deadline rejects).
    fn protect(&self, id: &MessageId, envelope: &Envelope, data: &[u8], mode: ProtectMode, ruling: &mut Ruling) {
        let base = ruling.rewritten.as_deref().unwrap_or(data);
        let result = match &self.protector {
            Some(p) => p.protect(id, envelope, &ruling.add_recipients, base, mode, tomare_model::now_ms()),
            None => Err(std::io::Error::other("no vault for protected files")),
        };
        match result {
            Ok(None) => {}
            Ok(Some(done)) => {
                if let Some(bytes) = done.link {
                    ruling.copies.push((tomare_queue::Copy::Link, bytes));
                }
                if let Some(bytes) = done.zip {
                    ruling.copies.push((tomare_queue::Copy::Zip, bytes));
                }
                ruling.protection = Some(done.record);
            }
            Err(e) => {
                tracing::error!(%id, error = %e, "could not protect the attachments");
                ruling.state = State::AwaitingApproval;
                ruling.approval = Some(ApprovalRequest {
                    approver: String::new(),
                    deputy: None,
                    on_timeout: tomare_model::OnTimeout::Reject,
                    timeout_ms: 4 * 3600 * 1000,
                });
                ruling.ask = self.config.org.admins.clone();
                ruling.reasons =
                    format!("{}; protection failed ({e}): approving sends the attachments unprotected", ruling.reasons);
            }
        }
    }
}

/// What a verdict does to a message's DKIM signatures: which of its
/// transforms change the bytes (and so break a signature made upstream),
/// and whether tomare signs the changed copies again.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DkimReport {
    /// The `d=` of the signatures already on the message.
    pub upstream: Vec<String>,
    /// The transforms that change the delivered bytes.
    pub breaking: Vec<String>,
    /// The key that signs the changed copies: (domain, selector).
    pub resigned_by: Option<(String, String)>,
}

pub fn dkim_report(signers: &tomare_transform::dkim::Signers, raw: &[u8], verdict: &Verdict) -> DkimReport {
    DkimReport {
        upstream: tomare_transform::dkim::signatures(raw),
        // Added recipients change the envelope only.
        breaking: verdict.transforms.iter().filter(|t| *t != "add_recipient").cloned().collect(),
        resigned_by: signers.for_message(raw).map(|s| (s.domain.clone(), s.selector.clone())),
    }
}

/// The message as the verdict wants it delivered, if it wants it changed.
/// (A change breaks a DKIM signature made upstream; re-signing is the
/// transform stage's next step.)
pub fn rewrite(v: &Verdict, envelope: &Envelope, data: &[u8], internal: &[String]) -> Option<Vec<u8>> {
    if v.convert_to_bcc.is_none() && v.add_headers.is_empty() {
        return None;
    }
    let mut out = data.to_vec();
    if let Some(mode) = &v.convert_to_bcc {
        out = tomare_transform::convert_to_bcc(&out, mode, &envelope.mail_from.to_string(), internal);
    }
    if !v.add_headers.is_empty() {
        out = tomare_transform::add_headers(&out, &v.add_headers);
    }
    Some(out)
}

/// The judgement in the queue's terms.
fn ruling(j: &Judgement, envelope: &Envelope, data: &[u8], config: &Config) -> Ruling {
    let v = &j.verdict;
    let mut reasons: Vec<String> = v.reject_reason.iter().cloned().collect();
    reasons.extend(v.rules.iter().map(|f| format!("{}: {}", f.name, f.reason)));
    reasons.extend(j.note.iter().cloned());
    Ruling {
        state: match v.outcome {
            Outcome::Deliver => State::Released,
            Outcome::Hold => State::Held,
            Outcome::Approval => State::AwaitingApproval,
            Outcome::Reject => State::Rejected,
        },
        hold_ms: v.hold_seconds as i64 * 1000,
        approval: v.approval.as_ref().map(|a| ApprovalRequest {
            approver: a.approver.clone(),
            deputy: a.deputy.clone(),
            on_timeout: a.on_timeout,
            timeout_ms: a.timeout_seconds as i64 * 1000,
        }),
        reasons: reasons.join("; "),
        verdict: Some(v.clone()),
        rewritten: rewrite(v, envelope, data, &config.org.internal_domains),
        copies: Vec::new(),
        protection: None,
        add_recipients: v.add_recipients.clone(),
        notify: v
            .notify
            .iter()
            .flat_map(|who| match who.as_str() {
                "sender" => vec![envelope.mail_from.to_string()],
                _ => config.org.admins.clone(),
            })
            .filter(|a| !a.is_empty())
            .collect(),
        ask: j.ask.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(approver: &str, admins: &[&str]) -> Config {
        let mut c = Config::default();
        c.policy.builtin = false;
        c.org.admins = admins.iter().map(|a| a.to_string()).collect();
        c.rule = Config::parse_rules(&format!(
            "[[rule]]\nname = \"ask\"\nwhen = {{ all_internal = false }}\nthen = [{{ require_approval = {{ approver = \"{approver}\" }} }}]\n"
        ))
        .unwrap();
        c
    }

    fn judge(c: &Config, imported: Vec<DirectoryEntry>) -> Judgement {
        let rules = Rules::new(c, Vec::new(), imported).unwrap();
        let envelope = Envelope {
            mail_from: "taro@example.com".parse().unwrap(),
            rcpt_to: vec!["a@customer.test".parse().unwrap()],
            helo: String::new(),
            client_ip: String::new(),
            auth_user: None,
        };
        let facts = Facts { complete: true, ..Facts::default() };
        rules.judge(c, &envelope, &facts, &History::default(), 0, Lang::En)
    }

    fn person(email: &str, supervisor: Option<&str>, groups: &[&str]) -> DirectoryEntry {
        DirectoryEntry {
            email: email.into(),
            name: String::new(),
            role: String::new(),
            supervisor: supervisor.map(String::from),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            source: tomare_store::Source::Import,
        }
    }

    #[test]
    fn whom_an_approval_asks() {
        // The imported supervisor.
        let j = judge(
            &config("supervisor", &["admin@example.com"]),
            vec![person("taro@example.com", Some("boss@example.com"), &[])],
        );
        assert_eq!((j.ask.as_slice(), j.note.as_deref()), (&["boss@example.com".to_string()][..], None));
        // No supervisor: the admins, and it says so.
        let j = judge(&config("supervisor", &["admin@example.com"]), Vec::new());
        assert_eq!(j.ask, ["admin@example.com"]);
        assert!(j.note.unwrap().contains("admins are asked"));
        // A group: its members; an empty group: the admins.
        let leads = vec![person("lead@example.com", None, &["leads"])];
        assert_eq!(judge(&config("group:leads", &["admin@example.com"]), leads).ask, ["lead@example.com"]);
        assert_eq!(judge(&config("group:leads", &["admin@example.com"]), Vec::new()).ask, ["admin@example.com"]);
        // Nobody at all: it waits, and the reason says who must decide.
        let j = judge(&config("supervisor", &[]), Vec::new());
        assert!(j.ask.is_empty());
        assert!(j.note.unwrap().contains("until an admin decides"));
    }
}
