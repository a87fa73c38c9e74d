//! The pages behind a protected attachment's download link (`/d/{token}`),
//! for recipients outside the org (no account): the sender, the files and
//! how long they stay; a one-time code mailed to the recipient's own
//! address, or a password, opens them (a pass in a cookie of this link's
//! path, for an hour). Every download is counted against the file's limit
//! in the store and logged (time, address, user agent, who); the sender and
//! the admins see the log and can revoke the link from the message page.

use crate::App;
use crate::links::{html_escape, page};
use axum::extract::{Form, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tomare_model::i18n::{Lang, t};
use tomare_model::{MessageId, now_ms};
use tomare_store::{DownloadRow, LinkRow, Take};

const PASS_COOKIE: &str = "tomare_dl";
/// A code lives this long.
const CODE_MS: i64 = 10 * 60 * 1000;

fn lang(headers: &HeaderMap) -> Lang {
    crate::session::lang_of(headers, "")
}

fn say(lang: Lang, status: StatusCode, key: &str) -> Response {
    let text = t(lang, key, &[]);
    page(lang, status, &text, "")
}

/// The link of `token`, or the page that says why there is none to open.
async fn find(app: &App, lang: Lang, token: &str) -> Result<LinkRow, Response> {
    let hash = tomare_protect::sha256_hex(token.as_bytes());
    match app.store.link_by_token(&hash).await {
        Ok(Some(link)) if link.org_id == app.org => match link.status(now_ms()) {
            "active" => Ok(link),
            "revoked" => Err(say(lang, StatusCode::GONE, "protect.page.revoked")),
            "expired" => Err(say(lang, StatusCode::GONE, "protect.page.expired")),
            _ => Err(say(lang, StatusCode::FORBIDDEN, "protect.page.pending")),
        },
        Ok(_) => Err(say(lang, StatusCode::NOT_FOUND, "protect.page.unknown")),
        Err(_) => Err(say(lang, StatusCode::SERVICE_UNAVAILABLE, "link.error")),
    }
}

/// Who the request's pass proved for this link: `Some("")` when the link
/// asks for nothing.
fn proved(app: &App, headers: &HeaderMap, link: &LinkRow, token: &str) -> Option<String> {
    if link.access == "none" {
        return Some(String::new());
    }
    let pass = crate::session::cookie_value(headers, PASS_COOKIE)?;
    app.links.verify_download_pass(pass, &tomare_protect::sha256_hex(token.as_bytes()), now_ms())
}

fn form(action: &str, fields: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">{fields}<p><button type=\"submit\">{}</button></p></form>",
        html_escape(action),
        html_escape(button)
    )
}

