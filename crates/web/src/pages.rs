//! The HTML UI: sign-in, the sender's hold tray and history, the
//! approver's queue, the admin's whole queue and audit log, one message,
//! the account page. Server-rendered (askama, escaping everything); the
//! only script is our own `app.js` (the countdowns), so pages work without
//! it. Every state change is a POST carrying the session's CSRF token.

use crate::App;
use crate::access::{self, Acted};
use crate::accounts::{Role, check_password};
use crate::session::{AdminOnly, ApproverOnly, HasCsrf, Posted, Viewer, lang_of};
use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;
use tomare_model::i18n::{Lang, t};
use tomare_model::{LinkAction, MessageId, State as MessageState, now_ms};
use tomare_store::{MessageRow, Reviewed};

/// What every page's frame needs: its language and title, and for a
/// signed-in viewer the navigation and the CSRF token.
pub struct Frame {
    pub lang: Lang,
    pub title: String,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    pub who: String,
}

pub struct NavItem {
    pub href: &'static str,
    pub label: String,
    pub current: bool,
}

impl Frame {
    fn new(lang: Lang, title_key: &str) -> Frame {
        Frame { lang, title: t(lang, title_key, &[]), nav: Vec::new(), csrf: String::new(), who: String::new() }
    }

    /// A page for someone not signed in.
    pub fn public(lang: Lang, title_key: &str) -> Frame {
        Frame::new(lang, title_key)
    }

    pub fn signed(viewer: &Viewer, title_key: &str, here: &str) -> Frame {
        let lang = viewer.lang;
        let mut items = vec![("/tray", "ui.nav.tray"), ("/history", "ui.nav.history"), ("/search", "ui.nav.search")];
        if viewer.role() >= Role::Approver {
            items.push(("/approvals", "ui.nav.approvals"));
        }
        if viewer.role() == Role::Admin {
            items.push(("/dashboard", "ui.nav.dashboard"));
            items.push(("/queue", "ui.nav.queue"));
            items.push(("/audit", "ui.nav.audit"));
            items.push(("/rules", "ui.nav.rules"));
            items.push(("/users", "ui.nav.users"));
        }
        if viewer.sandbox {
            items.push(("/sandbox", "ui.nav.sandbox"));
        }
        items.push(("/account", "ui.nav.account"));
        let nav = items
            .into_iter()
            .map(|(href, key)| NavItem { href, label: t(lang, key, &[]), current: href == here })
            .collect();
        Frame { lang, title: t(lang, title_key, &[]), nav, csrf: viewer.csrf.clone(), who: viewer.email().to_string() }
    }

    /// Text from the i18n table.
    pub fn t(&self, key: &str) -> String {
        t(self.lang, key, &[])
    }

    /// A state's name from its code (`held` → 保留中).
    pub fn state_name(&self, code: &str) -> String {
        t(self.lang, &format!("state.{code}"), &[])
    }

    pub fn lang_code(&self) -> &'static str {
        if self.lang == Lang::Ja { "ja" } else { "en" }
    }
}

/// Every HTML response: no caching, no framing, no script but ours.
pub fn html(status: StatusCode, body: String) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (status, headers, body).into_response()
}

fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "said.html")]
struct Said {
    f: Frame,
    text: String,
}

/// A page that only says `text`.
pub fn said(lang: Lang, status: StatusCode, text: &str) -> Response {
    render(status, Said { f: Frame::new(lang, "ui.title"), text: text.to_string() })
}

fn unavailable(lang: Lang) -> Response {
    said(lang, StatusCode::SERVICE_UNAVAILABLE, &t(lang, "link.error", &[]))
}

pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only a path of this site: never `//elsewhere` or `https://…`.
fn safe_next(next: &str) -> &str {
    // Printable ASCII only: browsers drop tabs and line breaks from a
    // Location, so `/\t/evil` would become `//evil`.
    let printable = next.bytes().all(|b| (0x21..0x7f).contains(&b));
    let path = next.starts_with('/') && !next[1..].starts_with(['/', '\\']);
    if printable && path { next } else { "/tray" }
}

pub async fn home() -> Redirect {
    Redirect::to("/tray")
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    f: Frame,
    next: String,
    email: String,
    error: String,
}

#[derive(serde::Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_page(headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let lang = lang_of(&headers, "");
    let page =
        Login { f: Frame::new(lang, "ui.login.title"), next: q.next, email: String::new(), error: String::new() };
    render(StatusCode::OK, page)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// What a sign-in attempt came to.
pub enum SignIn {
    /// The session's row and its cookie.
    Ok(tomare_store::SessionRow, axum::http::HeaderValue),
    Wrong,
    /// Too many failures: retry after this many seconds.
    Locked(i64),
    Unavailable,
}

/// Checks a password and starts a session; the page and the API both sign
/// in here, under the same throttle and into the same audit log.
pub async fn sign_in(app: &App, email: &str, password: &str, ip: &str, via: &str) -> SignIn {
    let email = email.trim().to_lowercase();
    let now = now_ms();
    // The attempt counts before the (slow) check, so guesses sent in
    // parallel cannot all slip under the limit.
    if let Some(wait) = app.throttle.attempt(&email, ip, now) {
        record(app, &email, via, "login_locked", ip).await;
        return SignIn::Locked((wait + 999) / 1000);
    }
    let account = match app.store.user(&email).await {
        Ok(a) => a,
        Err(_) => return SignIn::Unavailable,
    };
    if !check_password(account.map(|a| a.password_hash), password).await {
        record(app, &email, via, "login_failed", ip).await;
        return SignIn::Wrong;
    }
    app.throttle.succeeded(&email, ip);
    match crate::session::begin(app, &email, ip).await {
        Ok((row, cookie)) => {
            record(app, &email, via, "login", ip).await;
            SignIn::Ok(row, cookie)
        }
        Err(_) => SignIn::Unavailable,
    }
}

