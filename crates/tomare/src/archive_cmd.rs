//! `tomare archive …` and `tomare rules replay`: search, export, verify,
//! reindex, import, legal hold and retention over the archive, and a
//! candidate rule set run over archived mail.

use crate::show::say;
use crate::{ArchiveCommand, ExportFormat};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tomare_archive::index::IndexError;
use tomare_archive::{Archive, ops};
use tomare_config::Config;
use tomare_model::i18n::{Lang, t};
use tomare_model::is_internal_domain;
use tomare_store::Store;

/// A message the candidate rules judge differently (`rules replay`).
#[derive(serde::Serialize)]
struct Difference {
    id: String,
    date: String,
    from: String,
    subject: String,
    before: Side,
    after: Side,
}

#[derive(serde::Serialize)]
struct Side {
    outcome: tomare_model::Outcome,
    rules: Vec<String>,
}

/// Export and replay over a query take every match, up to this.
const ALL: usize = 1_000_000;

/// The archive and the store of an existing data directory; `import` may
/// start one (an old mailbox is often imported before the first `serve`).
async fn open(config: &Config, create: bool) -> Result<(Arc<Archive>, Arc<tomare_store::SqliteStore>)> {
    let store = if create {
        crate::serve::open_store(config).await?
    } else {
        crate::serve::open_existing_store(config).await?
    };
    let dir = config.storage.data_dir.clone();
    let archive = tokio::task::spawn_blocking(move || Archive::open(&dir)).await?.context("opening the archive")?;
    Ok((Arc::new(archive), store))
}

fn inspector(config: &Config) -> Result<Arc<tomare_inspect::Inspector>> {
    Ok(Arc::new(tomare_inspect::Inspector::new(config).map_err(|e| anyhow::anyhow!("[detect]: {e}"))?))
}

