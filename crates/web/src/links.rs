//! Signed one-click links in notice mails, and the pages behind them.
//!
//! A link is `{public_url}/a/{action}/{token}`. The token carries the
//! message, the action, the person the notice went to, an expiry and a
//! random nonce, signed with HMAC-SHA256 under a key kept in
//! `data_dir/link.key` (0600). GET never changes anything (mail scanners
//! fetch every link): it shows what the link would do and a button whose
//! POST does it. A link acts once; a second use says what the first did.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use tomare_model::i18n::{Lang, t};
use tomare_model::{ActionLinks, LinkAction, MessageId, State as MessageState, now_ms};
use tomare_store::{Store, Transition, UsedLink};

/// No link lives longer than this, whatever the hold or approval.
pub const MAX_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

/// The signing key and where links point.
pub struct Links {
    key: [u8; 32],
    base_url: String,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub id: MessageId,
    pub action: LinkAction,
    pub person: String,
    pub expires_at: i64,
    pub nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Not signed by us, altered, or for another action than its path says.
    Invalid,
    Expired,
}

impl Links {
    /// The key in `data_dir/link.key`, made (32 random bytes, 0600) when
    /// there is none. A key of the wrong length is refused, not replaced:
    /// replacing it would void every link already sent.
    pub fn open(data_dir: &std::path::Path, base_url: &str) -> std::io::Result<Links> {
        let path = data_dir.join("link.key");
        let key = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
                f.write_all(&key)?;
                f.sync_all()?;
                key.to_vec()
            }
            Err(e) => return Err(e),
        };
        let key: [u8; 32] = key.try_into().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is not a 32-byte key", path.display()))
        })?;
        Ok(Links { key, base_url: base_url.trim_end_matches('/').to_string() })
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length")
    }

    /// A token for `claims` (its nonce included).
    pub fn sign(&self, c: &Claims) -> String {
        let payload = format!("1\n{}\n{}\n{}\n{}\n{}", c.id, c.action.as_str(), c.person, c.expires_at, c.nonce);
        self.seal(&payload)
    }

    /// `payload` and its HMAC, as a token: `b64(payload).b64(mac)`.
    fn seal(&self, payload: &str) -> String {
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        format!("{}.{}", B64.encode(payload), B64.encode(mac.finalize().into_bytes()))
    }

    /// The payload of a token we sealed, or Invalid. Constant time: the
    /// comparison says nothing of how close a guess was.
    fn open_token(&self, token: &str) -> Result<String, LinkError> {
        let (payload, sig) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let payload = B64.decode(payload).map_err(|_| LinkError::Invalid)?;
        let sig = B64.decode(sig).map_err(|_| LinkError::Invalid)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&sig).map_err(|_| LinkError::Invalid)?;
        String::from_utf8(payload).map_err(|_| LinkError::Invalid)
    }

    /// The claims of `token` reached through the `action` path, at `now`.
    pub fn verify(&self, action: &str, token: &str, now: i64) -> Result<Claims, LinkError> {
        let payload = self.open_token(token)?;
        let f: Vec<&str> = payload.split('\n').collect();
        let [version, id, act, person, expires, nonce] = f[..] else { return Err(LinkError::Invalid) };
        let claims = Claims {
            id: MessageId::parse(id).ok_or(LinkError::Invalid)?,
            action: LinkAction::parse(act).ok_or(LinkError::Invalid)?,
            person: person.to_string(),
            expires_at: expires.parse().map_err(|_| LinkError::Invalid)?,
            nonce: nonce.to_string(),
        };
        if version != "1" || claims.action.as_str() != action {
            return Err(LinkError::Invalid);
        }
        if now >= claims.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }
}

/// What a valid set-password invitation says.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    pub email: String,
    pub expires_at: i64,
    pub nonce: String,
}

/// How long a set-password invitation lives.
pub const INVITE_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

impl Links {
    /// A signed set-password link for `email`: `{public_url}/p/{token}`.
    pub fn invite(&self, email: &str, now: i64) -> String {
        let nonce = crate::accounts::random_secret(16);
        // Its own first field: an invitation is never taken for an action link.
        let payload = format!("p1\n{}\n{}\n{nonce}", email.to_lowercase(), now + INVITE_LIFETIME_MS);
        format!("{}/p/{}", self.base_url, self.seal(&payload))
    }

    pub fn verify_invite(&self, token: &str, now: i64) -> Result<Invite, LinkError> {
        let payload = self.open_token(token)?;
        let f: Vec<&str> = payload.split('\n').collect();
        let ["p1", email, expires, nonce] = f[..] else { return Err(LinkError::Invalid) };
        let invite = Invite {
            email: email.to_string(),
            expires_at: expires.parse().map_err(|_| LinkError::Invalid)?,
            nonce: nonce.to_string(),
        };
        if now >= invite.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(invite)
    }
}

/// How long a download page remembers a proved code or password.
pub const DOWNLOAD_PASS_MS: i64 = 3600 * 1000;