async fn record(app: &App, email: &str, via: &str, action: &str, ip: &str) {
    access::record(app.store.as_ref(), app.org, &tomare_store::AuditEntry::now(email, via, action, email, "", ip))
        .await;
}

pub async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let lang = lang_of(&headers, "");
    let again = |status: StatusCode, error: String| {
        let page =
            Login { f: Frame::new(lang, "ui.login.title"), next: form.next.clone(), email: form.email.clone(), error };
        render(status, page)
    };
    match sign_in(&app, &form.email, &form.password, &peer.ip().to_string(), "web").await {
        SignIn::Ok(_, cookie) => {
            let mut r = Redirect::to(safe_next(&form.next)).into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        SignIn::Wrong => again(StatusCode::UNAUTHORIZED, t(lang, "ui.login.wrong", &[])),
        SignIn::Locked(secs) => {
            let mut r = again(StatusCode::TOO_MANY_REQUESTS, t(lang, "ui.login.locked", &[&((secs + 59) / 60)]));
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
            r
        }
        SignIn::Unavailable => unavailable(lang),
    }
}

#[derive(serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

impl HasCsrf for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn logout(State(app): State<App>, posted: Posted<CsrfOnly>) -> Response {
    let v = &posted.viewer;
    if let Some(hash) = &v.session {
        let _ = app.store.delete_session(hash).await;
    }
    access::audit(&app, v, "logout", v.email(), "").await;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, crate::session::end_cookie());
    r
}

/// One recipient as a card shows it.
pub struct Rcpt {
    pub address: String,
    pub external: bool,
    pub status: String,
    pub reply: String,
}

pub struct AttachmentLine {
    pub name: String,
    pub kind: String,
    pub size: String,
    pub note: String,
}

pub struct Button {
    pub action: &'static str,
    pub value: String,
    pub label: String,
}

/// A point in time: for `app.js` (milliseconds) and for people (UTC text,
/// which the script replaces with the browser's local time).
pub struct When {
    pub ms: i64,
    pub iso: String,
}

impl When {
    fn at(ms: i64) -> When {
        When { ms, iso: tomare_model::rfc3339(ms) }
    }
}

/// A message as a row of a list or the head of its own page.
pub struct Card {
    pub id: String,
    pub subject: String,
    pub from: String,
    pub state: String,
    pub state_name: String,
    pub received: When,
    /// The end of the hold, or the approval's deadline.
    pub until: Option<When>,
    pub recipients: Vec<Rcpt>,
    pub attachments: Vec<AttachmentLine>,
    pub reasons: Vec<String>,
    pub hits: Vec<String>,
    pub buttons: Vec<Button>,
    /// Approve/deny here: a comment box goes with the buttons.
    pub deciding: bool,
    /// Its download link, when its files were protected: (state, the
    /// state in words, downloads so far).
    pub link: Option<(&'static str, String, u32)>,
}

use tomare_model::size_text;

fn card(app: &App, v: &Viewer, m: &MessageRow, reviewed: Option<&Reviewed>, seen: Option<&access::Seen>) -> Card {
    let lang = v.lang;
    let internal = &app.config.org.internal_domains;
    let recipients = m
        .recipients
        .iter()
        .map(|r| Rcpt {
            address: r.address.to_string(),
            external: !r.address.is_internal(internal),
            status: t(lang, &format!("rcpt.{}", r.status.as_str()), &[]),
            reply: r.reply.clone(),
        })
        .collect();
    let (mut attachments, mut reasons, mut hits) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(r) = reviewed {
        for a in &r.facts.attachments {
            let mut note = Vec::new();
            if a.encrypted {
                note.push(t(lang, "ui.encrypted", &[]));
            }
            if a.error.is_some() {
                note.push(t(lang, "ui.incomplete", &[]));
            }
            let kind = if a.detected_type.is_empty() { a.content_type.clone() } else { a.detected_type.clone() };
            attachments.push(AttachmentLine {
                name: a.name.clone(),
                kind,
                size: size_text(a.size),
                note: note.join(", "),
            });
        }
        if let Some(verdict) = &r.verdict {
            reasons = verdict.rules.iter().map(|f| f.reason.clone()).collect();
        }
        hits = r.facts.detections.iter().map(tomare_model::Detection::line).collect();
    }
    let mut buttons = Vec::new();
    let mut deciding = false;
    if let Some(seen) = seen {
        for action in [LinkAction::Release, LinkAction::Cancel, LinkAction::Approve, LinkAction::Deny] {
            if seen.may(v, action) && seen.applies(action) {
                deciding |= matches!(action, LinkAction::Approve | LinkAction::Deny);
                buttons.push(Button {
                    action: action.as_str(),
                    value: format!("{}:{}", action.as_str(), m.id),
                    label: t(lang, &format!("ui.do.{}", action.as_str()), &[]),
                });
            }
        }
    }
    let waiting = matches!(m.state, MessageState::Held | MessageState::AwaitingApproval);
    Card {
        id: m.id.to_string(),
        subject: if m.subject.is_empty() { t(lang, "ui.no_subject", &[]) } else { m.subject.clone() },
        from: m.mail_from.to_string(),
        state: m.state.as_str().to_string(),
        state_name: t(lang, &format!("state.{}", m.state.as_str()), &[]),
        received: When::at(m.received_at),
        until: m.release_at.filter(|_| waiting).map(When::at),
        recipients,
        attachments,
        reasons,
        hits,
        buttons,
        deciding,
        link: None,
    }
}

/// Cards for the messages `rows`, each with what the viewer may do to it.
async fn cards(app: &App, v: &Viewer, rows: &[MessageRow]) -> Result<Vec<Card>, tomare_store::StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for m in rows {
        let reviewed = app.store.reviewed(&m.id).await?;
        let seen = access::visible(app, v, &m.id).await?;
        let mut c = card(app, v, m, reviewed.as_ref(), seen.as_ref());
        if let Some(link) = app.store.link_of(&m.id).await? {
            let state = link.status(now_ms());
            let downloads = link.files.iter().map(|f| f.downloads).sum();
            c.link = Some((state, t(v.lang, &format!("protect.status.{state}"), &[]), downloads));
        }
        out.push(c);
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "list.html")]
struct List {
    f: Frame,
    cards: Vec<Card>,
    empty: String,
    back: String,
    /// Several at once: the bulk buttons.
    bulk: Vec<Button>,
    filter: Vec<(String, String, bool)>,
    /// Each recipient's delivery status (not for mail that still waits).
    statuses: bool,
    /// A second list below (an approver's own decisions), with its title.
    more: Vec<Card>,
    more_title: String,
}