/// The page: what the files are, and the form that opens them or the
/// buttons that download them.
async fn render(
    app: &App,
    lang: Lang,
    token: &str,
    link: &LinkRow,
    who: Option<String>,
    note: &str,
    email: &str,
) -> Response {
    let subject = match app.store.get(&link.message_id).await {
        Ok(Some((m, _))) => m.subject,
        _ => String::new(),
    };
    let until = tomare_model::local_time(link.expires_at, app.config.org.utc_offset_minutes());
    let mut body = format!(
        "<dl><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd></dl>",
        html_escape(&t(lang, "ui.role.sender", &[])),
        html_escape(&link.sender),
        html_escape(&t(lang, "protect.page.subject", &[])),
        html_escape(&subject),
        html_escape(&t(lang, "protect.page.until", &[])),
        html_escape(&until),
    );
    if !note.is_empty() {
        body.push_str(&format!("<p class=\"note\" role=\"status\">{}</p>", html_escape(note)));
    }
    body.push_str("<ul class=\"files\">");
    for f in &link.files {
        let left = link.max_downloads.saturating_sub(f.downloads);
        let button = if who.is_some() && left > 0 {
            format!(
                " <a class=\"download\" data-file=\"{idx}\" href=\"/d/{token}/f/{idx}\" download>{}</a>",
                html_escape(&t(lang, "protect.page.download", &[])),
                idx = f.idx,
                token = html_escape(token),
            )
        } else {
            String::new()
        };
        body.push_str(&format!(
            "<li><strong>{}</strong> ({})<br><small>{}</small>{button}</li>",
            html_escape(&f.name),
            tomare_model::size_text(f.size),
            html_escape(&t(lang, "protect.page.left", &[&left, &link.max_downloads])),
        ));
    }
    body.push_str("</ul>");
    if who.is_none() {
        let open = format!("/d/{token}/open");
        if link.access == "password" {
            let fields = format!(
                "<label>{}<br><input type=\"password\" name=\"password\" autocomplete=\"off\" required></label>",
                html_escape(&t(lang, "protect.page.password", &[]))
            );
            body.push_str(&form(&open, &fields, &t(lang, "protect.page.open", &[])));
        } else {
            let ask = format!(
                "<label>{}<br><input type=\"email\" name=\"email\" autocomplete=\"email\" required></label>",
                html_escape(&t(lang, "protect.page.ask_code", &[]))
            );
            body.push_str(&form(&format!("/d/{token}/code"), &ask, &t(lang, "protect.page.send_code", &[])));
            let fields = format!(
                "<label>{}<br><input type=\"email\" name=\"email\" value=\"{}\" required></label><br>\
                 <label>{}<br><input type=\"text\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
                 pattern=\"[0-9]{{6}}\" required></label>",
                html_escape(&t(lang, "protect.page.ask_code", &[])),
                html_escape(email),
                html_escape(&t(lang, "protect.page.code", &[])),
            );
            body.push_str(&form(&open, &fields, &t(lang, "protect.page.open", &[])));
        }
    }
    page(lang, StatusCode::OK, &t(lang, "protect.page.title", &[&link.sender]), &body)
}

