//! Who is asking. A browser signs in once and carries a session cookie
//! (HttpOnly, SameSite=Lax, Secure under https); the session lives in the
//! database by the SHA-256 of its secret, with a CSRF token that every
//! state-changing request of that session must carry. An API client may
//! instead send `Authorization: Bearer TOKEN` (`tomare user token`): no
//! cookie, so no CSRF.
//!
//! The role a handler needs is in its signature: [`Viewer`] (anyone signed
//! in), [`ApproverOnly`], [`AdminOnly`]; [`Posted`] is a form whose CSRF
//! token was checked. A handler cannot run for a caller it does not admit.

use crate::App;
use crate::accounts::{Person, Role, random_secret, secret_hash};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;
use tomare_model::i18n::Lang;
use tomare_model::now_ms;
use tomare_store::SessionRow;

pub const COOKIE: &str = "tomare_session";
/// A session ends this long after sign-in, used or not.
pub const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;

/// How a request was authenticated: what the event log and audit say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Web,
    Api,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Web => "web",
            Via::Api => "api",
        }
    }
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub person: Person,
    pub lang: Lang,
    pub via: Via,
    /// The session's CSRF token (empty for bearer tokens).
    pub csrf: String,
    /// The session's hash (None for bearer tokens).
    pub session: Option<String>,
    pub ip: String,
    /// Signed in by cookie: state changes need the CSRF token.
    cookie: bool,
    /// Delivery goes to the sandbox: its page is shown.
    pub sandbox: bool,
}

impl Viewer {
    pub fn email(&self) -> &str {
        &self.person.email
    }

    pub fn role(&self) -> Role {
        self.person.role
    }

    /// What the event log names as the actor: `web:EMAIL`, `api:EMAIL`.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.via.as_str(), self.person.email)
    }

    /// A state change's token is this session's (always true without a
    /// cookie: a bearer token cannot be sent by another site).
    pub fn csrf_ok(&self, token: &str) -> bool {
        !self.cookie || (!self.csrf.is_empty() && subtle_eq(self.csrf.as_bytes(), token.as_bytes()))
    }
}

/// Constant-time comparison: the reply says nothing of how close a guess was.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The language of a page: the person's choice, else the browser's.
pub fn lang_of(headers: &HeaderMap, chosen: &str) -> Lang {
    if let Some(l) = Lang::from_code(chosen) {
        return l;
    }
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    // The first language named decides: "ja,en;q=0.8" is Japanese.
    if accept.trim_start().to_ascii_lowercase().starts_with("ja") { Lang::Ja } else { Lang::En }
}

pub fn client_ip(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}

pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Why a caller was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// Not signed in: pages go to the sign-in page, the API says 401.
    SignIn { api: bool, next: String },
    /// Signed in, but this is not theirs to see or do.
    Forbidden { api: bool, lang: Lang },
    /// A state change without this session's CSRF token.
    Csrf { api: bool, lang: Lang },
    /// The database did not answer.
    Unavailable { api: bool },
    /// Signed in with a one-time password: a new one first.
    MustChange { api: bool },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        use tomare_model::i18n::t;
        let api_error =
            |status: StatusCode, code: &str| (status, axum::Json(serde_json::json!({ "error": code }))).into_response();
        match self {
            Refusal::SignIn { api: true, .. } => api_error(StatusCode::UNAUTHORIZED, "sign_in_required"),
            Refusal::SignIn { api: false, next } => {
                Redirect::to(&format!("/login?next={}", crate::pages::url_encode(&next))).into_response()
            }
            Refusal::Forbidden { api: true, .. } => api_error(StatusCode::FORBIDDEN, "forbidden"),
            Refusal::Forbidden { api: false, lang } => {
                crate::pages::said(lang, StatusCode::FORBIDDEN, &t(lang, "ui.forbidden", &[]))
            }
            Refusal::Csrf { api: true, .. } => api_error(StatusCode::FORBIDDEN, "csrf"),
            Refusal::Csrf { api: false, lang } => {
                crate::pages::said(lang, StatusCode::FORBIDDEN, &t(lang, "ui.csrf", &[]))
            }
            Refusal::MustChange { api: true } => api_error(StatusCode::FORBIDDEN, "password_change_required"),
            Refusal::MustChange { api: false } => Redirect::to("/account").into_response(),
            Refusal::Unavailable { api: true } => api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Refusal::Unavailable { api: false } => {
                crate::pages::said(Lang::En, StatusCode::SERVICE_UNAVAILABLE, &t(Lang::En, "link.error", &[]))
            }
        }
    }
}

fn is_api(parts: &Parts) -> bool {
    parts.uri.path().starts_with("/api/")
}