const LIST_LIMIT: i64 = 200;

async fn list_page(
    app: &App,
    v: &Viewer,
    title: &str,
    here: &str,
    states: &[MessageState],
    keep: impl Fn(&MessageRow) -> bool,
    empty: &str,
) -> Response {
    // The tray and the history are the viewer's own mail, whoever else's
    // they may see.
    let scope = if matches!(here, "/tray" | "/history") {
        tomare_store::Scope::Own { org: app.org, email: v.email().to_string() }
    } else {
        access::scope(app, v)
    };
    let rows = match app.store.visible(&scope, states, LIST_LIMIT).await {
        Ok(rows) => rows.into_iter().filter(|m| keep(m)).collect::<Vec<_>>(),
        Err(_) => return unavailable(v.lang),
    };
    let Ok(mut cards) = cards(app, v, &rows).await else { return unavailable(v.lang) };
    if here == "/approvals" {
        // What waits for this viewer's decision, not all they may see.
        cards.retain(|c| c.deciding);
    }
    let mut bulk = Vec::new();
    for action in ["release", "cancel"] {
        if cards.iter().any(|c| c.buttons.iter().any(|b| b.action == action)) {
            bulk.push(Button { action, value: action.into(), label: t(v.lang, &format!("ui.bulk.{action}"), &[]) });
        }
    }
    let page = List {
        f: Frame::signed(v, title, here),
        cards,
        empty: t(v.lang, empty, &[]),
        back: here.into(),
        bulk,
        filter: Vec::new(),
        statuses: here == "/history",
        more: Vec::new(),
        more_title: String::new(),
    };
    if here == "/approvals" {
        // Below what waits: what this approver decided.
        let mut decided = Vec::new();
        let Ok(ids) = app.store.decided_by(app.org, v.email(), 50).await else { return unavailable(v.lang) };
        for id in ids {
            if let Ok(Some(seen)) = access::visible(app, v, &id).await {
                decided.push(seen.message);
            }
        }
        let Ok(mut more) = self::cards(app, v, &decided).await else { return unavailable(v.lang) };
        // A history: its cards carry no buttons (they are outside the form).
        for c in &mut more {
            c.buttons.clear();
            c.deciding = false;
        }
        return render(
            StatusCode::OK,
            List { more, more_title: t(v.lang, "ui.approvals.decided", &[]), statuses: true, ..page },
        );
    }
    render(StatusCode::OK, page)
}

/// The sender's own mail that waits: held, or awaiting approval.
pub async fn tray(State(app): State<App>, v: Viewer) -> Response {
    let states = [MessageState::Held, MessageState::AwaitingApproval];
    list_page(&app, &v, "ui.tray.title", "/tray", &states, |m| access::is_own(&v, m), "ui.tray.empty").await
}

/// The sender's own mail that no longer waits.
pub async fn history(State(app): State<App>, v: Viewer) -> Response {
    let states: Vec<MessageState> = MessageState::ALL
        .into_iter()
        .filter(|s| !matches!(s, MessageState::Held | MessageState::AwaitingApproval))
        .collect();
    list_page(&app, &v, "ui.history.title", "/history", &states, |m| access::is_own(&v, m), "ui.history.empty").await
}

/// What waits for this approver's decision (for an admin: every approval).
pub async fn approvals(State(app): State<App>, ApproverOnly(v): ApproverOnly) -> Response {
    let states = [MessageState::AwaitingApproval];
    list_page(
        &app,
        &v,
        "ui.approvals.title",
        "/approvals",
        &states,
        |m| !access::is_own(&v, m) || v.role() == Role::Admin,
        "ui.approvals.empty",
    )
    .await
}

#[derive(serde::Deserialize, Default)]
pub struct StateQuery {
    #[serde(default)]
    state: String,
}

