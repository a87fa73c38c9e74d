//! The admin's rule editor. Shows the rules in effect (the built-in pack,
//! the config's `[[rule]]`s, the rules file) and edits the rules file
//! (`[policy] rules_file`, default `data_dir/rules.toml`): **check**
//! refuses what `serve` would refuse, naming the line; **dry run** judges a
//! chosen archived message by the rules now and by the edited ones, through
//! `crates/review` as the server does; **save** checks, writes the file
//! (atomically) and reloads the server's rules, as `tomare rules reload`
//! does. Every save is in the audit log.

use crate::App;
use crate::access;
use crate::pages::{Frame, html};
use crate::session::{AdminOnly, HasCsrf, Posted};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tomare_config::{Config, Rule};
use tomare_model::i18n::t;

/// One rule in effect, and where it comes from.
pub struct Shown {
    pub name: String,
    pub description: String,
    /// `builtin`, `config` or `file`.
    pub source: &'static str,
}

/// A dry run's two sides.
pub struct DryRun {
    pub id: String,
    pub subject: String,
    pub before: (String, Vec<String>),
    pub after: (String, Vec<String>),
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    f: Frame,
    shown: Vec<Shown>,
    path: String,
    text: String,
    message: String,
    errors: Vec<String>,
    note: String,
    dry: Option<DryRun>,
}

fn shown(config: &Config, rules: &[Rule]) -> Vec<Shown> {
    let builtin: Vec<String> = if config.policy.builtin {
        tomare_policy::builtin_rules(config).into_iter().map(|r| r.name).collect()
    } else {
        Vec::new()
    };
    rules
        .iter()
        .map(|r| Shown {
            name: r.name.clone(),
            description: r.description.clone(),
            source: if builtin.contains(&r.name) {
                "builtin"
            } else if config.rule.iter().any(|c| c.name == r.name) {
                "config"
            } else {
                "file"
            },
        })
        .collect()
}

fn read_file(config: &Config) -> String {
    std::fs::read_to_string(config.rules_path()).unwrap_or_default()
}

/// The editor as a page shows it: the text, the dry run's message id, and
/// what the last button said.
#[derive(Default)]
struct Editor {
    text: String,
    message: String,
    errors: Vec<String>,
    note: String,
    dry: Option<DryRun>,
}

async fn render_page(app: &App, v: &crate::session::Viewer, status: StatusCode, e: Editor) -> Response {
    let rules = app.rules();
    let page = RulesPage {
        f: Frame::signed(v, "ui.rules.title", "/rules"),
        shown: shown(&app.config, rules.engine.rules()),
        path: app.config.rules_path().display().to_string(),
        text: e.text,
        message: e.message,
        errors: e.errors,
        note: e.note,
        dry: e.dry,
    };
    match page.render() {
        Ok(body) => html(status, body),
        Err(_) => html(StatusCode::INTERNAL_SERVER_ERROR, String::new()),
    }
}

pub async fn page(State(app): State<App>, AdminOnly(v): AdminOnly) -> Response {
    let text = read_file(&app.config);
    render_page(&app, &v, StatusCode::OK, Editor { text, ..Editor::default() }).await
}

#[derive(serde::Deserialize)]
pub struct RulesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rules: String,
    /// A message id for the dry run.
    #[serde(default)]
    message: String,
    /// `check`, `dry_run` or `save`.
    #[serde(default)]
    r#do: String,
}

impl HasCsrf for RulesForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// What `serve` would say of `text` as the rules file: the rules, or each
/// error with its line.
pub fn check(config: &Config, text: &str) -> Result<Vec<Rule>, Vec<String>> {
    let rules = tomare_config::Config::parse_rules(text).map_err(|errors| {
        errors
            .iter()
            .map(|e| if e.line > 0 { format!("line {}: {}", e.line, e.message) } else { e.message.clone() })
            .collect::<Vec<_>>()
    })?;
    if let Err(e) = tomare_policy::Engine::new(config, rules.clone()) {
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with("name") && l.contains(&format!("\"{}\"", e.rule)))
            .map(|n| format!("line {}: ", n + 1))
            .unwrap_or_default();
        return Err(vec![format!("{line}rule {:?}: {}", e.rule, e.message)]);
    }
    Ok(rules)
}

