//! A real web listener on loopback over a real SQLite store, with an org
//! of five: taro and jiro send (boss supervises taro, other-boss jiro),
//! root is an admin. Requests are plain HTTP/1.1 over TCP.
#![allow(dead_code)]

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tomare_config::{Config, DirectoryUser};
use tomare_model::{Envelope, MessageId, Metrics, NoticeKind, OnTimeout, State, now_ms};
use tomare_store::{ApprovalRequest, Decision, NewMessage, PeopleStore, QueueStore, SqliteStore, Store};
use tomare_web::links::Links;

pub const PASSWORD: &str = "correct horse battery";

pub struct Server {
    pub _dir: tempfile::TempDir,
    pub addr: String,
    pub store: Arc<SqliteStore>,
    pub links: Arc<Links>,
    pub org: i64,
}

pub struct Resp {
    pub status: u16,
    /// The head, lower-cased.
    pub head: String,
    /// The head as sent (cookies are case-sensitive).
    pub raw_head: String,
    pub body: String,
}

impl Resp {
    /// The value of a `Set-Cookie` for `name`, if set.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.raw_head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie: "))
            .map(|l| &l[12..])
            .filter_map(|c| c.split(';').next())
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The value of the hidden `csrf` field of the page.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        self.body[at..at + self.body[at..].find('"').unwrap()].to_string()
    }
}

fn user(email: &str, role: &str, supervisor: Option<&str>) -> DirectoryUser {
    DirectoryUser {
        email: email.into(),
        name: String::new(),
        role: role.into(),
        supervisor: supervisor.map(String::from),
        groups: Vec::new(),
    }
}

pub async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("tomare.db")).await.unwrap());
    let org = store.ensure_org("Example").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let links = Arc::new(Links::open(dir.path(), &format!("http://{addr}/")).unwrap());
    let mut config = Config::default();
    config.web.listen = addr.clone();
    config.org.admins = vec!["root@example.com".into()];
    config.user = vec![
        user("taro@example.com", "member", Some("boss@example.com")),
        user("jiro@example.com", "member", Some("other-boss@example.com")),
        user("boss@example.com", "approver", None),
        user("other-boss@example.com", "approver", None),
    ];
    let hash = tomare_web::accounts::hash_password(PASSWORD).unwrap();
    for who in ["taro", "jiro", "boss", "other-boss", "root"] {
        store.put_user(org, &format!("{who}@example.com"), &hash).await.unwrap();
    }
    let rules = Arc::new(tomare_review::Rules::new(&config, Vec::new(), Vec::new()).unwrap());
    let dyn_store: Arc<dyn Store> = store.clone();
    let app = tomare_web::App::new(tomare_web::Parts {
        config: config.clone(),
        org,
        store: dyn_store,
        metrics: Arc::new(Metrics::default()),
        links: links.clone(),
        rules: Arc::new(move || rules.clone()),
        archive: None,
        reload: None,
        replayer: None,
        mail: None,
        protector: None,
    });
    let router = tomare_web::router(app);
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _tx;
        tomare_web::serve(listener, router, rx).await.unwrap()
    });
    Server { _dir: dir, addr, store, links, org }
}

impl Server {
    /// A message from `from` in `state` (held for ten minutes, or waiting
    /// for `asked` to approve).
    pub async fn message_from(&self, from: &str, state: State, subject: &str, asked: &[&str]) -> MessageId {
        let now = now_ms();
        let id = MessageId::generate(now);
        let m = NewMessage {
            id: id.clone(),
            org_id: self.org,
            envelope: Envelope {
                mail_from: from.parse().unwrap(),
                rcpt_to: vec!["partner@customer.test".parse().unwrap(), "colleague@example.com".parse().unwrap()],
                helo: "client".into(),
                client_ip: "127.0.0.1".into(),
                auth_user: None,
            },
            subject: subject.into(),
            header_from: from.into(),
            message_id_header: "<a@b>".into(),
            size: 10,
            received_at: now,
            state: if state == State::AwaitingApproval { State::Received } else { state },
            release_at: Some(now + 600_000),
            is_dsn: false,
        };
        self.store.insert_messages(&[m]).await.unwrap();
        if state == State::AwaitingApproval {
            let d = Decision {
                id: id.clone(),
                facts: tomare_model::Facts::default(),
                summary: String::new(),
                verdict: None,
                reasons: "confidential attachment".into(),
                state,
                release_at: now + 600_000,
                approval: Some(ApprovalRequest {
                    approver: asked.first().map(|a| a.to_string()).unwrap_or_default(),
                    deputy: None,
                    on_timeout: OnTimeout::Reject,
                    timeout_ms: 600_000,
                }),
                add_recipients: Vec::new(),
                rewritten: false,
                // Its file behind a download link (not sent yet).
                protection: Some(tomare_store::NewProtection {
                    link: Some(tomare_store::NewLink {
                        token_hash: format!("{:064}", now),
                        sender: from.to_string(),
                        recipients: vec!["partner@customer.test".into()],
                        access: "code".into(),
                        password_hash: None,
                        expires_at: now + 86_400_000,
                        max_downloads: 5,
                        files: vec![tomare_store::ProtectedFile {
                            idx: 0,
                            name: "見積書.pdf".into(),
                            content_type: "application/pdf".into(),
                            size: 1234,
                            sha256: "0".repeat(64),
                            downloads: 0,
                        }],
                    }),
                    secrets: Vec::new(),
                }),
                notify: asked.iter().map(|a| (NoticeKind::ApprovalRequest, a.to_string())).collect(),
            };
            self.store.decide(&[d]).await.unwrap();
        }
        id
    }

    pub async fn message(&self, state: State, subject: &str) -> MessageId {
        self.message_from("taro@example.com", state, subject, &["boss@example.com"]).await
    }

    pub async fn state(&self, id: &MessageId) -> State {
        self.store.get(id).await.unwrap().unwrap().0.state
    }

    /// One request; `headers` as `Name: value` lines.
    pub async fn req(&self, method: &str, path: &str, headers: &[String], body: &str) -> Resp {
        let mut s = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
        let mut extra = String::new();
        for h in headers {
            extra.push_str(h);
            extra.push_str("\r\n");
        }
        if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("content-type:")) {
            extra.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept-Language: ja,en;q=0.5\r\nConnection: close\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        Resp { status, head: head.to_ascii_lowercase(), raw_head: head.to_string(), body: body.to_string() }
    }

    /// (status, head, body) of a request without cookies.
    pub async fn http(&self, method: &str, path: &str, body: &str) -> (u16, String, String) {
        let r = self.req(method, path, &[], body).await;
        (r.status, r.head, r.body)
    }

    /// Signs `who`@example.com in through the form: the session.
    pub async fn sign_in(&self, who: &str) -> Session {
        let body = format!("email={who}%40example.com&password={}&next=%2Ftray", PASSWORD.replace(' ', "+"));
        let r = self.req("POST", "/login", &[], &body).await;
        assert_eq!(r.status, 303, "{} {}", r.head, r.body);
        let cookie = r.cookie("tomare_session").expect("a session cookie");
        let page = self.req("GET", "/account", &[format!("Cookie: tomare_session={cookie}")], "").await;
        assert_eq!(page.status, 200, "{}", page.body);
        Session { cookie, csrf: page.csrf() }
    }
}

/// A signed-in browser: its cookie and its CSRF token.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    pub fn header(&self) -> String {
        format!("Cookie: tomare_session={}", self.cookie)
    }
}