impl Links {
    /// A pass for the download link `token_hash`, proved by `who` (the
    /// address a code went to, or `password`), for the cookie of its page.
    pub fn download_pass(&self, token_hash: &str, who: &str, now: i64) -> String {
        self.seal(&format!("d1\n{token_hash}\n{}\n{}", who.to_lowercase(), now + DOWNLOAD_PASS_MS))
    }

    /// Who a pass proved, if it is ours, for this link and still good.
    pub fn verify_download_pass(&self, pass: &str, token_hash: &str, now: i64) -> Option<String> {
        let payload = self.open_token(pass).ok()?;
        let f: Vec<&str> = payload.split('\n').collect();
        let ["d1", hash, who, until] = f[..] else { return None };
        (hash == token_hash && until.parse::<i64>().ok()? > now).then(|| who.to_string())
    }
}

impl ActionLinks for Links {
    fn link(&self, id: &MessageId, action: LinkAction, person: &str, expires_at: i64) -> String {
        let mut nonce = [0u8; 16];
        // Without the system's randomness no link is safe to make: a fixed
        // nonce would let one use void the others, never the reverse.
        let _ = getrandom::fill(&mut nonce);
        let claims = Claims {
            id: id.clone(),
            action,
            person: person.to_string(),
            expires_at: expires_at.min(now_ms() + MAX_LIFETIME_MS),
            nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
        };
        format!("{}/a/{}/{}", self.base_url, action.as_str(), self.sign(&claims))
    }
}

#[derive(Clone)]
pub(crate) struct LinkApp {
    pub store: Arc<dyn Store>,
    pub links: Arc<Links>,
    pub org: tomare_model::OrgId,
}

/// The states an action applies from (as the store's transitions allow).
pub(crate) fn applies(action: LinkAction, state: MessageState) -> bool {
    match action {
        LinkAction::Cancel => MessageState::CANCELLABLE.contains(&state),
        LinkAction::Release => state == MessageState::Held,
        LinkAction::Approve | LinkAction::Deny => state == MessageState::AwaitingApproval,
    }
}

fn lang_of(headers: &HeaderMap) -> Lang {
    crate::session::lang_of(headers, "")
}

pub use tomare_model::html_escape;

pub(crate) fn page(lang: Lang, status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"{l}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · tomare</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:36rem;margin:1rem auto;padding:0 1rem;line-height:1.5}}\
         dt{{font-weight:600}}dd{{margin:0 0 .5rem 0;overflow-wrap:anywhere}}\
         button{{font-size:1.1rem;padding:.6rem 1.2rem;width:100%}}textarea{{width:100%;box-sizing:border-box}}\
         input{{font-size:1.1rem;width:100%;box-sizing:border-box;padding:.4rem}}ul.files{{padding:0;list-style:none}}\
         ul.files li{{margin:.6rem 0;overflow-wrap:anywhere}}a.download{{display:block;text-align:center;margin-top:.3rem;\
         padding:.6rem;border:1px solid #1a5fb4;border-radius:.3rem;text-decoration:none}}.note{{background:#f4f4f4;padding:.5rem}}\
         </style></head><body><h1>{title}</h1>{body}</body></html>",
        l = if lang == Lang::Ja { "ja" } else { "en" },
        title = html_escape(title),
    );
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        // The token is in the address: it must not leak as a Referer.
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (status, headers, html).into_response()
}

/// A page that only says `text`.
fn said(lang: Lang, status: StatusCode, title: &str, text: &str) -> Response {
    page(lang, status, title, &format!("<p>{}</p>", html_escape(text)))
}

fn refused(lang: Lang, e: LinkError) -> Response {
    let (status, key) = match e {
        LinkError::Invalid => (StatusCode::BAD_REQUEST, "link.invalid"),
        LinkError::Expired => (StatusCode::GONE, "link.expired"),
    };
    said(lang, status, &t(lang, &format!("{key}.title"), &[]), &t(lang, key, &[]))
}

fn action_name(lang: Lang, a: LinkAction) -> String {
    t(lang, &format!("link.action.{}", a.as_str()), &[])
}

fn state_name(lang: Lang, s: MessageState) -> String {
    t(lang, &format!("state.{}", s.as_str()), &[])
}

/// What a use of a link did, in words.
fn outcome_text(lang: Lang, used: &UsedLink) -> String {
    let when = tomare_model::rfc3339(used.used_at);
    match used.outcome {
        Transition::Done => t(lang, "link.used.done", &[&action_name(lang, used.action), &when]),
        Transition::NotFound => t(lang, "link.not_found", &[]),
        Transition::Refused(s) => t(lang, "link.used.refused", &[&when, &state_name(lang, s)]),
    }
}

async fn message_summary(app: &LinkApp, lang: Lang, id: &MessageId) -> Option<(MessageState, String)> {
    let (m, _) = app.store.get(id).await.ok()??;
    let to: Vec<String> = m.recipients.iter().map(|r| html_escape(&r.address.to_string())).collect();
    let html = format!(
        "<dl data-message-id=\"{id}\"><dt>{subject_l}</dt><dd>{subject}</dd><dt>{from_l}</dt><dd>{from}</dd>\
         <dt>{to_l}</dt><dd>{to}</dd><dt>{state_l}</dt><dd>{state}</dd></dl>",
        id = html_escape(m.id.as_str()),
        subject_l = t(lang, "link.subject", &[]),
        subject = html_escape(&m.subject),
        from_l = t(lang, "link.from", &[]),
        from = html_escape(&m.mail_from.to_string()),
        to_l = t(lang, "link.to", &[]),
        to = to.join("<br>"),
        state_l = t(lang, "link.state", &[]),
        state = html_escape(&state_name(lang, m.state)),
    );
    Some((m.state, html))
}

