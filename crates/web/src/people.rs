//! People: the one list of everyone tomare knows (`tomare user list` and
//! the admin's people page), and the directory's CSV (`tomare users
//! import` and the people page's import).

use tomare_config::Config;
use tomare_store::Store;

use crate::App;
use crate::pages::{Frame, html, said};
use crate::session::{HasCsrf, Posted, lang_of};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tomare_model::i18n::{Lang, both, t};
use tomare_model::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error("{0}")]
    Store(#[from] tomare_store::StoreError),
    #[error("{0}")]
    Rules(#[from] tomare_policy::RuleError),
}

/// One CSV line's fields: commas, double quotes with "" inside.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

/// The directory from CSV with a header row naming the columns email, name,
/// role, supervisor, groups (any order; only email is required).
pub fn parse_directory_csv(text: &str) -> Result<Vec<tomare_store::DirectoryEntry>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> =
        csv_fields(lines.next().unwrap_or_default()).into_iter().map(|h| h.to_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let email = col("email").ok_or("the header row has no \"email\" column")?;
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let f = csv_fields(line);
        let get = |i: Option<usize>| i.and_then(|i| f.get(i)).cloned().unwrap_or_default();
        let address = get(Some(email));
        if !address.contains('@') {
            return Err(format!("line {}: {address:?} is not an address", n + 2));
        }
        let supervisor = get(col("supervisor"));
        out.push(tomare_store::DirectoryEntry {
            source: tomare_store::Source::Import,
            email: address,
            name: get(col("name")),
            role: get(col("role")),
            supervisor: (!supervisor.is_empty()).then_some(supervisor),
            groups: get(col("groups"))
                .split([';', '|'])
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect(),
        });
    }
    Ok(out)
}

/// One person as `user list` shows them.
#[derive(serde::Serialize)]
pub struct PersonLine {
    pub email: String,
    pub name: String,
    pub role: crate::accounts::Role,
    pub supervisor: Option<String>,
    pub groups: Vec<String>,
    pub source: tomare_store::Source,
    pub can_sign_in: bool,
    pub send_as: Vec<String>,
}

/// Everyone tomare knows, one line each: the directory the rules use
/// (config `[[user]]`s over people added or imported), `[org] admins`, and
/// accounts without a directory entry.
pub async fn people(
    config: &Config,
    store: &dyn Store,
    org: Option<tomare_model::OrgId>,
) -> Result<Vec<PersonLine>, PeopleError> {
    let stored = match org {
        Some(org) => store.directory(org).await?,
        None => Vec::new(),
    };
    let rules = tomare_review::Rules::new(config, Vec::new(), stored.clone())?;
    let mut sources: std::collections::BTreeMap<String, tomare_store::Source> =
        stored.iter().map(|e| (e.email.to_lowercase(), e.source)).collect();
    for u in &config.user {
        sources.insert(u.email.to_lowercase(), tomare_store::Source::Config);
    }
    for a in &config.org.admins {
        sources.entry(a.to_lowercase()).or_insert(tomare_store::Source::Config);
    }
    let accounts: std::collections::HashMap<String, tomare_store::UserRow> =
        store.list_users().await?.into_iter().map(|u| (u.email.to_lowercase(), u)).collect();
    for email in accounts.keys() {
        sources.entry(email.clone()).or_insert(tomare_store::Source::Account);
    }
    Ok(sources
        .into_iter()
        .map(|(email, source)| {
            let entry = rules.directory.get(&email);
            let person = crate::accounts::Person::of(config, &rules.directory, &email);
            let account = accounts.get(&email);
            PersonLine {
                name: entry.map(|e| e.name.clone()).unwrap_or_default(),
                role: person.role,
                supervisor: entry.and_then(|e| e.supervisor.clone()),
                groups: entry.map(|e| e.groups.clone()).unwrap_or_default(),
                source,
                can_sign_in: account.is_some(),
                send_as: account.map(|a| a.send_as.iter().map(ToString::to_string).collect()).unwrap_or_default(),
                email,
            }
        })
        .collect())
}

/// The invitation mail: in both languages (the person has chosen none yet).
pub fn invite_mail(app: &App, to: &str, url: &str, now: i64) -> Vec<u8> {
    let org = &app.config.org.name;
    let domain = app.config.org.postmaster_domain();
    let subject = both("invite.subject", &[org], " / ");
    let until = tomare_model::local_time(now + crate::links::INVITE_LIFETIME_MS, app.config.org.utc_offset_minutes());
    let mut mail =
        tomare_queue::notice::own_text_head(org, domain, to, &subject, now, &format!("invite.{now}@{domain}"));
    mail.push_str(&format!(
        "{}\r\n\r\n  {url}\r\n\r\n{}\r\n",
        both("invite.lead", &[&to], "\r\n"),
        both("invite.expires", &[&until], "\r\n"),
    ));
    mail.into_bytes()
}

#[derive(serde::Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

