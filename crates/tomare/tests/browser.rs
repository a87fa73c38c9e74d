//! The notice links in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which scripts/test.sh installs), on a phone-sized
//! window in Japanese: a sender cancels a held mail from the link in its
//! held notice, an approver approves from the link in the request, and a
//! changed link shows its refusal. Screenshots of each page go to
//! `docs/screenshots/`.
//!
//! WebDriver is HTTP and JSON: the few calls used are made here directly.

mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WIDTH: u64 = 390;

struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver; scripts/test.sh does)");
        let addr = format!("127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(20), || TcpStream::connect(&addr).is_ok()),
            "chromedriver did not start"
        );
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser { driver, addr, session: String::new(), _profile: profile };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", b._profile.path().display()),
                    "--lang=ja",
                ],
                // A phone's screen (headless windows are at least 500 px wide).
                "mobileEmulation": {"deviceMetrics": {"width": WIDTH, "height": 844, "pixelRatio": 1.0}},
                "prefs": {"intl.accept_languages": "ja"},
            },
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        b
    }

    /// One WebDriver call; the response's `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        // chromedriver keeps the connection open: read by Content-Length.
        let mut reader = std::io::BufReader::new(s);
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let v: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    fn script(&self, script: &str) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    fn text(&self) -> String {
        self.script("return document.body.innerText").as_str().unwrap_or_default().to_string()
    }

    fn click(&self, css: &str) {
        let found = self.session_call("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        let id = found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        let id = id.unwrap_or_else(|| panic!("no element {css}: {found}; page: {}", self.text()));
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// The page fits the phone's width: nothing scrolls sideways.
    fn fits(&self) -> bool {
        let w = self.script("return [window.innerWidth, document.documentElement.scrollWidth]");
        let (inner, scroll) = (w[0].as_u64().unwrap_or(0), w[1].as_u64().unwrap_or(u64::MAX));
        assert!(inner <= WIDTH, "a phone-sized window: {w}");
        scroll <= inner
    }

    fn screenshot(&self, name: &str) {
        let png = self.session_call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            self.session_call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn a_sender_cancels_and_an_approver_approves_from_their_notices_on_a_phone() {
    let sink = Sink::start();
    let rules = r#"
[policy]
builtin = false

[[rule]]
name = "hold-outside"
description = "Mail to outside waits an hour."
when = { all = [{ external_recipients = { min = 1 } }, { text = { contains = ["見積"], in = ["subject"] } }] }
then = [{ hold = "1h" }, { notify = "sender" }]

[[rule]]
name = "contract-needs-ok"
description = "Contracts go out only once the supervisor agrees."
when = { text = { contains = ["契約"], in = ["subject"] } }
then = [{ require_approval = { approver = "boss@example.com", timeout = "4h" } }]
"#;
    let g = Gateway::start(&format!("{}{rules}", relay_to(sink.port, "")));
    let send = |subject: &str| {
        let data = format!(
            "From: Taro <taro@example.com>\r\nTo: <partner@customer.test>\r\nSubject: =?UTF-8?B?{}?=\r\n\
             Message-ID: <{}@example.com>\r\n\r\nご確認ください。\r\n",
            base64::engine::general_purpose::STANDARD.encode(subject),
            free_port()
        );
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["partner@customer.test"], &data).unwrap())
    };
    let held = send("見積書の送付");
    let waiting = send("契約書の確認");
    let notice = |to: &str| {
        assert!(wait_until(Duration::from_secs(15), || sink.messages().iter().any(|m| m.rcpts == [to])), "{}", g.log());
        sink.messages().into_iter().find(|m| m.rcpts == [to]).unwrap().text()
    };
    let base = format!("http://{}", g.web);
    let browser = Browser::start();

    // The sender's held notice: Cancel.
    let told = notice("taro@example.com");
    browser.open(&format!("{base}{}", link_in(&told, &g.web, "cancel")));
    let page = browser.text();
    assert!(page.contains("このメールの送信を取り消す") && page.contains("見積書の送付"), "{page}");
    browser.screenshot("link-cancel-confirm-ja");
    assert!(browser.fits(), "the confirmation fits a {WIDTH} px screen");
    assert_eq!(g.state(&held), "held", "opening the link changed nothing");
    browser.click("button[data-action=\"cancel\"]");
    assert!(wait_until(Duration::from_secs(5), || g.state(&held) == "cancelled"), "{}", g.log());
    assert!(browser.text().contains("実行済み"), "{}", browser.text());
    browser.screenshot("link-cancel-done-ja");

    // The approver's request: Approve.
    let request = notice("boss@example.com");
    browser.open(&format!("{base}{}", link_in(&request, &g.web, "approve")));
    let page = browser.text();
    assert!(page.contains("このメールの送信を承認する") && page.contains("partner@customer.test"), "{page}");
    assert!(browser.fits());
    assert_eq!(g.state(&waiting), "awaiting_approval");
    browser.screenshot("link-approve-confirm-ja");
    browser.click("button[data-action=\"approve\"]");
    assert!(wait_until(Duration::from_secs(10), || g.state(&waiting) == "delivered"), "{}", g.log());
    assert!(sink.messages().iter().any(|m| m.rcpts == ["partner@customer.test"]), "the approved mail went out");
    assert!(!sink.messages().iter().any(|m| m.text().contains("見積書の送付") && m.rcpts == ["partner@customer.test"]));

    // A changed link: refused, and says so.
    let deny = link_in(&request, &g.web, "deny");
    browser.open(&format!("{base}{}x", deny));
    assert!(browser.text().contains("このリンクは無効です"), "{}", browser.text());
    browser.screenshot("link-invalid-ja");
}