/// What a link's use did, above the message as it is now.
async fn used_page(app: &LinkApp, lang: Lang, used: &UsedLink) -> String {
    let summary = message_summary(app, lang, &used.message_id).await.map(|(_, html)| html).unwrap_or_default();
    format!("<p>{}</p>{summary}", html_escape(&outcome_text(lang, used)))
}

/// GET: what the link would do, and the button that does it.
pub(crate) async fn show(
    State(app): State<LinkApp>,
    Path((action, token)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&headers);
    let claims = match app.links.verify(&action, &token, now_ms()) {
        Ok(c) => c,
        Err(e) => return refused(lang, e),
    };
    let title = action_name(lang, claims.action);
    if let Ok(Some(used)) = app.store.used_link(&claims.nonce).await {
        return page(lang, StatusCode::OK, &title, &used_page(&app, lang, &used).await);
    }
    let Some((state, summary)) = message_summary(&app, lang, &claims.id).await else {
        return said(lang, StatusCode::NOT_FOUND, &title, &t(lang, "link.not_found", &[]));
    };
    if !applies(claims.action, state) {
        let text = t(lang, "link.too_late", &[&state_name(lang, state)]);
        return page(lang, StatusCode::CONFLICT, &title, &format!("{summary}<p>{}</p>", html_escape(&text)));
    }
    let reason = if claims.action == LinkAction::Deny {
        format!(
            "<p><label>{}<br><textarea name=\"reason\" rows=\"3\"></textarea></label></p>",
            t(lang, "link.reason", &[])
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p>{ask}</p>{summary}<form method=\"post\">{reason}\
         <button type=\"submit\" data-action=\"{a}\">{title}</button></form>",
        ask = html_escape(&t(lang, &format!("link.ask.{}", claims.action.as_str()), &[])),
        a = claims.action.as_str(),
        title = html_escape(&title),
    );
    page(lang, StatusCode::OK, &title, &body)
}

/// The deny page's form (the other actions post an empty one).
#[derive(serde::Deserialize)]
pub(crate) struct ActForm {
    #[serde(default)]
    reason: String,
}

/// POST: does what the link says, once.
pub(crate) async fn act(
    State(app): State<LinkApp>,
    Path((action, token)): Path<(String, String)>,
    headers: HeaderMap,
    // A POST without a form (no body, no content type) is an empty one.
    form: Result<axum::Form<ActForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = lang_of(&headers);
    let now = now_ms();
    let claims = match app.links.verify(&action, &token, now) {
        Ok(c) => c,
        Err(e) => return refused(lang, e),
    };
    let title = action_name(lang, claims.action);
    let error = || said(lang, StatusCode::SERVICE_UNAVAILABLE, &title, &t(lang, "link.error", &[]));
    match app.store.used_link(&claims.nonce).await {
        Ok(Some(used)) => {
            return page(lang, StatusCode::OK, &title, &used_page(&app, lang, &used).await);
        }
        Ok(None) => {}
        Err(_) => return error(),
    }
    // Who acted, and how: the person the notice went to, through its link.
    let actor = format!("link:{}", claims.person);
    let reason = crate::access::clean_reason(&form.map(|f| f.0.reason).unwrap_or_default());
    let done = crate::access::perform(app.store.as_ref(), &claims.id, claims.action, &actor, &reason).await;
    let Ok(outcome) = done else { return error() };
    let used = UsedLink {
        nonce: claims.nonce.clone(),
        message_id: claims.id.clone(),
        action: claims.action,
        person: claims.person.clone(),
        outcome,
        used_at: now,
    };
    let used = match app.store.record_link(&used).await {
        // Two clicks at once: the first one's outcome is the answer.
        Ok(Some(first)) => first,
        Ok(None) => used,
        Err(_) => return error(),
    };
    tracing::info!(id = %claims.id, action = claims.action.as_str(), actor = %tomare_model::escape_controls(&actor), outcome = ?used.outcome, "notice link used");
    let detail = match used.outcome {
        Transition::Done => reason.clone(),
        Transition::NotFound => "not found".into(),
        Transition::Refused(s) => format!("refused: {}", s.as_str()),
    };
    let entry =
        tomare_store::AuditEntry::now(&claims.person, "link", claims.action.as_str(), claims.id.as_str(), &detail, "");
    crate::access::record(app.store.as_ref(), app.org, &entry).await;
    let status = match used.outcome {
        Transition::Done => StatusCode::OK,
        Transition::NotFound => StatusCode::NOT_FOUND,
        Transition::Refused(_) => StatusCode::CONFLICT,
    };
    page(lang, status, &title, &used_page(&app, lang, &used).await)
}