impl HasCsrf for InviteForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// An admin invites a person of the directory who has no password yet: a
/// mail with a signed set-password link, valid 7 days, usable once.
pub async fn invite(State(app): State<App>, posted: Posted<InviteForm>) -> Response {
    let (v, form) = (posted.viewer, posted.form);
    let lang = v.lang;
    if v.role() != crate::accounts::Role::Admin {
        return said(lang, StatusCode::FORBIDDEN, &t(lang, "ui.forbidden", &[]));
    }
    let email = form.email.trim().to_lowercase();
    let Ok(people) = people(&app.config, app.store.as_ref(), Some(app.org)).await else {
        return said(lang, StatusCode::SERVICE_UNAVAILABLE, &t(lang, "link.error", &[]));
    };
    let Some(person) = people.iter().find(|p| p.email == email) else {
        return said(lang, StatusCode::NOT_FOUND, &t(lang, "invite.unknown", &[&email]));
    };
    if person.can_sign_in {
        return said(lang, StatusCode::CONFLICT, &t(lang, "invite.has_password", &[&email]));
    }
    let (Some(mail), Ok(to)) = (&app.mail, email.parse::<tomare_model::Address>()) else {
        return said(lang, StatusCode::SERVICE_UNAVAILABLE, &t(lang, "link.error", &[]));
    };
    let now = now_ms();
    let url = app.links.invite(&email, now);
    match mail(to, invite_mail(&app, &email, &url, now)).await {
        Ok(id) => {
            crate::access::audit(&app, &v, "invite", &email, &id).await;
            said(lang, StatusCode::OK, &t(lang, "invite.sent", &[&email]))
        }
        Err(_) => said(lang, StatusCode::SERVICE_UNAVAILABLE, &t(lang, "link.error", &[])),
    }
}

#[derive(Template)]
#[template(path = "invited.html")]
struct InvitedPage {
    f: Frame,
    email: String,
    note: String,
}

fn invite_refused(lang: Lang, e: crate::links::LinkError) -> Response {
    match e {
        crate::links::LinkError::Invalid => said(lang, StatusCode::BAD_REQUEST, &t(lang, "link.invalid", &[])),
        crate::links::LinkError::Expired => said(lang, StatusCode::GONE, &t(lang, "invite.expired", &[])),
    }
}

fn invited_page(lang: Lang, status: StatusCode, email: String, note: String) -> Response {
    let page = InvitedPage { f: Frame::public(lang, "invite.title"), email, note };
    match page.render() {
        Ok(body) => html(status, body),
        Err(_) => html(StatusCode::INTERNAL_SERVER_ERROR, String::new()),
    }
}

/// GET: the set-password form (changes nothing).
pub async fn invited(State(app): State<App>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let lang = lang_of(&headers, "");
    match app.links.verify_invite(&token, now_ms()) {
        Ok(i) => invited_page(lang, StatusCode::OK, i.email, String::new()),
        Err(e) => invite_refused(lang, e),
    }
}

#[derive(serde::Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    new: String,
}

/// POST: sets the password, once.
pub async fn set_password(
    State(app): State<App>,
    headers: HeaderMap,
    Path(token): Path<String>,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    let lang = lang_of(&headers, "");
    let now = now_ms();
    let invite = match app.links.verify_invite(&token, now) {
        Ok(i) => i,
        Err(e) => return invite_refused(lang, e),
    };
    if form.new.chars().count() < crate::accounts::MIN_PASSWORD_CHARS {
        let note = t(lang, "ui.account.short", &[&crate::accounts::MIN_PASSWORD_CHARS]);
        return invited_page(lang, StatusCode::BAD_REQUEST, invite.email, note);
    }
    let Ok(hash) = crate::accounts::hash_password(&form.new) else {
        return said(lang, StatusCode::SERVICE_UNAVAILABLE, &t(lang, "link.error", &[]));
    };
    // An invitation gives a password to someone who has none; it never
    // replaces one (an older link, a password set meanwhile).
    match app.store.user(&invite.email).await {
        Ok(None) => {}
        Ok(Some(_)) => return said(lang, StatusCode::GONE, &t(lang, "invite.used", &[])),
        Err(_) => return said(lang, StatusCode::SERVICE_UNAVAILABLE, &t(lang, "link.error", &[])),
    }
    match app.store.use_invite(&invite.nonce, &invite.email, now).await {
        Ok(true) => {}
        Ok(false) => return said(lang, StatusCode::GONE, &t(lang, "invite.used", &[])),
        Err(_) => return said(lang, StatusCode::SERVICE_UNAVAILABLE, &t(lang, "link.error", &[])),
    }
    if app.store.put_user(app.org, &invite.email, &hash).await.is_err() {
        return said(lang, StatusCode::SERVICE_UNAVAILABLE, &t(lang, "link.error", &[]));
    }
    let entry = tomare_store::AuditEntry::now(&invite.email, "link", "passwd", &invite.email, "invitation", "");
    crate::access::record(app.store.as_ref(), app.org, &entry).await;
    said(lang, StatusCode::OK, &t(lang, "invite.done", &[&invite.email]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_csv_with_quotes_groups_and_any_column_order() {
        let csv = "name,email,supervisor,groups,role\n\"Yamada, Taro\",taro@example.com,boss@example.com,sales;tokyo,member\n\nBoss,boss@example.com,,,approver\n";
        let d = parse_directory_csv(csv).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "Yamada, Taro");
        assert_eq!(d[0].supervisor.as_deref(), Some("boss@example.com"));
        assert_eq!(d[0].groups, ["sales", "tokyo"]);
        assert_eq!(d[1].supervisor, None);
        assert!(parse_directory_csv("name\nx\n").is_err());
        assert!(parse_directory_csv("email\nnot-an-address\n").unwrap_err().contains("line 2"));
    }
}