/// A query the user got wrong is told (exit 2); other errors stay errors.
fn told<T>(lang: Lang, result: Result<T, IndexError>) -> Result<Result<T, ExitCode>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(IndexError::Query(e)) => {
            eprintln!("{}", t(lang, "archive.bad_query", &[&e]));
            Ok(Err(ExitCode::from(2)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The ids of the archived messages a query finds.
async fn query_ids(
    archive: &Arc<Archive>,
    lang: Lang,
    query: String,
    limit: usize,
) -> Result<Result<Vec<String>, ExitCode>> {
    let a = archive.clone();
    told(lang, tokio::task::spawn_blocking(move || a.index.ids(&query, limit)).await?)
}

/// Highlight HTML (`<b>` around matches, text escaped) for a terminal.
fn plain_highlight(html: &str, tty: bool) -> String {
    let (on, off) = if tty { ("\x1b[1m", "\x1b[0m") } else { ("[", "]") };
    // Text from mail: entities undone, white space folded, controls escaped;
    // only then our own bold around the matches.
    let clean = |s: &str| {
        let s = s
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&amp;", "&");
        tomare_model::escape_controls(&s).into_owned()
    };
    let html = html.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    for (i, part) in html.split("<b>").enumerate() {
        if i == 0 {
            out.push_str(&clean(part));
            continue;
        }
        let (bold, rest) = part.split_once("</b>").unwrap_or((part, ""));
        out.push_str(on);
        out.push_str(&clean(bold));
        out.push_str(off);
        out.push_str(&clean(rest));
    }
    out
}

pub fn archive(config: Config, command: ArchiveCommand) -> Result<ExitCode> {
    let lang = Lang::from_env();
    if let ArchiveCommand::Search { query, limit, json } = command {
        return search(&config, lang, &query, limit, json);
    }
    if let ArchiveCommand::Import { path } = &command
        && !path.exists()
    {
        bail!(t(lang, "archive.no_such_path", &[&path.display()]));
    }
    crate::commands::runtime()?.block_on(async move {
        let (archive, sqlite) = open(&config, matches!(command, ArchiveCommand::Import { .. })).await?;
        let store: Arc<dyn Store> = sqlite.clone();
        let org = store.ensure_org(&config.org.name).await?;
        let code = match command {
            ArchiveCommand::Search { .. } => unreachable!("handled without the store"),
            ArchiveCommand::Export { ids, query, format, out, original } => {
                let mut ids = ids;
                if let Some(q) = query {
                    match query_ids(&archive, lang, q, ALL).await? {
                        Ok(found) => ids.extend(found),
                        Err(code) => return Ok(code),
                    }
                }
                if ids.is_empty() {
                    eprintln!("{}", t(lang, "archive.nothing_to_export", &[]));
                    return Ok(ExitCode::FAILURE);
                }
                let format = match format {
                    ExportFormat::Eml => ops::Format::Eml,
                    ExportFormat::Mbox => ops::Format::Mbox,
                };
                let n = ops::export(&archive, &store, &ids, format, &out, original).await?;
                say!("{}", t(lang, "archive.exported", &[&n, &out.display()]));
                ExitCode::SUCCESS
            }
            ArchiveCommand::Verify { json } => match ops::verify(&archive, &store).await? {
                Ok(report) => {
                    if json {
                        println!("{}", crate::show::json(&json!({"intact": true, "report": report}))?);
                    } else {
                        say!("{}", t(lang, "archive.intact", &[&report.records, &report.checkpoints]));
                        say!("  head: {} {}", report.head_seq, report.head_hash);
                        say!("  key:  {}", report.public_key);
                    }
                    ExitCode::SUCCESS
                }
                Err(broken) => {
                    if json {
                        let v = json!({"intact": false, "seq": broken.seq, "reason": broken.reason});
                        println!("{}", crate::show::json(&v)?);
                    } else {
                        eprintln!("{}", t(lang, "archive.broken", &[&broken.seq, &broken.reason]));
                    }
                    ExitCode::FAILURE
                }
            },
            ArchiveCommand::Reindex => {
                let tty = std::io::stderr().is_terminal();
                let n = ops::reindex(&archive, &store, &inspector(&config)?, |n| {
                    if tty {
                        eprint!("\r{}", t(lang, "archive.progress", &[&n]));
                    }
                })
                .await?;
                if tty {
                    eprintln!();
                }
                say!("{}", t(lang, "archive.reindexed", &[&n]));
                ExitCode::SUCCESS
            }
            ArchiveCommand::Import { path } => {
                let domains = config.org.internal_domains.clone();
                let internal = Arc::new(move |d: &str| is_internal_domain(d, &domains));
                let tty = std::io::stderr().is_terminal();
                let report = ops::import(&archive, &store, &inspector(&config)?, org, &path, internal, |r| {
                    if tty {
                        eprint!("\r{}", t(lang, "archive.progress", &[&r.messages]));
                    }
                })
                .await?;
                if tty {
                    eprintln!();
                }
                say!(
                    "{}",
                    t(
                        lang,
                        "archive.imported",
                        &[&report.messages, &report.skipped_duplicates, &report.unreadable, &report.contacts]
                    )
                );
                ExitCode::SUCCESS
            }
            ArchiveCommand::Hold { mut ids, query, release, reason } => {
                if let Some(q) = query {
                    match query_ids(&archive, lang, q, ALL).await? {
                        Ok(found) => ids.extend(found),
                        Err(code) => return Ok(code),
                    }
                }
                let n = store.set_legal_hold(&ids, !release, "cli", &reason).await?;
                let key = if release { "archive.hold_released" } else { "archive.held" };
                say!("{}", t(lang, key, &[&n]));
                ExitCode::SUCCESS
            }
            ArchiveCommand::Retention => {
                let days = config.archive.retention_days;
                if days == 0 {
                    say!("{}", t(lang, "archive.retention_off", &[]));
                } else {
                    let n = ops::retention(&archive, &store, org, days, tomare_model::now_ms()).await?;
                    say!("{}", t(lang, "archive.retention_done", &[&n, &days]));
                }
                ExitCode::SUCCESS
            }
        };
        sqlite.close().await;
        Ok(code)
    })
}

/// Search reads only the index: no database, no runtime, so a query costs
/// little more than the search itself.
fn search(config: &Config, lang: Lang, query: &str, limit: usize, json: bool) -> Result<ExitCode> {
    crate::datadir::require(&config.storage.data_dir)?;
    let index = tomare_archive::SearchIndex::open(&config.storage.data_dir.join("index"))?;
    let hits = match told(lang, index.search(query, limit))? {
        Ok(h) => h,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", crate::show::json(&hits)?);
    } else if hits.is_empty() {
        say!("{}", t(lang, "archive.no_results", &[]));
    } else {
        let tty = std::io::stdout().is_terminal();
        say!("{:<26}  {:<20}  {:<17}  {:<28}  {:<28}  SUBJECT", "ID", "DATE", "STATE", "FROM", "TO");
        for h in &hits {
            say!(
                "{:<26}  {:<20}  {:<17}  {:<28}  {:<28}  {}",
                h.id,
                h.date,
                h.state,
                crate::commands::cell(&h.from, 28),
                crate::commands::cell(&h.to, 28),
                h.subject
            );
            for hl in &h.highlights {
                // Escaped inside; the bold is ours.
                println!("    … {} …", plain_highlight(hl, tty));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tomare rules replay RULES.toml --query QUERY`: the archived messages
/// the query finds, judged by the current rules and by the candidate set
/// (the config's `[[rule]]`s and rules file replaced by the file's), each
/// at the time it was received. Prints the messages whose outcome or fired
/// rules differ.
pub fn replay(config: Config, rules_path: &Path, query: &str, limit: usize, json: bool) -> Result<ExitCode> {
    let lang = Lang::from_env();
    let text = std::fs::read_to_string(rules_path).with_context(|| format!("reading {}", rules_path.display()))?;
    let candidate_rules = Config::parse_rules(&text).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{}: {e}", rules_path.display())).collect();
        anyhow::anyhow!("invalid rules:\n{}", lines.join("\n"))
    })?;
    let mut candidate_config = config.clone();
    candidate_config.rule.clear();
    let query = query.to_string();
    crate::commands::runtime()?.block_on(async move {
        let (archive, sqlite) = open(&config, false).await?;
        let store: Arc<dyn Store> = sqlite.clone();
        let replayer = tomare_review::Replayer::new(&config)?;
        let ids = match query_ids(&archive, lang, query.clone(), limit).await? {
            Ok(ids) => ids,
            Err(code) => return Ok(code),
        };
        let history = tomare_review::history(store.as_ref(), store.find_org(&config.org.name).await?).await?;
        // Both judged as the server judges: its imported directory included.
        let current =
            tomare_review::Rules::load(&config, crate::load_rules_file(&config)?, Some(store.as_ref())).await?;
        let candidate = tomare_review::Rules::load(&candidate_config, candidate_rules, Some(store.as_ref())).await?;
        let mut differences = Vec::new();
        let mut replayed = 0;
        for id in &ids {
            let Ok(tomare_review::Replayed { envelope, facts, at }) = replayer.received(&archive, &store, id).await
            else {
                continue;
            };
            let before = current.judge(&config, &envelope, &facts, &history, at, lang).verdict;
            let after = candidate.judge(&candidate_config, &envelope, &facts, &history, at, lang).verdict;
            replayed += 1;
            if before.outcome != after.outcome || before.rule_names() != after.rule_names() {
                differences.push(Difference {
                    id: id.clone(),
                    date: tomare_model::rfc3339(at),
                    from: envelope.mail_from.to_string(),
                    subject: facts.subject.clone(),
                    before: Side { outcome: before.outcome, rules: before.rule_names() },
                    after: Side { outcome: after.outcome, rules: after.rule_names() },
                });
            }
        }
        sqlite.close().await;
        if json {
            let v = json!({"replayed": replayed, "changed": differences.len(), "differences": differences});
            println!("{}", crate::show::json(&v)?);
        } else {
            for d in &differences {
                say!("{}  {}  {}", d.id, d.date, d.subject);
                let side = |s: &Side| format!("{} [{}]", s.outcome.as_str(), s.rules.join(", "));
                say!("    {} → {}", side(&d.before), side(&d.after));
            }
            say!("{}", t(lang, "replay.summary", &[&replayed, &differences.len()]));
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_escape_what_came_from_mail_and_keep_their_spaces() {
        let html = "a <b>社外秘</b> b\u{1b}]0;x\u{7}\r\nBcc: y &lt;z&gt;";
        assert_eq!(plain_highlight(html, false), "a [社外秘] b\\x1b]0;x\\x07 Bcc: y <z>");
        assert_eq!(plain_highlight("<b>x</b>", true), "\x1b[1mx\x1b[0m", "our bold on a terminal");
    }
}