impl FromRequestParts<App> for Viewer {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Viewer, Refusal> {
        let api = is_api(parts);
        let ip = client_ip(parts);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let (email, csrf, session, cookie) = if let Some(token) = bearer {
            match app.store.token_owner(&secret_hash(token)).await {
                Ok(Some(email)) => (email, String::new(), None, false),
                Ok(None) => return Err(Refusal::SignIn { api, next: String::new() }),
                Err(_) => return Err(Refusal::Unavailable { api }),
            }
        } else {
            let next = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            let Some(secret) = cookie_value(&parts.headers, COOKIE) else {
                return Err(Refusal::SignIn { api, next });
            };
            let hash = secret_hash(secret);
            match app.store.session(&hash, now_ms()).await {
                Ok(Some(s)) => (s.email, s.csrf, Some(hash), true),
                Ok(None) => return Err(Refusal::SignIn { api, next }),
                Err(_) => return Err(Refusal::Unavailable { api }),
            }
        };
        // The account may have gone since the session began.
        let account = match app.store.user(&email).await {
            Ok(Some(u)) => u,
            Ok(None) => return Err(Refusal::SignIn { api, next: String::new() }),
            Err(_) => return Err(Refusal::Unavailable { api }),
        };
        // A one-time password opens only the page that replaces it.
        let path = parts.uri.path();
        if account.must_change && cookie && !matches!(path, "/account" | "/logout" | "/api/v1/me" | "/api/v1/logout") {
            return Err(Refusal::MustChange { api });
        }
        let person = app.person(&email);
        let lang = lang_of(&parts.headers, &account.lang);
        let via = if api { Via::Api } else { Via::Web };
        let sandbox = app.config.delivery.mode == tomare_config::DeliveryMode::Sandbox;
        let viewer = Viewer { person, lang, via, csrf, session, ip, cookie, sandbox };
        // The API's state changes carry the session's token in a header;
        // forms carry it in the body (`Posted`).
        if api && cookie && parts.method != Method::GET && parts.method != Method::HEAD {
            let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !viewer.csrf_ok(sent) {
                return Err(Refusal::Csrf { api, lang });
            }
        }
        Ok(viewer)
    }
}

/// A caller who may decide approvals (an approver or an admin).
pub struct ApproverOnly(pub Viewer);
/// An admin.
pub struct AdminOnly(pub Viewer);

impl FromRequestParts<App> for ApproverOnly {
    type Rejection = Refusal;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Refusal> {
        let v = Viewer::from_request_parts(parts, app).await?;
        if v.role() < Role::Approver {
            return Err(Refusal::Forbidden { api: is_api(parts), lang: v.lang });
        }
        Ok(ApproverOnly(v))
    }
}

impl FromRequestParts<App> for AdminOnly {
    type Rejection = Refusal;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Refusal> {
        let v = Viewer::from_request_parts(parts, app).await?;
        if v.role() != Role::Admin {
            return Err(Refusal::Forbidden { api: is_api(parts), lang: v.lang });
        }
        Ok(AdminOnly(v))
    }
}

/// A form that carries a CSRF token.
pub trait HasCsrf {
    fn csrf(&self) -> &str;
}

/// A form posted by a signed-in browser whose CSRF token is its session's.
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T> FromRequest<App> for Posted<T>
where
    T: serde::de::DeserializeOwned + HasCsrf + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, app: &App) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, app).await.map_err(IntoResponse::into_response)?;
        let lang = viewer.lang;
        let req = Request::from_parts(parts, body);
        let axum::Form(form) = axum::Form::<T>::from_request(req, app)
            .await
            .map_err(|_| Refusal::Csrf { api: false, lang }.into_response())?;
        if !viewer.csrf_ok(form.csrf()) {
            return Err(Refusal::Csrf { api: false, lang }.into_response());
        }
        Ok(Posted { viewer, form })
    }
}

/// Starts a session for `email`: its row, and the cookie that carries it.
pub async fn begin(app: &App, email: &str, ip: &str) -> Result<(SessionRow, HeaderValue), tomare_store::StoreError> {
    let secret = random_secret(32);
    let now = now_ms();
    let row = SessionRow {
        id_hash: secret_hash(&secret),
        email: email.to_lowercase(),
        csrf: random_secret(24),
        created_at: now,
        expires_at: now + SESSION_LIFETIME_MS,
        ip: ip.to_string(),
    };
    app.store.create_session(&row).await?;
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}", SESSION_LIFETIME_MS / 1000);
    Ok((row, HeaderValue::from_str(&cookie).expect("a cookie of URL-safe characters")))
}

/// The cookie that ends a session in the browser.
pub fn end_cookie() -> HeaderValue {
    HeaderValue::from_static("tomare_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}