/// The org's whole queue, by state.
pub async fn queue(State(app): State<App>, AdminOnly(v): AdminOnly, Query(q): Query<StateQuery>) -> Response {
    let chosen = MessageState::ALL.into_iter().find(|s| s.as_str() == q.state);
    let states: Vec<MessageState> = chosen.into_iter().collect();
    let rows = match app.store.visible(&access::scope(&app, &v), &states, LIST_LIMIT).await {
        Ok(rows) => rows,
        Err(_) => return unavailable(v.lang),
    };
    let Ok(cards) = cards(&app, &v, &rows).await else { return unavailable(v.lang) };
    let mut filter = vec![(String::new(), t(v.lang, "ui.queue.all", &[]), chosen.is_none())];
    for s in MessageState::ALL {
        filter.push((s.as_str().into(), t(v.lang, &format!("state.{}", s.as_str()), &[]), chosen == Some(s)));
    }
    let back = match chosen {
        Some(s) => format!("/queue?state={}", s.as_str()),
        None => "/queue".into(),
    };
    let page = List {
        f: Frame::signed(&v, "ui.queue.title", "/queue"),
        cards,
        empty: t(v.lang, "ui.queue.empty", &[]),
        back,
        bulk: Vec::new(),
        filter,
        statuses: true,
        more: Vec::new(),
        more_title: String::new(),
    };
    render(StatusCode::OK, page)
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    f: Frame,
    c: Card,
    back: String,
    facts: Vec<(String, String)>,
    events: Vec<(When, String, String, String)>,
    /// The texts inspection read (the body, each attachment's), the
    /// keywords found marked.
    texts: Vec<(String, Vec<(String, bool)>)>,
    /// The body as HTML, shown in a sandboxed frame (its own address).
    html: bool,
    /// The archive has the message: it can be downloaded.
    archived: bool,
    /// Its download link, when its attachments were protected.
    link: Option<LinkView>,
}

/// A message's download link as its page shows it.
struct LinkView {
    status: String,
    /// `active`, `revoked`, `expired` or `pending`.
    state: &'static str,
    until: When,
    access: String,
    /// (name, size, downloads, allowed)
    files: Vec<(String, String, u32, u32)>,
    /// (when, file, who, address, user agent)
    downloads: Vec<(When, String, String, String, String)>,
    may_revoke: bool,
}

async fn link_view(app: &App, v: &Viewer, seen: &access::Seen) -> Option<LinkView> {
    let (link, downloads) = crate::download::of_message(app, &seen.message.id).await?;
    let state = link.status(now_ms());
    let name_of = |idx: u32| link.files.iter().find(|f| f.idx == idx).map(|f| f.name.clone()).unwrap_or_default();
    Some(LinkView {
        status: t(v.lang, &format!("protect.status.{state}"), &[]),
        state,
        until: When::at(link.expires_at),
        access: link.access.clone(),
        files: link
            .files
            .iter()
            .map(|f| (f.name.clone(), size_text(f.size), f.downloads, link.max_downloads))
            .collect(),
        downloads: downloads
            .iter()
            .map(|d| (When::at(d.at), name_of(d.idx), d.who.clone(), d.ip.clone(), d.user_agent.clone()))
            .collect(),
        may_revoke: link.revoked_at.is_none()
            && link.purged_at.is_none()
            && (v.role() == Role::Admin || access::is_own(v, &seen.message)),
    })
}

/// Revokes a message's download link (its sender, or an admin): the files
/// stop downloading at once, even after the mail went out.
pub async fn revoke(State(app): State<App>, Path(id): Path<String>, posted: Posted<CsrfOnly>) -> Response {
    let v = &posted.viewer;
    let lang = v.lang;
    let Some(id) = MessageId::parse(&id) else {
        return said(lang, StatusCode::NOT_FOUND, &t(lang, "link.not_found", &[]));
    };
    let seen = match access::visible(&app, v, &id).await {
        Ok(Some(s)) => s,
        Ok(None) => return said(lang, StatusCode::NOT_FOUND, &t(lang, "link.not_found", &[])),
        Err(_) => return unavailable(lang),
    };
    if !(v.role() == Role::Admin || access::is_own(v, &seen.message)) {
        return said(lang, StatusCode::FORBIDDEN, &t(lang, "ui.forbidden", &[]));
    }
    match app.store.revoke_link(&id, &v.actor(), now_ms()).await {
        Ok(true) => {
            access::audit(&app, v, "revoke_link", id.as_str(), "").await;
            Redirect::to(&format!("/messages/{id}")).into_response()
        }
        Ok(false) => said(lang, StatusCode::CONFLICT, &t(lang, "protect.cli.none", &[&id])),
        Err(_) => unavailable(lang),
    }
}