/// Writes `text` to `path` so that a reader sees the old file or the new
/// one, never half of it.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    // A name of its own: two saves at once never write into one file.
    let tmp = path.with_extension(format!("toml.{}.{}.tmp", std::process::id(), tomare_model::now_ms()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub async fn submit(State(app): State<App>, posted: Posted<RulesForm>) -> Response {
    let (v, form) = (posted.viewer, posted.form);
    if v.role() != crate::accounts::Role::Admin {
        return crate::pages::said(v.lang, StatusCode::FORBIDDEN, &t(v.lang, "ui.forbidden", &[]));
    }
    let lang = v.lang;
    // Line ends as a browser sends them (CRLF) become the file's own.
    let text = form.rules.replace("\r\n", "\n");
    let candidate = match check(&app.config, &text) {
        Ok(rules) => rules,
        Err(errors) => {
            let e = Editor { text, message: form.message, errors, ..Editor::default() };
            return render_page(&app, &v, StatusCode::BAD_REQUEST, e).await;
        }
    };
    match form.r#do.as_str() {
        "dry_run" => {
            let dry = dry_run(&app, &form.message, candidate).await;
            let (status, errors, dry) = match dry {
                Ok(d) => (StatusCode::OK, Vec::new(), Some(d)),
                Err(e) => (StatusCode::BAD_REQUEST, vec![e], None),
            };
            render_page(&app, &v, status, Editor { text, message: form.message, errors, dry, ..Editor::default() })
                .await
        }
        "save" => {
            let path = app.config.rules_path();
            let before = read_file(&app.config);
            if let Err(e) = write_atomically(&path, &text) {
                let errors = vec![t(lang, "ui.rules.write_failed", &[&path.display(), &e])];
                let e = Editor { text, message: form.message, errors, ..Editor::default() };
                return render_page(&app, &v, StatusCode::SERVICE_UNAVAILABLE, e).await;
            }
            let names: Vec<&str> = candidate.iter().map(|r| r.name.as_str()).collect();
            let detail = format!("{} → {} bytes; rules: {}", before.len(), text.len(), names.join(", "));
            access::audit(&app, &v, "rules_change", &path.display().to_string(), &detail).await;
            let note = match &app.reload {
                Some(reload) => match reload().await {
                    Ok(n) => t(lang, "ui.rules.saved", &[&n]),
                    Err(e) => t(lang, "ui.rules.reload_failed", &[&e]),
                },
                None => t(lang, "ui.rules.saved_no_reload", &[]),
            };
            render_page(&app, &v, StatusCode::OK, Editor { text, message: form.message, note, ..Editor::default() })
                .await
        }
        _ => {
            let note = t(lang, "ui.rules.ok", &[]);
            render_page(&app, &v, StatusCode::OK, Editor { text, message: form.message, note, ..Editor::default() })
                .await
        }
    }
}

/// The chosen archived message judged by the rules now and by `candidate`
/// (the rules file replaced), as `tomare rules replay` does.
async fn dry_run(app: &App, id: &str, candidate: Vec<Rule>) -> Result<DryRun, String> {
    let id = id.trim();
    let (Some(archive), Some(replayer)) = (app.archive.clone(), app.replayer.clone()) else {
        return Err("the archive is off: a dry run reads the archived message".into());
    };
    if tomare_model::MessageId::parse(id).is_none() {
        return Err(format!("{id:?} is not a message id"));
    }
    let store = app.store.clone();
    let r = replayer.received(&archive, &store, id).await.map_err(|e| e.to_string())?;
    let history = tomare_review::history(store.as_ref(), Some(app.org)).await.map_err(|e| e.to_string())?;
    let now = app.rules();
    let imported = store.directory(app.org).await.map_err(|e| e.to_string())?;
    let edited = tomare_review::Rules::new(&app.config, candidate, imported).map_err(|e| e.to_string())?;
    let lang = tomare_model::i18n::Lang::from_env();
    let before = now.judge(&app.config, &r.envelope, &r.facts, &history, r.at, lang).verdict;
    let after = edited.judge(&app.config, &r.envelope, &r.facts, &history, r.at, lang).verdict;
    Ok(DryRun {
        id: id.to_string(),
        subject: r.facts.subject.clone(),
        before: (before.outcome.as_str().to_string(), before.rule_names()),
        after: (after.outcome.as_str().to_string(), after.rule_names()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_line_of_what_serve_would_refuse() {
        let config = Config::default();
        let good = "[[rule]]\nname = \"big\"\nwhen = { size = { min = 1000000 } }\nthen = [{ hold = \"1h\" }]\n";
        assert_eq!(check(&config, good).unwrap()[0].name, "big");
        let bad_toml = "[[rule]]\nname = \"x\"\nwhen = { nonsense = 1 }\nthen = []\n";
        let e = check(&config, bad_toml).unwrap_err();
        assert!(e[0].starts_with("line "), "{e:?}");
        let bad_regex = "[[rule]]\nname = \"re\"\nwhen = { text = { matches = \"(\" } }\nthen = [{ hold = \"1h\" }]\n";
        let e = check(&config, bad_regex).unwrap_err();
        assert!(e[0].starts_with("line 2: rule \"re\""), "{e:?}");
    }
}
