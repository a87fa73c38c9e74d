//! The HTTP listener: `/healthz`, `/metrics` (Prometheus), the pages
//! behind the one-click links in notice mails, the signed-in UI for
//! senders, approvers and admins, and the JSON API under `/api/v1`.
//!
//! # Layout
//! - `links`: signed one-click links and their confirmation pages.
//! - `accounts`: password hashes, roles, the sign-in throttle.
//! - `session`: sessions in the database, the `Viewer` extractor (who is
//!   asking, signed in by cookie or bearer token), CSRF.
//! - `access`: what a viewer may see and do to a message; every page and
//!   API call goes through it.
//! - `dashboard`: the admin's counts (by state, by rule, cancels) and CSV.
//! - `download`: the pages behind a protected attachment's download link.
//! - `mail`: archive search, a message's HTML made inert, its bytes.
//! - `people`: everyone tomare knows, one list; the directory's CSV.
//! - `rules`: the admin's rule editor: check, dry run, save and reload.
//! - `pages`: the HTML UI (askama templates in `templates/`).
//! - `api`: the JSON API and its OpenAPI document.
//!
//! Never trusts a value from mail: templates escape everything, and pages
//! carry a Content-Security-Policy that runs no script but our own.

pub mod access;
pub mod accounts;
pub mod api;
pub mod dashboard;
pub mod download;
pub mod links;
pub mod mail;
pub mod pages;
pub mod people;
pub mod rules;
pub mod session;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tomare_config::Config;
use tomare_model::{Metrics, OrgId};
use tomare_policy::Directory;
use tomare_store::Store;

/// The rules and directory in effect now (replaced whole on reload).
pub type RulesFn = Arc<dyn Fn() -> Arc<tomare_review::Rules> + Send + Sync>;

/// Reloads the rules and directory as SIGHUP does: the number of rules now,
/// or why the new ones were refused (the old ones stay).
pub type ReloadFn =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, String>> + Send>> + Send + Sync>;

/// Everything the handlers share.
#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub org: OrgId,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub links: Arc<links::Links>,
    rules: RulesFn,
    /// The archive (search, message bytes), unless `[archive] enabled = false`.
    pub archive: Option<Arc<tomare_archive::Archive>>,
    /// Saving rules reloads them (None: the editor only checks).
    pub reload: Option<ReloadFn>,
    /// Dry runs read archived messages again.
    pub replayer: Option<Arc<tomare_review::Replayer>>,
    pub mail: Option<MailFn>,
    /// Protected attachments' vault (None: download links do not open).
    pub protector: Option<Arc<tomare_protect::Protector>>,
    pub throttle: accounts::Throttle,
    /// Cookies are `Secure` when the UI is reached over https.
    pub secure_cookies: bool,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Failed sign-ins allowed per account (and per address) in the window.
const LOGIN_FAILURES_PER_ACCOUNT: u32 = 5;
const LOGIN_FAILURES_PER_IP: u32 = 20;
const LOGIN_WINDOW_MS: i64 = 15 * 60 * 1000;

pub use tomare_queue::MailFn;

/// What the web is made of; `serve` fills it in.
pub struct Parts {
    pub config: Config,
    pub org: OrgId,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub links: Arc<links::Links>,
    pub rules: RulesFn,
    pub archive: Option<Arc<tomare_archive::Archive>>,
    pub reload: Option<ReloadFn>,
    pub replayer: Option<Arc<tomare_review::Replayer>>,
    /// Sends invitations and download codes (None: it cannot).
    pub mail: Option<MailFn>,
    pub protector: Option<Arc<tomare_protect::Protector>>,
}

impl App {
    pub fn new(p: Parts) -> App {
        App(Arc::new(Inner {
            secure_cookies: p.config.web.base_url().starts_with("https://"),
            config: p.config,
            org: p.org,
            store: p.store,
            metrics: p.metrics,
            links: p.links,
            rules: p.rules,
            archive: p.archive,
            reload: p.reload,
            replayer: p.replayer,
            mail: p.mail,
            protector: p.protector,
            throttle: accounts::Throttle::new(LOGIN_FAILURES_PER_ACCOUNT, LOGIN_FAILURES_PER_IP, LOGIN_WINDOW_MS),
        }))
    }

