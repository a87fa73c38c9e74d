//! The JSON API under `/api/v1`, described by `/api/v1/openapi.json`.
//! The same viewers, roles and actions as the pages (`access`): a caller
//! signs in with `POST /api/v1/login` (a session cookie; state changes then
//! carry its CSRF token in `X-CSRF-Token`) or sends a bearer token made by
//! `tomare user token`. Times are RFC 3339 in UTC.

use crate::App;
use crate::access::{self, Acted};
use crate::pages::{SignIn, sign_in};
use crate::session::{AdminOnly, ApproverOnly, Viewer};
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use tomare_model::{LinkAction, MessageId, State as MessageState, rfc3339};
use tomare_store::{AuditEntry, MessageRow};

pub fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/messages", get(messages))
        .route("/api/v1/messages/{id}", get(message))
        .route("/api/v1/messages/{id}/{action}", post(act))
        .route("/api/v1/messages/{id}/link", get(link))
        .route("/api/v1/messages/{id}/link/revoke", post(revoke_link))
        .route("/api/v1/approvals", get(approvals))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/archive/search", get(archive_search))
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
}

/// A message in a list.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub id: String,
    pub state: &'static str,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub received_at: String,
    /// The end of the hold (held) or the approval's deadline (awaiting
    /// approval); null otherwise.
    pub hold_until: Option<String>,
}

impl Summary {
    fn of(m: &MessageRow) -> Summary {
        let waiting = matches!(m.state, MessageState::Held | MessageState::AwaitingApproval);
        Summary {
            id: m.id.to_string(),
            state: m.state.as_str(),
            from: m.mail_from.to_string(),
            to: m.recipients.iter().map(|r| r.address.to_string()).collect(),
            subject: m.subject.clone(),
            received_at: rfc3339(m.received_at),
            hold_until: m.release_at.filter(|_| waiting).map(rfc3339),
        }
    }
}

#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Serialize)]
pub struct Me {
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub reports: Vec<String>,
    /// To send as `X-CSRF-Token` with every state change of this session
    /// (empty for bearer tokens).
    pub csrf: String,
}

async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else { return error(StatusCode::BAD_REQUEST, "bad_request") };
    match sign_in(&app, &body.email, &body.password, &peer.ip().to_string(), "api").await {
        SignIn::Ok(row, cookie) => {
            let p = app.person(&row.email);
            let me = Me { email: p.email, name: p.name, role: p.role.as_str(), reports: p.reports, csrf: row.csrf };
            let mut r = Json(me).into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        SignIn::Wrong => error(StatusCode::UNAUTHORIZED, "wrong_credentials"),
        SignIn::Locked(secs) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "locked");
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
            r
        }
        SignIn::Unavailable => unavailable(),
    }
}

async fn logout(State(app): State<App>, v: Viewer) -> Response {
    if let Some(hash) = &v.session
        && app.store.delete_session(hash).await.is_err()
    {
        return unavailable();
    }
    access::audit(&app, &v, "logout", v.email(), "").await;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, crate::session::end_cookie());
    r
}

async fn me(v: Viewer) -> Response {
    let p = v.person.clone();
    Json(Me { email: p.email, name: p.name, role: p.role.as_str(), reports: p.reports, csrf: v.csrf.clone() })
        .into_response()
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Serialize)]
struct Messages {
    messages: Vec<Summary>,
}

