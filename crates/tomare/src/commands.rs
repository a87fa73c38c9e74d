//! The command-line tools besides `serve`: `config`, `queue` and `user`.
//! They open the same database as the server (SQLite in WAL mode lets both
//! work at once); every state change is a conditional update, so a command
//! racing the server can never, say, cancel a message already delivering.

use crate::show::say;
use crate::{ConfigCommand, DbCommand, QueueCommand, RulesCommand, UserCommand};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::io::BufRead;
use std::process::ExitCode;
use tomare_config::{Config, EXAMPLE};
use tomare_model::i18n::{Lang, t};
use tomare_model::{MessageId, State, escape_controls, is_internal_domain, rfc3339};
use tomare_store::{MessageRow, ProtectStore, Store, Transition};
use tomare_store::{PeopleStore, QueueStore, WebStore};

pub fn config(command: ConfigCommand) -> Result<ExitCode> {
    let lang = Lang::from_env();
    match command {
        ConfigCommand::Example => {
            print!("{EXAMPLE}");
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check { file } => {
            let name = file.display().to_string();
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("{}", t(lang, "config.read_error", &[&name, &e]));
                    return Ok(ExitCode::from(2));
                }
            };
            match Config::parse(&text) {
                Ok(config) => {
                    // Detector patterns compile only where they are used.
                    if let Err(e) = tomare_inspect::Inspector::new(&config) {
                        eprintln!("{name}: [detect] {e}");
                        return Ok(ExitCode::FAILURE);
                    }
                    // The rules, built as `serve` builds them.
                    if let Err(e) = crate::check_rules(&config, Some((&file, &text))) {
                        eprintln!("{e:#}");
                        return Ok(ExitCode::FAILURE);
                    }
                    say!("{}", t(lang, "config.ok", &[&name]));
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in errors {
                        match e.line {
                            0 => eprintln!("{name}: {}", e.message),
                            line => eprintln!("{}", t(lang, "config.error", &[&name, &line, &e.message])),
                        }
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn parse_id(lang: Lang, id: &str) -> Result<MessageId> {
    MessageId::parse(id).ok_or_else(|| anyhow::anyhow!(t(lang, "queue.bad_id", &[&id])))
}

fn row_json(m: &MessageRow) -> serde_json::Value {
    json!({
        "id": m.id.as_str(),
        "state": m.state.as_str(),
        "from": m.mail_from,
        "to": m.recipients.iter().map(|r| &r.address).collect::<Vec<_>>(),
        "subject": m.subject,
        "header_from": m.header_from,
        "message_id": m.message_id_header,
        "size": m.size,
        "received_at": rfc3339(m.received_at),
        "release_at": m.release_at.map(rfc3339),
        "next_attempt_at": m.next_attempt_at.map(rfc3339),
        "attempts": m.attempts,
        "dsn": m.is_dsn,
    })
}

/// Cuts `s` to at most `width` characters for table output.
pub(crate) fn cell(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

pub fn queue(config: Config, command: QueueCommand) -> Result<ExitCode> {
    let lang = Lang::from_env();
    runtime()?.block_on(async move {
        let store = crate::serve::open_existing_store(&config).await?;
        let code = match command {
            QueueCommand::List { state, limit, json } => {
                let state = match state.as_deref() {
                    None => None,
                    Some(s) => Some(State::parse(s).with_context(|| {
                        let names: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                        format!("unknown state {s:?}; one of {}", names.join(", "))
                    })?),
                };
                let rows = store.list(state, limit).await?;
                if json {
                    let rows: Vec<_> = rows.iter().map(row_json).collect();
                    println!("{}", crate::show::json(&rows)?);
                } else if rows.is_empty() {
                    say!("{}", t(lang, "queue.empty", &[]));
                } else {
                    say!("{:<26}  {:<10}  {:<20}  {:<28}  {:<28}  SUBJECT", "ID", "STATE", "RECEIVED", "FROM", "TO");
                    for m in &rows {
                        let to: Vec<String> = m.recipients.iter().map(|r| r.address.to_string()).collect();
                        say!(
                            "{:<26}  {:<10}  {:<20}  {:<28}  {:<28}  {}",
                            m.id,
                            m.state.as_str(),
                            rfc3339(m.received_at),
                            cell(&m.mail_from.to_string(), 28),
                            cell(&to.join(","), 28),
                            cell(&m.subject, 60)
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            QueueCommand::Show { id, json } => {
                let id = parse_id(lang, &id)?;
                let Some((m, events)) = store.get(&id).await? else {
                    eprintln!("{}", t(lang, "queue.not_found", &[&id]));
                    return Ok(ExitCode::FAILURE);
                };
                let sandbox = config.storage.data_dir.join("sandbox").join(format!("{id}.eml"));
                let sandbox = sandbox.exists().then(|| sandbox.display().to_string());
                let rewritten = tomare_queue::Spool::at(&config.storage.data_dir).out_path(&id);
                let rewritten = rewritten.exists().then(|| rewritten.display().to_string());
                if json {
                    let mut v = row_json(&m);
                    v["helo"] = json!(m.helo);
                    v["client_ip"] = json!(m.client_ip);
                    v["auth_user"] = json!(m.auth_user);
                    v["recipients"] = json!(m.recipients);
                    v["events"] =
                        json!(events
                        .iter()
                        .map(|e| json!({ "at": rfc3339(e.at), "kind": e.kind, "actor": e.actor, "detail": e.detail }))
                        .collect::<Vec<_>>());
                    v["sandbox_copy"] = json!(sandbox);
                    v["rewritten_copy"] = json!(rewritten);
                    let reviewed = store.reviewed(&id).await?;
                    v["facts"] = json!(reviewed.as_ref().map(|r| &r.facts));
                    v["verdict"] = json!(reviewed.as_ref().and_then(|r| r.verdict.as_ref()));
                    v["approval"] = json!(store.approval(&id).await?);
                    println!("{}", crate::show::json(&v)?);
                } else {
                    say!("ID:          {}", m.id);
                    say!("State:       {}", m.state.as_str());
                    say!("From:        <{}>", m.mail_from);
                    say!("Subject:     {}", m.subject);
                    say!("Message-ID:  {}", m.message_id_header);
                    say!("Size:        {} bytes", m.size);
                    say!("Received:    {} from {} [{}]", rfc3339(m.received_at), m.helo, m.client_ip);
                    if let Some(r) = m.release_at {
                        say!("Release at:  {}", rfc3339(r));
                    }
                    if let Some(n) = m.next_attempt_at {
                        say!("Next try:    {}", rfc3339(n));
                    }
                    say!("Recipients:");
                    for r in &m.recipients {
                        say!("  <{}>  {}  {}", r.address, r.status.as_str(), r.reply);
                    }
                    if let Some(tomare_store::Reviewed { facts, verdict }) = store.reviewed(&id).await? {
                        if let Some(verdict) = verdict {
                            let text = t(lang, &format!("outcome.{}", verdict.outcome.as_str()), &[]);
                            say!("{}: {text}", t(lang, "check.verdict", &[]));
                            for r in &verdict.rules {
                                say!("  - {}: {}", r.name, r.reason);
                            }
                        }
                        if let Some(a) = store.approval(&id).await? {
                            let who =
                                if a.approver.is_empty() { t(lang, "check.no_supervisor", &[]) } else { a.approver };
                            say!("{}: {who}", t(lang, "check.approver", &[]));
                        }
                        say!("{}", t(lang, "queue.facts", &[]));
                        for a in &facts.attachments {
                            let enc = if a.encrypted { " (password)" } else { "" };
                            say!("  {} [{}] {} bytes{enc}", a.path, a.detected_type, a.size);
                        }
                        for d in &facts.detections {
                            say!("  {} {} ×{} in {}: {}", d.detector, d.name, d.count, d.location, d.excerpt);
                        }
                        for r in &facts.incomplete_reasons {
                            say!("  {}: {r}", t(lang, "queue.incomplete", &[]));
                        }
                    }
                    say!("Events:");
                    for e in &events {
                        say!("  {}  {:<10}  {:<8}  {}", rfc3339(e.at), e.kind, e.actor, e.detail);
                    }
                    if let Some(path) = sandbox {
                        say!("{}", t(lang, "queue.sandbox_copy", &[&path]));
                    }
                    if let Some(path) = rewritten {
                        say!("{}", t(lang, "queue.rewritten_copy", &[&path]));
                    }
                }
                ExitCode::SUCCESS
            }
            QueueCommand::Release { id } => {
                let id = parse_id(lang, &id)?;
                let result = store.release(&id, "cli").await?;
                audit_cli(&config, store.as_ref(), "release", &id, result).await?;
                report(lang, &id, result, "queue.released")?
            }
            QueueCommand::Approve { id } => {
                let id = parse_id(lang, &id)?;
                let result = store.approve(&id, "cli").await?;
                audit_cli(&config, store.as_ref(), "approve", &id, result).await?;
                report(lang, &id, result, "queue.approved")?
            }
            QueueCommand::Deny { id, reason } => {
                let id = parse_id(lang, &id)?;
                let result = store.deny(&id, "cli", &reason).await?;
                audit_cli(&config, store.as_ref(), "deny", &id, result).await?;
                report(lang, &id, result, "queue.denied")?
            }
            QueueCommand::Cancel { id } => {
                let id = parse_id(lang, &id)?;
                let result = store.cancel(&id, "cli").await?;
                audit_cli(&config, store.as_ref(), "cancel", &id, result).await?;
                if result == Transition::Done && !config.archive.enabled {
                    // Nothing else will read the spool copy (with the
                    // archive on, the archiver removes it once archived).
                    let spool = tomare_queue::Spool::at(&config.storage.data_dir);
                    spool.remove(&id);
                }
                report(lang, &id, result, "queue.cancelled")?
            }
        };
        store.close().await;
        Ok(code)
    })
}

fn report(lang: Lang, id: &MessageId, result: Transition, done_key: &str) -> Result<ExitCode> {
    Ok(match result {
        Transition::Done => {
            say!("{}", t(lang, done_key, &[id]));
            ExitCode::SUCCESS
        }
        Transition::NotFound => {
            eprintln!("{}", t(lang, "queue.not_found", &[id]));
            ExitCode::FAILURE
        }
        Transition::Refused(state) => {
            eprintln!("{}", t(lang, "queue.refused", &[id, &state.as_str()]));
            ExitCode::FAILURE
        }
    })
}

pub fn inspect(config: Config, file: &std::path::Path, json: bool, text: bool) -> Result<ExitCode> {
    let lang = Lang::from_env();
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let inspector = tomare_inspect::Inspector::new(&config).map_err(|e| anyhow::anyhow!(e))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let facts = inspector.file(&name, &bytes);
    if json {
        println!("{}", crate::show::json(&facts)?);
        return Ok(ExitCode::SUCCESS);
    }
    if text {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(crate::show::text(&facts.body_text).as_bytes())?;
        for a in &facts.attachments {
            out.write_all(crate::show::text(&a.text).as_bytes())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !facts.subject.is_empty() || !facts.from.is_empty() {
        say!("{}: {}", t(lang, "inspect.subject", &[]), facts.subject);
        say!("From: {}", facts.from.join(", "));
        say!("To:   {}", facts.to.join(", "));
        if !facts.cc.is_empty() {
            say!("Cc:   {}", facts.cc.join(", "));
        }
        if !facts.bcc.is_empty() {
            say!("Bcc:  {}", facts.bcc.join(", "));
        }
        for m in &facts.malformed_headers {
            say!("{}: {m}", t(lang, "inspect.malformed", &[]));
        }
        say!("{}: {} chars", t(lang, "inspect.body", &[]), facts.body_text.chars().count());
    }
    for a in &facts.attachments {
        let mut flags = Vec::new();
        if a.encrypted {
            flags.push(t(lang, "inspect.encrypted", &[]));
        }
        if a.type_mismatch {
            flags.push(t(lang, "inspect.mismatch", &[]));
        }
        if let Some(e) = &a.error {
            flags.push(e.clone());
        }
        say!(
            "  {}  [{}] {} bytes, {} chars{}",
            a.path,
            a.detected_type,
            a.size,
            a.text.chars().count(),
            if flags.is_empty() { String::new() } else { format!("  ({})", flags.join("; ")) }
        );
    }
    if facts.detections.is_empty() {
        say!("{}", t(lang, "inspect.no_detections", &[]));
    }
    for d in &facts.detections {
        let name = if d.name.is_empty() { String::new() } else { format!(" {}", d.name) };
        say!("  {}{name} ×{} in {}: {}", d.detector, d.count, d.location, d.excerpt);
    }
    if facts.complete {
        say!("{}", t(lang, "inspect.complete", &[]));
    } else {
        say!("{}", t(lang, "inspect.incomplete", &[]));
        for r in &facts.incomplete_reasons {
            say!("  - {r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn check(
    config: Config,
    file: &std::path::Path,
    from: Option<String>,
    to: Vec<String>,
    json: bool,
) -> Result<ExitCode> {
    let lang = Lang::from_env();
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let inspector = tomare_inspect::Inspector::new(&config).map_err(|e| anyhow::anyhow!(e))?;
    let facts = inspector.message(&bytes);
    let address = |s: &str| {
        s.parse::<tomare_model::Address>()
            .map_err(|e| anyhow::anyhow!(t(lang, "check.bad_address", &[&tomare_model::escape_controls(s), &e])))
    };
    let rcpt_to: Vec<tomare_model::Address> = if to.is_empty() {
        // From the headers: what is not an envelope address is left out, said so.
        let mut rcpts = Vec::new();
        for a in facts.to.iter().chain(&facts.cc).chain(&facts.bcc) {
            match address(a) {
                Ok(a) => rcpts.push(a),
                Err(e) => eprintln!("{e}"),
            }
        }
        rcpts
    } else {
        to.iter().map(|a| address(a)).collect::<Result<_>>()?
    };
    let mail_from = match from.or_else(|| facts.from.first().cloned()) {
        Some(from) => address(&from)?,
        None => tomare_model::Address::null(),
    };
    let envelope =
        tomare_model::Envelope { mail_from, rcpt_to, helo: String::new(), client_ip: String::new(), auth_user: None };
    // The rules and the directory as the server has them (its imported
    // people included), and the history; reading changes nothing, and
    // without a database there is neither.
    let (rules, history) = runtime()?.block_on(async {
        let extra = crate::load_rules_file(&config)?;
        let db = config.storage.data_dir.join("tomare.db");
        if !db.exists() {
            return anyhow::Ok((tomare_review::Rules::load(&config, extra, None).await?, Default::default()));
        }
        let store = crate::serve::open_existing_store(&config).await?;
        let rules = tomare_review::Rules::load(&config, extra, Some(store.as_ref())).await?;
        // A dry run writes nothing: no org yet means no history yet.
        let org = store.find_org(&config.org.name).await?;
        let history = tomare_review::history(store.as_ref(), org).await?;
        store.close().await;
        Ok((rules, history))
    })?;
    let judgement = rules.judge(&config, &envelope, &facts, &history, tomare_model::now_ms(), lang);
    let verdict = judgement.verdict;
    let signers = tomare_review::load_signers(&config).map_err(anyhow::Error::msg)?;
    let dkim = tomare_review::dkim_report(&signers, &bytes, &verdict);
    if json {
        let mut v = serde_json::to_value(&verdict)?;
        v["dkim"] = serde_json::to_value(&dkim)?;
        println!("{}", crate::show::json(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = t(lang, &format!("outcome.{}", verdict.outcome.as_str()), &[]);
    say!("{}: {outcome}", t(lang, "check.verdict", &[]));
    if verdict.hold_seconds > 0 {
        say!("{}: {}s", t(lang, "check.hold", &[]), verdict.hold_seconds);
    }
    if let Some(a) = &verdict.approval {
        let who = if a.approver.is_empty() { t(lang, "check.no_supervisor", &[]) } else { a.approver.clone() };
        say!("{}: {who}", t(lang, "check.approver", &[]));
        if !judgement.ask.is_empty() && judgement.ask != [a.approver.clone()] {
            say!("  {}", judgement.ask.join(", "));
        }
        if let Some(note) = &judgement.note {
            say!("  ({note})");
        }
    }
    if let Some(r) = &verdict.reject_reason {
        say!("{}: {r}", t(lang, "check.reject", &[]));
    }
    for f in &verdict.rules {
        say!("  - {}: {}", f.name, f.reason);
    }
    if !verdict.transforms.is_empty() {
        say!("{}: {}", t(lang, "check.transforms", &[]), verdict.transforms.join(", "));
    }
    if !dkim.breaking.is_empty() {
        let breaking = dkim.breaking.join(", ");
        if !dkim.upstream.is_empty() {
            say!("DKIM: {}", t(lang, "check.dkim_breaks", &[&dkim.upstream.join(", "), &breaking]));
        }
        match &dkim.resigned_by {
            Some((d, s)) => say!("DKIM: {}", t(lang, "check.dkim_resigns", &[d, s])),
            None => say!("DKIM: {}", t(lang, "check.dkim_unsigned", &[])),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rules(config: Config, command: RulesCommand) -> Result<ExitCode> {
    let lang = Lang::from_env();
    match command {
        RulesCommand::Replay { rules, query, limit, json } => {
            crate::archive_cmd::replay(config, &rules, &query, limit, json)
        }
        RulesCommand::Builtin => {
            print!("{}", tomare_policy::builtin_toml(&config));
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Reload => {
            let engine = crate::engine(&config)?;
            let pid_file = config.storage.data_dir.join("tomare.pid");
            let pid = signal_server(&config).with_context(|| t(lang, "rules.no_server", &[&pid_file.display()]))?;
            say!("{}", t(lang, "rules.reloaded", &[&engine.rules().len(), &pid]));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Asks the running server (its pid in `data_dir/tomare.pid`) to load its
/// rules and directory again (SIGHUP); its pid, or `None` when none runs.
fn signal_server(config: &Config) -> Option<i32> {
    let pid_file = config.storage.data_dir.join("tomare.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()?;
    // SAFETY: kill(2) with a pid read from our own pid file.
    (unsafe { libc::kill(pid, libc::SIGHUP) } == 0).then_some(pid)
}

/// `user add` / `user passwd`: the password from stdin; `send_as`, when
/// given, replaces the user's grants.
async fn set_password(
    config: &Config,
    store: &dyn Store,
    lang: Lang,
    email: &str,
    send_as: &[String],
    prompt: bool,
) -> Result<()> {
    let address = |a: &str| -> Result<tomare_model::SendAs> {
        let parsed: tomare_model::SendAs =
            a.parse().map_err(|_| anyhow::anyhow!(t(lang, "user.bad_address", &[&escape_controls(a)])))?;
        if !is_internal_domain(parsed.domain(), &config.org.internal_domains) {
            bail!(t(lang, "user.outside_org", &[&a, &config.org.internal_domains.join(", ")]));
        }
        Ok(parsed)
    };
    if !matches!(address(email)?, tomare_model::SendAs::Address(_)) {
        bail!(t(lang, "user.bad_address", &[&escape_controls(email)]));
    }
    let grants = send_as.iter().map(|a| address(a)).collect::<Result<Vec<_>>>()?;
    if prompt {
        eprintln!("{}", t(lang, "user.password_prompt", &[]));
    }
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!(t(lang, "user.empty_password", &[]));
    }
    let org = store.ensure_org(&config.org.name).await?;
    let hash = tomare_web::accounts::hash_password(password).map_err(|e| anyhow::anyhow!("{e}"))?;
    store.put_user(org, email, &hash).await?;
    say!("{}", t(lang, "user.saved", &[&email]));
    if !grants.is_empty() {
        store.set_send_as(email, &grants).await?;
        let list: Vec<String> = grants.iter().map(ToString::to_string).collect();
        say!("{}", t(lang, "user.send_as", &[&email, &list.join(", ")]));
    }
    Ok(())
}

/// `tomare db status` and `tomare db migrate`.
pub fn db(config: Config, command: DbCommand) -> Result<ExitCode> {
    let lang = Lang::from_env();
    crate::datadir::require(&config.storage.data_dir)?;
    let db = config.storage.data_dir.join("tomare.db");
    runtime()?.block_on(async move {
        match command {
            DbCommand::Status { json } => {
                let all = tomare_store::SqliteStore::migration_status(&db).await?;
                if json {
                    println!("{}", crate::show::json(&all)?);
                    return Ok(ExitCode::SUCCESS);
                }
                for m in &all {
                    let state = match m.applied_at {
                        None => t(lang, "db.pending", &[]),
                        Some(at) if m.adopted => t(lang, "db.adopted", &[&rfc3339(at)]),
                        Some(at) => t(lang, "db.applied", &[&rfc3339(at)]),
                    };
                    say!("{:<11} {:04} {:<22} {state}", m.database.file(), m.version, m.name);
                }
                let pending = all.iter().filter(|m| m.applied_at.is_none()).count();
                say!("{}", t(lang, "db.summary", &[&(all.len() - pending), &pending]));
            }
            DbCommand::Migrate => {
                let store = crate::serve::open_store(&config).await?;
                let applied = store.migrations_applied();
                if applied.is_empty() {
                    say!("{}", t(lang, "db.up_to_date", &[]));
                }
                for m in applied {
                    say!("{}", t(lang, "db.migrated", &[&m.database.file(), &format!("{:04}", m.version), &m.name]));
                }
                store.close().await;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// What an admin did to a message at the shell, in the audit log (as the
/// web's actions are).
async fn audit_cli(config: &Config, store: &dyn Store, action: &str, id: &MessageId, result: Transition) -> Result<()> {
    if result == Transition::Done {
        let org = store.ensure_org(&config.org.name).await?;
        tomare_web::access::record_cli(store, org, action, id.as_str()).await;
    }
    Ok(())
}

/// `tomare dkim keygen`: the key file (PKCS#8 PEM, 0600, never over an
/// existing file) and the TXT record to publish, its value cut into the
/// 255-byte strings DNS allows.
pub fn dkim(command: crate::DkimCommand) -> Result<ExitCode> {
    let lang = Lang::from_env();
    let crate::DkimCommand::Keygen { domain, selector, out, algorithm } = command;
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !ok(&domain) || !ok(&selector) {
        bail!(t(lang, "dkim.bad_name", &[]));
    }
    let (pem, k, public) = match algorithm {
        crate::DkimAlgorithm::Ed25519 => {
            let (pem, public) = tomare_transform::dkim::ed25519_keygen().map_err(anyhow::Error::msg)?;
            (pem, "ed25519", public)
        }
        crate::DkimAlgorithm::Rsa => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
            let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)?.to_string();
            let spki = rsa::RsaPublicKey::from(&key).to_public_key_der()?;
            use base64::Engine;
            (pem, "rsa", base64::engine::general_purpose::STANDARD.encode(spki.as_bytes()))
        }
    };
    // Checked the way serve will read it.
    tomare_transform::dkim::Signer::from_pem(&domain, &selector, pem.as_bytes()).map_err(anyhow::Error::msg)?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    let value = format!("v=DKIM1; k={k}; p={public}");
    let strings: Vec<String> =
        value.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    eprintln!("{}", t(lang, "dkim.written", &[&out.display()]));
    println!("{selector}._domainkey.{domain}. IN TXT {}", strings.join(" "));
    Ok(ExitCode::SUCCESS)
}

pub fn protect(config: Config, command: crate::ProtectCommand) -> Result<ExitCode> {
    let lang = Lang::from_env();
    runtime()?.block_on(async move {
        let store = crate::serve::open_existing_store(&config).await?;
        let code = match command {
            crate::ProtectCommand::Show { id, json } => {
                let id = parse_id(lang, &id)?;
                let Some(link) = store.link_of(&id).await? else {
                    eprintln!("{}", t(lang, "protect.cli.none", &[&id]));
                    store.close().await;
                    return Ok(ExitCode::from(1));
                };
                let downloads = store.downloads(&id).await?;
                let status = link.status(tomare_model::now_ms());
                if json {
                    let mut v = serde_json::to_value(&link)?;
                    v["status"] = json!(status);
                    v["downloads"] = serde_json::to_value(&downloads)?;
                    println!("{}", crate::show::json(&v)?);
                } else {
                    say!("{}  {}  {}", id, t(lang, &format!("protect.status.{status}"), &[]), link.access);
                    for f in &link.files {
                        say!(
                            "  [{}] {}  {} B  {}/{}",
                            f.idx,
                            escape_controls(&f.name),
                            f.size,
                            f.downloads,
                            link.max_downloads
                        );
                    }
                    for d in &downloads {
                        say!(
                            "  {}  [{}]  {}  {}  {}",
                            tomare_model::rfc3339(d.at),
                            d.idx,
                            escape_controls(&d.who),
                            d.ip,
                            escape_controls(&d.user_agent)
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            crate::ProtectCommand::Revoke { id } => {
                let id = parse_id(lang, &id)?;
                if store.revoke_link(&id, "cli", tomare_model::now_ms()).await? {
                    let org = store.ensure_org(&config.org.name).await?;
                    tomare_web::access::record_cli(store.as_ref(), org, "revoke_link", id.as_str()).await;
                    say!("{}", t(lang, "protect.cli.revoked", &[&id]));
                    ExitCode::SUCCESS
                } else {
                    eprintln!("{}", t(lang, "protect.cli.none", &[&id]));
                    ExitCode::from(1)
                }
            }
        };
        store.close().await;
        Ok(code)
    })
}

pub fn user(config: Config, command: UserCommand) -> Result<ExitCode> {
    let lang = Lang::from_env();
    runtime()?.block_on(async move {
        let store = crate::serve::open_existing_store(&config).await?;
        match command {
            UserCommand::Add { email, role, supervisor, name, send_as, password_stdin } => {
                let org = store.ensure_org(&config.org.name).await?;
                let role = match role.as_deref().map(|r| (r, tomare_web::accounts::Role::parse(r))) {
                    Some((r, None)) => bail!(t(lang, "user.bad_role", &[&escape_controls(r)])),
                    Some((_, Some(role))) => Some(role),
                    None => None,
                };
                if let Some(s) = &supervisor
                    && s.parse::<tomare_model::Address>().is_err()
                {
                    bail!(t(lang, "user.bad_address", &[&escape_controls(s)]));
                }
                set_password(&config, store.as_ref(), lang, &email, &send_as, !password_stdin).await?;
                if role.is_some() || supervisor.is_some() || name.is_some() {
                    let known = store.directory(org).await?.into_iter().find(|e| e.email.eq_ignore_ascii_case(&email));
                    let known = known.unwrap_or(tomare_store::DirectoryEntry {
                        email: email.to_lowercase(),
                        name: String::new(),
                        role: String::new(),
                        supervisor: None,
                        groups: Vec::new(),
                        source: tomare_store::Source::Cli,
                    });
                    let entry = tomare_store::DirectoryEntry {
                        name: name.unwrap_or(known.name),
                        role: role.map(|r| r.as_str().to_string()).unwrap_or(known.role),
                        supervisor: supervisor.map(|s| s.to_lowercase()).or(known.supervisor),
                        source: tomare_store::Source::Cli,
                        ..known
                    };
                    store.put_person(org, &entry).await?;
                    if config.user.iter().any(|u| u.email.eq_ignore_ascii_case(&email)) {
                        say!("{}", t(lang, "user.config_wins", &[&email]));
                    }
                    if let Some(pid) = signal_server(&config) {
                        say!("{}", t(lang, "user.directory_reloaded", &[&pid]));
                    }
                }
                tomare_web::access::record_cli(store.as_ref(), org, "user_add", &email).await;
            }
            UserCommand::Passwd { email, password_stdin } => {
                set_password(&config, store.as_ref(), lang, &email, &[], !password_stdin).await?;
                let ended = store.delete_sessions_of(&email).await?; // sessions and API tokens
                if ended > 0 {
                    say!("{}", t(lang, "user.sessions_ended", &[&ended]));
                }
                let org = store.ensure_org(&config.org.name).await?;
                tomare_web::access::record_cli(store.as_ref(), org, "passwd", &email).await;
            }
            UserCommand::Import { file } => {
                let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let entries = tomare_web::people::parse_directory_csv(&tomare_inspect::text::decode(&bytes))
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                let org = store.ensure_org(&config.org.name).await?;
                store.put_directory(org, &entries).await?;
                say!("{}", t(lang, "user.imported", &[&entries.len()]));
                // The running server takes the new directory now, not at
                // the next `rules reload`.
                if let Some(pid) = signal_server(&config) {
                    say!("{}", t(lang, "user.directory_reloaded", &[&pid]));
                }
            }
            UserCommand::List { json } => {
                let org = store.find_org(&config.org.name).await?;
                let people = tomare_web::people::people(&config, store.as_ref(), org).await?;
                if json {
                    println!("{}", crate::show::json(&people)?);
                } else if people.is_empty() {
                    say!("{}", t(lang, "user.none", &[]));
                } else {
                    say!(
                        "{:<32}  {:<8}  {:<28}  {:<7}  {:<7}  NAME",
                        "EMAIL",
                        "ROLE",
                        "SUPERVISOR",
                        "SOURCE",
                        "SIGN-IN"
                    );
                    for p in &people {
                        let mut line = format!(
                            "{:<32}  {:<8}  {:<28}  {:<7}  {:<7}  {}",
                            escape_controls(&p.email),
                            p.role.as_str(),
                            escape_controls(p.supervisor.as_deref().unwrap_or("-")),
                            p.source.as_str(),
                            if p.can_sign_in { t(lang, "user.yes", &[]) } else { t(lang, "user.no", &[]) },
                            escape_controls(&p.name),
                        );
                        if !p.send_as.is_empty() {
                            line.push_str(&format!("  (send-as: {})", p.send_as.join(", ")));
                        }
                        say!("{}", line.trim_end());
                    }
                }
            }
            UserCommand::Token { email, revoke: true } => {
                let n = store.revoke_tokens(&email).await?;
                let org = store.ensure_org(&config.org.name).await?;
                tomare_web::access::record_cli(store.as_ref(), org, "token_revoke", &email).await;
                say!("{}", t(lang, "user.tokens_revoked", &[&n, &email]));
            }
            UserCommand::Token { email, revoke: false } => {
                if store.user(&email).await?.is_none() {
                    bail!(t(lang, "user.no_account", &[&escape_controls(&email)]));
                }
                let token = tomare_web::accounts::random_secret(32);
                store.create_token(&tomare_web::accounts::secret_hash(&token), &email).await?;
                let org = store.ensure_org(&config.org.name).await?;
                tomare_web::access::record_cli(store.as_ref(), org, "token", &email).await;
                eprintln!("{}", t(lang, "user.token", &[&email]));
                println!("{token}");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