    /// The rules and directory in effect now.
    pub fn rules(&self) -> Arc<tomare_review::Rules> {
        (self.rules)()
    }

    pub fn directory(&self) -> Arc<Directory> {
        self.rules().directory.clone()
    }

    /// Who `email` is, as the directory says now.
    pub fn person(&self, email: &str) -> accounts::Person {
        accounts::Person::of(&self.config, &self.directory(), email)
    }
}

pub fn router(app: App) -> Router {
    let actions = Router::new()
        .route("/a/{action}/{token}", get(links::show).post(links::act))
        .with_state(links::LinkApp { store: app.store.clone(), links: app.links.clone(), org: app.org });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/tray", get(pages::tray))
        .route("/approvals", get(pages::approvals))
        .route("/history", get(pages::history))
        .route("/queue", get(pages::queue))
        .route("/audit", get(pages::audit))
        .route("/audit.csv", get(pages::audit_csv))
        .route("/users", get(pages::users).post(pages::users_import))
        .route("/users/invite", post(people::invite))
        .route("/p/{token}", get(people::invited).post(people::set_password))
        .route("/dashboard", get(pages::dashboard))
        .route("/rules", get(rules::page).post(rules::submit))
        .route("/dashboard.csv", get(pages::dashboard_csv))
        .route("/account", get(pages::account).post(pages::account_save))
        .route("/messages/act", post(pages::act))
        .route("/messages/{id}", get(pages::message))
        .route("/messages/{id}/html", get(pages::message_html))
        .route("/messages/{id}/eml", get(pages::message_eml))
        .route("/messages/{id}/revoke", post(pages::revoke))
        .route("/d/{token}", get(download::show))
        .route("/d/{token}/code", post(download::ask_code))
        .route("/d/{token}/open", post(download::open))
        .route("/d/{token}/f/{idx}", get(download::file))
        .route("/search", get(pages::search))
        .route("/sandbox", get(pages::sandbox))
        .route("/sandbox/{id}", get(pages::sandbox_one))
        .route("/sandbox/{id}/html", get(pages::sandbox_html))
        .route("/static/{file}", get(pages::asset))
        .merge(api::routes())
        .with_state(app)
        .merge(actions)
}

pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    // The peer's address: the sign-in throttle and the audit log use it.
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|down| *down).await;
        })
        .await
}

/// `200 ok` when the database answers and nothing is wrong; `503` with
/// `"status": "degraded"` and the problems (`disk`: free space below
/// `[storage] min_free`, so new mail is refused; `archive`: behind for 10
/// minutes or more; `delivery`: the last 20 attempts all failed for every
/// recipient), or `"error"` when the database does not answer.
async fn healthz(State(app): State<App>) -> impl IntoResponse {
    let h = &app.metrics.health;
    let problems = h.problems();
    let disk = serde_json::json!({
        "free_bytes": h.disk_free.load(Relaxed),
        "reserve_bytes": h.disk_reserve.load(Relaxed),
    });
    match app.store.depth().await {
        Ok(depth) => {
            let queued: i64 = depth.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum();
            let (code, status) = if problems.is_empty() {
                (StatusCode::OK, "ok")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "degraded")
            };
            let body = serde_json::json!({
                "status": status,
                "problems": problems,
                "queued": queued,
                "disk": disk,
                "archive_lag_seconds": h.archive_lag.load(Relaxed),
                "delivery_failures_in_row": h.delivery_failures_in_row.load(Relaxed),
            });
            (code, axum::Json(body))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "error", "error": e.to_string(), "problems": problems })),
        ),
    }
}

async fn metrics_text(State(app): State<App>) -> impl IntoResponse {
    let depth = app.store.depth().await.unwrap_or_default();
    let depth: Vec<(&str, i64)> = depth.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render(&depth))
}