pub async fn message(State(app): State<App>, v: Viewer, Path(id): Path<String>) -> Response {
    let not_found = || said(v.lang, StatusCode::NOT_FOUND, &t(v.lang, "link.not_found", &[]));
    let Some(id) = MessageId::parse(&id) else { return not_found() };
    let seen = match access::visible(&app, &v, &id).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(),
        Err(_) => return unavailable(v.lang),
    };
    let Ok(reviewed) = app.store.reviewed(&id).await else { return unavailable(v.lang) };
    let m = &seen.message;
    let c = card(&app, &v, m, reviewed.as_ref(), Some(&seen));
    let lang = v.lang;
    let mut facts = vec![
        (t(lang, "ui.header_from", &[]), m.header_from.clone()),
        (t(lang, "ui.envelope_from", &[]), m.mail_from.to_string()),
        ("Message-ID".to_string(), m.message_id_header.clone()),
        (t(lang, "ui.size", &[]), size_text(m.size.max(0) as u64)),
        (t(lang, "ui.client", &[]), format!("{} ({})", m.client_ip, m.helo)),
    ];
    if let Some(u) = &m.auth_user {
        facts.push((t(lang, "ui.auth_user", &[]), u.clone()));
    }
    if !seen.asked.is_empty() {
        facts.push((t(lang, "ui.asked", &[]), seen.asked.join(", ")));
    }
    let events =
        seen.events.iter().map(|e| (When::at(e.at), e.kind.clone(), e.actor.clone(), e.detail.clone())).collect();
    // The queue keeps facts without their texts: the texts come from the
    // archived message, inspected again (as a dry run does).
    let full = match (&app.archive, &app.replayer) {
        (Some(archive), Some(replayer)) => {
            replayer.received(archive, &app.store, id.as_str()).await.ok().map(|r| r.facts)
        }
        _ => None,
    };
    let facts_now = full.as_ref().or(reviewed.as_ref().map(|r| &r.facts));
    let terms: Vec<String> = facts_now
        .map(|f| {
            f.detections
                .iter()
                .filter(|d| d.detector == "keyword" && !d.name.is_empty())
                .map(|d| d.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut texts = Vec::new();
    if let Some(f) = &full {
        if !f.body_text.is_empty() {
            texts.push((t(lang, "ui.body", &[]), highlight(&f.body_text, &terms)));
        }
        for a in f.attachments.iter().filter(|a| !a.text.is_empty()) {
            texts.push((a.path.clone(), highlight(&a.text, &terms)));
        }
    }
    let raw = crate::mail::bytes(&app, id.as_str()).await;
    let html = raw.as_deref().and_then(crate::mail::safe_html).is_some();
    let link = link_view(&app, &v, &seen).await;
    let page = MessagePage {
        link,
        f: Frame::signed(&v, "ui.message.title", ""),
        c,
        back: format!("/messages/{id}"),
        facts,
        events,
        texts,
        html,
        archived: raw.is_some(),
    };
    render(StatusCode::OK, page)
}

/// The message's HTML body, sanitised, for the sandboxed frame of its page:
/// under a policy that runs no script and loads nothing from anywhere.
pub async fn message_html(State(app): State<App>, v: Viewer, Path(id): Path<String>) -> Response {
    let Some(id) = MessageId::parse(&id) else { return StatusCode::NOT_FOUND.into_response() };
    match access::visible(&app, &v, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
    let Some(html) = crate::mail::bytes(&app, id.as_str()).await.as_deref().and_then(crate::mail::safe_html) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    inert_html(html)
}

/// Sanitised HTML from mail as its own document, under a policy that runs
/// nothing and loads nothing, for a sandboxed frame.
fn inert_html(html: String) -> Response {
    let doc = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><base target=\"_blank\"></head><body>{html}</body></html>"
    );
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        // Nothing runs and nothing loads: images only from the message
        // itself (data:), and the frame is a unique origin (sandbox).
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; \
             frame-ancestors 'self'; base-uri 'none'; sandbox allow-popups allow-popups-to-escape-sandbox",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (StatusCode::OK, headers, doc).into_response()
}

/// The message as stored (as delivered, else as received), to download.
pub async fn message_eml(State(app): State<App>, v: Viewer, Path(id): Path<String>) -> Response {
    let not_found = || said(v.lang, StatusCode::NOT_FOUND, &t(v.lang, "link.not_found", &[]));
    let Some(id) = MessageId::parse(&id) else { return not_found() };
    match access::visible(&app, &v, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(),
        Err(_) => return unavailable(v.lang),
    }
    let Some(raw) = crate::mail::bytes(&app, id.as_str()).await else { return not_found() };
    access::audit(&app, &v, "download", id.as_str(), "eml").await;
    let disposition = format!("attachment; filename=\"{id}.eml\"");
    ([(header::CONTENT_TYPE, "message/rfc822".to_string()), (header::CONTENT_DISPOSITION, disposition)], raw)
        .into_response()
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    f: Frame,
    q: String,
    hits: Vec<tomare_archive::Hit>,
    error: String,
    searched: bool,
}

#[derive(serde::Deserialize, Default)]
pub struct ArchiveQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    format: String,
}

/// The archive search (the query language of `tomare archive search`),
/// and the results as one mbox (`format=mbox`).
pub async fn search(State(app): State<App>, v: Viewer, Query(q): Query<ArchiveQuery>) -> Response {
    let lang = v.lang;
    let query = q.q.trim().to_string();
    let (hits, error) = if query.is_empty() {
        (Vec::new(), String::new())
    } else {
        match crate::mail::search(&app, &v, &query).await {
            Ok(h) => (h, String::new()),
            Err(crate::mail::SearchError::Query(m)) => (Vec::new(), t(lang, "ui.search.bad", &[&m])),
            Err(crate::mail::SearchError::Unavailable) => (Vec::new(), t(lang, "ui.search.unavailable", &[])),
        }
    };
    if q.format == "mbox" && error.is_empty() {
        let mut out = Vec::new();
        for h in &hits {
            if let Some(raw) = crate::mail::bytes(&app, &h.id).await {
                let _ = tomare_archive::ops::write_mbox(&mut out, &raw);
            }
        }
        access::audit(&app, &v, "export", &query, &format!("{} messages, mbox", hits.len())).await;
        let headers = [
            (header::CONTENT_TYPE, "application/mbox".to_string()),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"tomare-search.mbox\"".to_string()),
        ];
        return (headers, out).into_response();
    }
    if !query.is_empty() {
        access::audit(&app, &v, "search", &query, &format!("{} hits", hits.len())).await;
    }
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let searched = !query.is_empty();
    let page = SearchPage { f: Frame::signed(&v, "ui.search.title", "/search"), searched, q: query, hits, error };
    render(status, page)
}