async fn messages(State(app): State<App>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    let mut states = Vec::new();
    for name in q.state.split(',').filter(|s| !s.is_empty()) {
        match MessageState::ALL.into_iter().find(|s| s.as_str() == name) {
            Some(s) => states.push(s),
            None => return error(StatusCode::BAD_REQUEST, "unknown_state"),
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match app.store.visible(&access::scope(&app, &v), &states, limit).await {
        Ok(rows) => Json(Messages { messages: rows.iter().map(Summary::of).collect() }).into_response(),
        Err(_) => unavailable(),
    }
}

#[derive(Serialize)]
pub struct Recipient {
    pub address: String,
    pub status: &'static str,
    pub reply: String,
}

#[derive(Serialize)]
pub struct AttachmentInfo {
    pub name: String,
    pub content_type: String,
    pub detected_type: String,
    pub size: u64,
    pub encrypted: bool,
    pub complete: bool,
}

#[derive(Serialize)]
pub struct Event {
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

#[derive(Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub summary: Summary,
    pub header_from: String,
    pub size: i64,
    pub recipients: Vec<Recipient>,
    pub attachments: Vec<AttachmentInfo>,
    /// The reasons of the rules that fired, in plain words.
    pub reasons: Vec<String>,
    /// Detector hits, with masked excerpts.
    pub detections: Vec<tomare_model::Detection>,
    /// Everyone asked to decide it.
    pub asked: Vec<String>,
    /// What the caller may do to it now.
    pub actions: Vec<&'static str>,
    pub events: Vec<Event>,
}

const ACTIONS: [LinkAction; 4] = [LinkAction::Cancel, LinkAction::Release, LinkAction::Approve, LinkAction::Deny];

async fn message(State(app): State<App>, v: Viewer, Path(id): Path<String>) -> Response {
    let Some(id) = MessageId::parse(&id) else { return error(StatusCode::NOT_FOUND, "not_found") };
    let seen = match access::visible(&app, &v, &id).await {
        Ok(Some(s)) => s,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found"),
        Err(_) => return unavailable(),
    };
    let Ok(reviewed) = app.store.reviewed(&id).await else { return unavailable() };
    let m = &seen.message;
    let (attachments, reasons, detections) = match &reviewed {
        Some(r) => (
            r.facts
                .attachments
                .iter()
                .map(|a| AttachmentInfo {
                    name: a.name.clone(),
                    content_type: a.content_type.clone(),
                    detected_type: a.detected_type.clone(),
                    size: a.size,
                    encrypted: a.encrypted,
                    complete: a.error.is_none(),
                })
                .collect(),
            r.verdict.iter().flat_map(|v| v.rules.iter().map(|f| f.reason.clone())).collect(),
            r.facts.detections.clone(),
        ),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let detail = Detail {
        summary: Summary::of(m),
        header_from: m.header_from.clone(),
        size: m.size,
        recipients: m
            .recipients
            .iter()
            .map(|r| Recipient { address: r.address.to_string(), status: r.status.as_str(), reply: r.reply.clone() })
            .collect(),
        attachments,
        reasons,
        detections,
        asked: seen.asked.clone(),
        actions: ACTIONS.into_iter().filter(|a| seen.may(&v, *a) && seen.applies(*a)).map(|a| a.as_str()).collect(),
        events: seen
            .events
            .iter()
            .map(|e| Event {
                at: rfc3339(e.at),
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                detail: e.detail.clone(),
            })
            .collect(),
    };
    Json(detail).into_response()
}

#[derive(Deserialize, Default)]
pub struct ActBody {
    #[serde(default)]
    reason: String,
}

async fn act(
    State(app): State<App>,
    v: Viewer,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Some(action) = LinkAction::parse(&action) else { return error(StatusCode::NOT_FOUND, "unknown_action") };
    let Some(id) = MessageId::parse(&id) else { return error(StatusCode::NOT_FOUND, "not_found") };
    // The body is optional: nothing, or JSON with a `reason`.
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        match serde_json::from_slice::<ActBody>(&body) {
            Ok(b) => b.reason,
            Err(_) => return error(StatusCode::BAD_REQUEST, "bad_request"),
        }
    };
    match access::act(&app, &v, &id, action, &reason).await {
        Ok(Acted::Done) => {
            let state = app.store.get(&id).await.ok().flatten().map(|(m, _)| m.state.as_str()).unwrap_or("");
            Json(serde_json::json!({ "id": id.as_str(), "state": state })).into_response()
        }
        Ok(Acted::NotFound) => error(StatusCode::NOT_FOUND, "not_found"),
        Ok(Acted::Forbidden) => error(StatusCode::FORBIDDEN, "forbidden"),
        Ok(Acted::Refused(s)) => {
            (StatusCode::CONFLICT, Json(serde_json::json!({ "error": "not_applicable", "state": s.as_str() })))
                .into_response()
        }
        Err(_) => unavailable(),
    }
}

#[derive(Serialize)]
struct Download {
    at: String,
    file: u32,
    name: String,
    who: String,
    ip: String,
    user_agent: String,
}

#[derive(Serialize)]
struct LinkInfo {
    #[serde(flatten)]
    link: tomare_store::LinkRow,
    /// `active`, `revoked`, `expired` or `pending` (not delivered yet).
    status: &'static str,
    downloads: Vec<Download>,
}

/// A message's download link: its state, files (with their download
/// counts) and every download.
async fn link(State(app): State<App>, v: Viewer, Path(id): Path<String>) -> Response {
    let Some(id) = MessageId::parse(&id) else { return error(StatusCode::NOT_FOUND, "not_found") };
    match access::visible(&app, &v, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found"),
        Err(_) => return unavailable(),
    }
    let Some((link, downloads)) = crate::download::of_message(&app, &id).await else {
        return error(StatusCode::NOT_FOUND, "no_link");
    };
    let name_of = |idx: u32| link.files.iter().find(|f| f.idx == idx).map(|f| f.name.clone()).unwrap_or_default();
    let downloads = downloads
        .iter()
        .map(|d| Download {
            at: tomare_model::rfc3339(d.at),
            file: d.idx,
            name: name_of(d.idx),
            who: d.who.clone(),
            ip: d.ip.clone(),
            user_agent: d.user_agent.clone(),
        })
        .collect();
    let status = link.status(tomare_model::now_ms());
    Json(LinkInfo { link, status, downloads }).into_response()
}

/// Revokes a message's download link (its sender, or an admin).
async fn revoke_link(State(app): State<App>, v: Viewer, Path(id): Path<String>) -> Response {
    let Some(id) = MessageId::parse(&id) else { return error(StatusCode::NOT_FOUND, "not_found") };
    let seen = match access::visible(&app, &v, &id).await {
        Ok(Some(s)) => s,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found"),
        Err(_) => return unavailable(),
    };
    if !(v.role() == crate::accounts::Role::Admin || access::is_own(&v, &seen.message)) {
        return error(StatusCode::FORBIDDEN, "forbidden");
    }
    match app.store.revoke_link(&id, &v.actor(), tomare_model::now_ms()).await {
        Ok(true) => {
            access::audit(&app, &v, "revoke_link", id.as_str(), "").await;
            Json(serde_json::json!({ "id": id.as_str(), "status": "revoked" })).into_response()
        }
        Ok(false) => error(StatusCode::CONFLICT, "no_link"),
        Err(_) => unavailable(),
    }
}

#[derive(Serialize)]
struct Approval {
    #[serde(flatten)]
    summary: Summary,
    asked: Vec<String>,
}

#[derive(Serialize)]
struct Approvals {
    approvals: Vec<Approval>,
}

/// What waits for the caller's decision (an admin: every approval).
async fn approvals(State(app): State<App>, ApproverOnly(v): ApproverOnly) -> Response {
    let rows = match app.store.visible(&access::scope(&app, &v), &[MessageState::AwaitingApproval], 1000).await {
        Ok(rows) => rows,
        Err(_) => return unavailable(),
    };
    let mut out = Vec::new();
    for m in &rows {
        let seen = match access::visible(&app, &v, &m.id).await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(_) => return unavailable(),
        };
        if seen.may(&v, LinkAction::Approve) {
            out.push(Approval { summary: Summary::of(m), asked: seen.asked });
        }
    }
    Json(Approvals { approvals: out }).into_response()
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Serialize)]
struct AuditLine {
    at: String,
    actor: String,
    via: String,
    action: String,
    target: String,
    detail: String,
    ip: String,
}