pub async fn show(State(app): State<App>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let lang = lang(&headers);
    let link = match find(&app, lang, &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let who = proved(&app, &headers, &link, &token);
    render(&app, lang, &token, &link, who, "", "").await
}

#[derive(serde::Deserialize)]
pub struct AskCode {
    #[serde(default)]
    email: String,
}

/// Mails a code to `email` when it is one the message went to; says the
/// same either way (the page tells nobody who the recipients are).
pub async fn ask_code(
    State(app): State<App>,
    parts: Parts,
    Path(token): Path<String>,
    Form(f): Form<AskCode>,
) -> Response {
    let headers = &parts.headers;
    let lang = lang(headers);
    let link = match find(&app, lang, &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let email = f.email.trim().to_lowercase();
    let ip = crate::session::client_ip(&parts);
    let now = now_ms();
    // Codes count against the same throttle as sign-ins (per address and
    // per client): nobody floods a recipient with codes.
    let key = format!("code:{}:{email}", link.message_id);
    if app.throttle.attempt(&key, &ip, now).is_none()
        && link.access == "code"
        && link.recipients.iter().any(|r| r.eq_ignore_ascii_case(&email))
        && let (Some(mail), Ok(address)) = (&app.mail, email.parse::<tomare_model::Address>())
        && let Some(code) = tomare_protect::new_code()
    {
        let hash = tomare_protect::code_hash(&link.message_id, &email, &code);
        if app.store.save_code(&link.message_id, &email, &hash, now + CODE_MS).await.is_ok() {
            let data = tomare_protect::mails::code_mail(&app.config, &email, &code, &link.sender, now);
            if let Err(e) = mail(address, data).await {
                tracing::error!(id = %link.message_id, error = %e, "could not queue the code mail");
            }
        }
    }
    // The address typed goes into the form for the code (whatever it is).
    render(&app, lang, &token, &link, None, &t(lang, "protect.page.code_sent", &[]), &email).await
}

#[derive(serde::Deserialize)]
pub struct Open {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
}

/// A code or password checked: the pass cookie, and back to the page.
pub async fn open(State(app): State<App>, parts: Parts, Path(token): Path<String>, Form(f): Form<Open>) -> Response {
    let headers = &parts.headers;
    let lang = lang(headers);
    let link = match find(&app, lang, &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let token_hash = tomare_protect::sha256_hex(token.as_bytes());
    let now = now_ms();
    let ip = crate::session::client_ip(&parts);
    let email = f.email.trim().to_lowercase();
    let key = format!("open:{}", link.message_id);
    let who = if app.throttle.attempt(&key, &ip, now).is_some() {
        None
    } else {
        match link.access.as_str() {
            "password" => link
                .password_hash
                .as_deref()
                .filter(|h| *h == tomare_protect::password_hash(&token_hash, f.password.trim()))
                .map(|_| "password".to_string()),
            "code" => {
                let hash = tomare_protect::code_hash(&link.message_id, &email, f.code.trim());
                matches!(app.store.use_code(&link.message_id, &email, &hash, now).await, Ok(true))
                    .then(|| email.clone())
            }
            _ => Some(String::new()),
        }
    };
    let Some(who) = who else {
        return render(&app, lang, &token, &link, None, &t(lang, "protect.page.wrong", &[]), &email).await;
    };
    app.throttle.succeeded(&key, &ip);
    let pass = app.links.download_pass(&token_hash, &who, now);
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{PASS_COOKIE}={pass}; Path=/d/{token}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        crate::links::DOWNLOAD_PASS_MS / 1000
    );
    let mut r = Redirect::to(&format!("/d/{token}")).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A file: counted, logged, decrypted, checked against the hash taken when
/// it was sent, and sent as an attachment (never shown in the browser).
pub async fn file(State(app): State<App>, parts: Parts, Path((token, idx)): Path<(String, u32)>) -> Response {
    // A HEAD (a link checker, a preview) takes no download.
    if parts.method == axum::http::Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let headers = &parts.headers;
    let lang = lang(headers);
    let link = match find(&app, lang, &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(who) = proved(&app, headers, &link, &token) else {
        return Redirect::to(&format!("/d/{token}")).into_response();
    };
    let Some(meta) = link.files.iter().find(|f| f.idx == idx) else {
        return say(lang, StatusCode::NOT_FOUND, "protect.page.unknown");
    };
    let Some(protector) = &app.protector else {
        return say(lang, StatusCode::SERVICE_UNAVAILABLE, "link.error");
    };
    let user_agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    let now = now_ms();
    let row = DownloadRow { at: now, idx, ip: crate::session::client_ip(&parts), user_agent, who };
    match app.store.take_download(&link.message_id, &row, now).await {
        Ok(Take::Ok) => {}
        Ok(Take::Exhausted) => return say(lang, StatusCode::GONE, "protect.page.exhausted"),
        Ok(Take::Closed) => return say(lang, StatusCode::GONE, "protect.page.expired"),
        Err(_) => return say(lang, StatusCode::SERVICE_UNAVAILABLE, "link.error"),
    }
    let (vault, id) = (protector.vault.clone(), link.message_id.clone());
    let data = match tokio::task::spawn_blocking(move || vault.get(&id, idx)).await {
        Ok(Ok(data)) if tomare_protect::sha256_hex(&data) == meta.sha256 => data,
        _ => {
            tracing::error!(id = %link.message_id, idx, "a protected file is missing or does not match its hash");
            return say(lang, StatusCode::GONE, "protect.page.expired");
        }
    };
    tracing::info!(id = %link.message_id, idx, "protected file downloaded");
    let name = tomare_transform::protect::clean_name(&meta.name);
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_ ".contains(c) { c } else { '_' }).collect();
    let encoded = tomare_transform::protect::rfc5987(&name);
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let mut r = (StatusCode::OK, data).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// The link of a message and its downloads, for its page and the API.
pub async fn of_message(app: &App, id: &MessageId) -> Option<(LinkRow, Vec<DownloadRow>)> {
    let link = app.store.link_of(id).await.ok()??;
    let downloads = app.store.downloads(id).await.unwrap_or_default();
    Some((link, downloads))
}