/// Most of a text a page shows.
const TEXT_SHOWN: usize = 20_000;

/// `text` (at most [`TEXT_SHOWN`] characters) in pieces, those that are one
/// of `terms` (ASCII case aside) marked.
pub fn highlight(text: &str, terms: &[String]) -> Vec<(String, bool)> {
    let text: String = text.chars().take(TEXT_SHOWN).collect();
    let lower = text.to_ascii_lowercase();
    let terms: Vec<String> = terms.iter().filter(|t| !t.is_empty()).map(|t| t.to_ascii_lowercase()).collect();
    let mut out = Vec::new();
    let (mut at, mut plain) = (0, 0);
    while at < text.len() {
        if let Some(term) = terms.iter().find(|t| lower[at..].starts_with(t.as_str())) {
            if plain < at {
                out.push((text[plain..at].to_string(), false));
            }
            out.push((text[at..at + term.len()].to_string(), true));
            at += term.len();
            plain = at;
        } else {
            at += text[at..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if plain < text.len() {
        out.push((text[plain..].to_string(), false));
    }
    out
}

/// A list's form: the CSRF token, the button pressed (`do` = `ACTION:ID`
/// for one message, `ACTION` for the ticked `id`s), comments by message
/// (`reason:ID`) and the page to go back to.
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct ActForm(Vec<(String, String)>);

impl ActForm {
    fn get(&self, key: &str) -> &str {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

impl HasCsrf for ActForm {
    fn csrf(&self) -> &str {
        self.get("csrf")
    }
}

pub async fn act(State(app): State<App>, posted: Posted<ActForm>) -> Response {
    let (v, form) = (&posted.viewer, &posted.form);
    let lang = v.lang;
    let pressed = form.get("do");
    let (action, ids): (&str, Vec<&str>) = match pressed.split_once(':') {
        Some((a, id)) => (a, vec![id]),
        None => (pressed, form.0.iter().filter(|(k, _)| k == "id").map(|(_, v)| v.as_str()).collect()),
    };
    let Some(action) = LinkAction::parse(action) else {
        return said(lang, StatusCode::BAD_REQUEST, &t(lang, "ui.bad_request", &[]));
    };
    let mut worst = StatusCode::SEE_OTHER;
    for id in ids {
        let Some(id) = MessageId::parse(id) else { continue };
        let reason = form.get(&format!("reason:{id}"));
        match access::act(&app, v, &id, action, reason).await {
            Ok(Acted::Done) => {}
            Ok(Acted::NotFound) => worst = StatusCode::NOT_FOUND,
            Ok(Acted::Forbidden) => worst = StatusCode::FORBIDDEN,
            Ok(Acted::Refused(_)) => {
                if worst == StatusCode::SEE_OTHER {
                    worst = StatusCode::CONFLICT
                }
            }
            Err(_) => return unavailable(lang),
        }
    }
    let back = safe_next(form.get("back"));
    match worst {
        StatusCode::SEE_OTHER => Redirect::to(back).into_response(),
        StatusCode::NOT_FOUND => said(lang, worst, &t(lang, "link.not_found", &[])),
        StatusCode::FORBIDDEN => said(lang, worst, &t(lang, "ui.forbidden", &[])),
        _ => said(lang, worst, &t(lang, "ui.too_late", &[])),
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    f: Frame,
    q: String,
    rows: Vec<(When, tomare_store::AuditEntry)>,
}

#[derive(serde::Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub async fn audit(State(app): State<App>, AdminOnly(v): AdminOnly, Query(q): Query<SearchQuery>) -> Response {
    let Ok(rows) = app.store.audit_log(app.org, &q.q, 500).await else { return unavailable(v.lang) };
    let rows = rows.into_iter().map(|e| (When::at(e.at), e)).collect();
    render(StatusCode::OK, AuditPage { f: Frame::signed(&v, "ui.audit.title", "/audit"), q: q.q, rows })
}

#[derive(Template)]
#[template(path = "sandbox.html")]
struct SandboxPage {
    f: Frame,
    mail: Vec<(crate::mail::Captured, When)>,
}

/// The sandbox delivery's captured mail (the embedded default delivers
/// there): people's mail as delivered and tomare's own notices with their
/// links. An admin sees all of it; anyone else what was addressed to them.
pub async fn sandbox(State(app): State<App>, v: Viewer) -> Response {
    if crate::mail::sandbox_dir(&app).is_none() {
        return said(v.lang, StatusCode::NOT_FOUND, &t(v.lang, "ui.sandbox.off", &[]));
    }
    let mail = crate::mail::captured(&app, &v, 500).await.into_iter().map(|c| {
        let at = When::at(c.at);
        (c, at)
    });
    render(StatusCode::OK, SandboxPage { f: Frame::signed(&v, "ui.sandbox.title", "/sandbox"), mail: mail.collect() })
}

#[derive(Template)]
#[template(path = "captured.html")]
struct CapturedPage {
    f: Frame,
    c: crate::mail::Captured,
    at: When,
    text: Vec<(String, bool)>,
    html: bool,
}

pub async fn sandbox_one(State(app): State<App>, v: Viewer, Path(id): Path<String>) -> Response {
    let Some((c, raw)) = crate::mail::captured_one(&app, &v, &id).await else {
        return said(v.lang, StatusCode::NOT_FOUND, &t(v.lang, "link.not_found", &[]));
    };
    let text = crate::mail::own_links(&crate::mail::text_body(&raw), &app.config.web.base_url());
    let html = crate::mail::safe_html(&raw).is_some();
    let at = When::at(c.at);
    render(StatusCode::OK, CapturedPage { f: Frame::signed(&v, "ui.sandbox.one", "/sandbox"), c, at, text, html })
}

/// A captured message's HTML, made inert as a message's is.
pub async fn sandbox_html(State(app): State<App>, v: Viewer, Path(id): Path<String>) -> Response {
    match crate::mail::captured_one(&app, &v, &id).await.and_then(|(_, raw)| crate::mail::safe_html(&raw)) {
        Some(html) => inert_html(html),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    f: Frame,
    days: i64,
    d: crate::dashboard::Dashboard,
}

#[derive(serde::Deserialize, Default)]
pub struct DaysQuery {
    #[serde(default)]
    days: Option<i64>,
}

async fn dashboard_of(
    app: &App,
    q: &DaysQuery,
) -> Result<(i64, crate::dashboard::Dashboard), tomare_store::StoreError> {
    let days = q.days.unwrap_or(30).clamp(1, 366);
    // From the start of the day (UTC) `days - 1` days ago.
    let today = now_ms() / 86_400_000 * 86_400_000;
    let stats = app.store.stats(app.org, today - (days - 1) * 86_400_000).await?;
    Ok((days, crate::dashboard::summarize(&stats)))
}

/// Messages by state and by rule per day, and how many held mails their
/// senders cancelled.
pub async fn dashboard(State(app): State<App>, AdminOnly(v): AdminOnly, Query(q): Query<DaysQuery>) -> Response {
    let Ok((days, d)) = dashboard_of(&app, &q).await else { return unavailable(v.lang) };
    render(StatusCode::OK, DashboardPage { f: Frame::signed(&v, "ui.dashboard.title", "/dashboard"), days, d })
}

pub async fn dashboard_csv(State(app): State<App>, AdminOnly(v): AdminOnly, Query(q): Query<DaysQuery>) -> Response {
    let Ok((days, d)) = dashboard_of(&app, &q).await else { return unavailable(v.lang) };
    access::audit(&app, &v, "export", "dashboard", &format!("{days} days, csv")).await;
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"tomare-dashboard-{days}d.csv\"")),
    ];
    (headers, d.csv()).into_response()
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    f: Frame,
    people: Vec<crate::people::PersonLine>,
    csv: String,
    note: String,
    error: String,
}

async fn users_page(app: &App, v: &Viewer, status: StatusCode, csv: String, note: String, error: String) -> Response {
    let Ok(people) = crate::people::people(&app.config, app.store.as_ref(), Some(app.org)).await else {
        return unavailable(v.lang);
    };
    render(status, UsersPage { f: Frame::signed(v, "ui.users.title", "/users"), people, csv, note, error })
}

/// Everyone tomare knows (as `tomare user list`), and the directory's
/// import (as `tomare users import`).
pub async fn users(State(app): State<App>, AdminOnly(v): AdminOnly) -> Response {
    users_page(&app, &v, StatusCode::OK, String::new(), String::new(), String::new()).await
}

#[derive(serde::Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    csv: String,
}

impl HasCsrf for ImportForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn users_import(State(app): State<App>, posted: Posted<ImportForm>) -> Response {
    let (v, form) = (posted.viewer, posted.form);
    if v.role() != Role::Admin {
        return said(v.lang, StatusCode::FORBIDDEN, &t(v.lang, "ui.forbidden", &[]));
    }
    let entries = match crate::people::parse_directory_csv(&form.csv) {
        Ok(e) => e,
        Err(e) => return users_page(&app, &v, StatusCode::BAD_REQUEST, form.csv, String::new(), e).await,
    };
    if app.store.put_directory(app.org, &entries).await.is_err() {
        return unavailable(v.lang);
    }
    access::audit(&app, &v, "users_import", "directory", &format!("{} people", entries.len())).await;
    // The rules and the web read the new directory now.
    if let Some(reload) = &app.reload {
        let _ = reload().await;
    }
    let note = t(v.lang, "user.imported", &[&entries.len()]);
    users_page(&app, &v, StatusCode::OK, String::new(), note, String::new()).await
}

/// The audit log as CSV (the same query as the page).
pub async fn audit_csv(State(app): State<App>, AdminOnly(v): AdminOnly, Query(q): Query<SearchQuery>) -> Response {
    let Ok(rows) = app.store.audit_log(app.org, &q.q, 100_000).await else { return unavailable(v.lang) };
    access::audit(&app, &v, "export", "audit", &format!("{} lines, csv", rows.len())).await;
    let field = crate::dashboard::csv_cell;
    let mut out = String::from("at,actor,via,action,target,detail,ip\n");
    for e in rows {
        let line = [tomare_model::rfc3339(e.at), e.actor, e.via, e.action, e.target, e.detail, e.ip];
        out.push_str(&line.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
        (header::CONTENT_DISPOSITION, "attachment; filename=\"tomare-audit.csv\""),
    ];
    (headers, out).into_response()
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    f: Frame,
    role: String,
    chosen: String,
    reports: Vec<String>,
    note: String,
}

async fn account_page(app: &App, v: &Viewer, status: StatusCode, note: String) -> Response {
    let chosen = app.store.user(v.email()).await.ok().flatten().map(|u| u.lang).unwrap_or_default();
    let page = AccountPage {
        f: Frame::signed(v, "ui.account.title", "/account"),
        role: t(v.lang, &format!("ui.role.{}", v.role().as_str()), &[]),
        chosen,
        reports: v.person.reports.clone(),
        note,
    };
    render(status, page)
}

pub async fn account(State(app): State<App>, v: Viewer) -> Response {
    let must_change = app.store.user(v.email()).await.ok().flatten().is_some_and(|u| u.must_change);
    let note = if must_change { t(v.lang, "ui.account.must_change", &[]) } else { String::new() };
    account_page(&app, &v, StatusCode::OK, note).await
}

#[derive(serde::Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

impl HasCsrf for AccountForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The language setting, or a new password (the current one first).
pub async fn account_save(State(app): State<App>, headers: HeaderMap, posted: Posted<AccountForm>) -> Response {
    let (mut v, form) = (posted.viewer, posted.form);
    if let Some(lang) = &form.lang {
        let lang = if Lang::from_code(lang).is_some() { lang.as_str() } else { "" };
        if app.store.set_lang(v.email(), lang).await.is_err() {
            return unavailable(v.lang);
        }
        v.lang = lang_of(&headers, lang);
        access::audit(&app, &v, "set_lang", v.email(), lang).await;
        return account_page(&app, &v, StatusCode::OK, t(v.lang, "ui.account.saved", &[])).await;
    }
    let hash = app.store.user(v.email()).await.ok().flatten().map(|u| u.password_hash);
    if !check_password(hash, &form.current).await {
        access::audit(&app, &v, "passwd_failed", v.email(), "").await;
        return account_page(&app, &v, StatusCode::UNAUTHORIZED, t(v.lang, "ui.account.wrong", &[])).await;
    }
    if form.new.chars().count() < crate::accounts::MIN_PASSWORD_CHARS {
        let note = t(v.lang, "ui.account.short", &[&crate::accounts::MIN_PASSWORD_CHARS]);
        return account_page(&app, &v, StatusCode::BAD_REQUEST, note).await;
    }
    let Ok(hash) = crate::accounts::hash_password(&form.new) else { return unavailable(v.lang) };
    if app.store.put_user(app.org, v.email(), &hash).await.is_err() {
        return unavailable(v.lang);
    }
    // Every other session of this account ends; this one goes on.
    let _ = app.store.delete_sessions_of(v.email()).await;
    access::audit(&app, &v, "passwd", v.email(), "web").await;
    let ip = v.ip.clone();
    let Ok((row, cookie)) = crate::session::begin(&app, v.email(), &ip).await else { return unavailable(v.lang) };
    v.csrf = row.csrf;
    let mut r = account_page(&app, &v, StatusCode::OK, t(v.lang, "ui.account.changed", &[])).await;
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");
/// htmx 2.0.11 (0BSD, static/htmx.LICENSE), pinned and served from the
/// binary: no CDN.
const HTMX_JS: &str = include_str!("../static/htmx-2.0.11.min.js");

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "htmx.min.js" => (HTMX_JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text key the pages name is in the i18n table: a missing one
    /// would show as the key itself.
    #[test]
    fn every_key_the_pages_use_is_translated() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources = Vec::new();
        for sub in ["templates", "src"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                sources.push(std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
            }
        }
        let mut keys = Vec::new();
        for text in &sources {
            for (i, _) in text.match_indices("\"ui.") {
                let rest = &text[i + 1..];
                let key = &rest[..rest.find('"').unwrap()];
                if !key.ends_with('.') && !key.contains('{') {
                    keys.push(key.to_string());
                }
            }
        }
        for a in ["cancel", "release", "approve", "deny"] {
            keys.push(format!("ui.do.{a}"));
        }
        for a in ["cancel", "release"] {
            keys.push(format!("ui.bulk.{a}"));
        }
        for r in [Role::Sender, Role::Approver, Role::Admin] {
            keys.push(format!("ui.role.{}", r.as_str()));
        }
        for st in MessageState::ALL {
            keys.push(format!("state.{}", st.as_str()));
        }
        for r in ["pending", "delivered", "deferred", "failed"] {
            keys.push(format!("rcpt.{r}"));
        }
        assert!(keys.len() > 60, "{keys:?}");
        let missing: Vec<&String> = keys.iter().filter(|k| !tomare_model::i18n::has(k)).collect();
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn keywords_are_marked_in_the_text() {
        let parts = highlight("この資料は社外秘です。CONFIDENTIAL too", &["社外秘".into(), "confidential".into()]);
        let marked: Vec<&str> = parts.iter().filter(|(_, m)| *m).map(|(s, _)| s.as_str()).collect();
        assert_eq!(marked, ["社外秘", "CONFIDENTIAL"]);
        assert_eq!(parts.iter().map(|(s, _)| s.as_str()).collect::<String>(), "この資料は社外秘です。CONFIDENTIAL too");
        assert_eq!(highlight("abc", &[]), [("abc".to_string(), false)]);
    }

    #[test]
    fn next_stays_on_the_site() {
        assert_eq!(safe_next("/queue?state=held"), "/queue?state=held");
        for bad in ["//evil.test/", "https://evil.test/", "/\\evil.test", "", "javascript:alert(1)"] {
            assert_eq!(safe_next(bad), "/tray", "{bad}");
        }
    }
}