impl AuditLine {
    fn of(e: AuditEntry) -> AuditLine {
        AuditLine {
            at: rfc3339(e.at),
            actor: e.actor,
            via: e.via,
            action: e.action,
            target: e.target,
            detail: e.detail,
            ip: e.ip,
        }
    }
}

async fn audit(State(app): State<App>, AdminOnly(_): AdminOnly, Query(q): Query<AuditQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    match app.store.audit_log(app.org, &q.q, limit).await {
        Ok(rows) => {
            let entries: Vec<AuditLine> = rows.into_iter().map(AuditLine::of).collect();
            Json(serde_json::json!({ "entries": entries })).into_response()
        }
        Err(_) => unavailable(),
    }
}

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// The archive's messages matching `q` that the caller may see.
async fn archive_search(State(app): State<App>, v: Viewer, Query(q): Query<SearchQuery>) -> Response {
    if q.q.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty_query");
    }
    match crate::mail::search(&app, &v, q.q.trim()).await {
        Ok(hits) => {
            access::audit(&app, &v, "search", q.q.trim(), &format!("{} hits", hits.len())).await;
            Json(serde_json::json!({ "hits": hits })).into_response()
        }
        Err(crate::mail::SearchError::Query(m)) => {
            (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": "bad_query", "message": m }))).into_response()
        }
        Err(crate::mail::SearchError::Unavailable) => unavailable(),
    }
}

const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
