//! The notice links and the signed-in UI in real headless Chromium
//! (Debian's `chromium` and `chromium-driver`, which scripts/test.sh
//! installs), on a phone-sized window in Japanese: a sender cancels a held
//! mail from the link in its held notice and another from the hold tray,
//! an approver approves from the link in the request and from the approval
//! page, an admin looks through the queue, and a changed link shows its
//! refusal. Screenshots of each page go to `docs/screenshots/`.
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
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn element(&self, css: &str) -> String {
        let found = self.session_call("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        let id = found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        id.unwrap_or_else(|| panic!("no element {css}: {found}; page: {}", self.text())).to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })));
    }

    /// The text of the first element matching `css`.
    fn text_of(&self, css: &str) -> String {
        let css = serde_json::to_string(css).unwrap();
        self.script(&format!("const e = document.querySelector({css}); return e ? e.innerText : ''"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn url(&self) -> String {
        self.session_call("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    fn sign_out(&self) {
        self.click("button[data-action=logout]");
        assert!(
            wait_until(Duration::from_secs(10), || self.url().contains("/login")
                && self.text().contains("tomare にログイン")),
            "signed out: {}",
            self.text()
        );
    }

    /// Signs in with the first admin's one-time password, and chooses
    /// [`ADMIN_PASSWORD`] as the page asks.
    fn first_sign_in(&self, base: &str, email: &str, one_time: &str) {
        self.open(&format!("{base}/tray"));
        self.type_into("form#login input[name=email]", email);
        self.type_into("form#login input[name=password]", one_time);
        self.click("form#login button[type=submit]");
        assert!(
            wait_until(Duration::from_secs(10), || self.url().ends_with("/account")
                && self.text().contains("ワンタイム")),
            "asked for a new password: {}",
            self.text()
        );
        self.type_into("form.passwd input[name=current]", one_time);
        self.type_into("form.passwd input[name=new]", ADMIN_PASSWORD);
        self.click("form.passwd button[type=submit]");
        assert!(
            wait_until(Duration::from_secs(10), || self.text().contains("パスワードを変更しました")),
            "{}",
            self.text()
        );
    }

    fn sign_in(&self, base: &str, email: &str, password: &str) {
        self.open(&format!("{base}/tray"));
        assert!(self.text().contains("tomare にログイン"), "sent to sign in: {}", self.text());
        self.type_into("form#login input[name=email]", email);
        self.type_into("form#login input[name=password]", password);
        self.click("form#login button[type=submit]");
        assert!(
            wait_until(Duration::from_secs(10), || self.url().ends_with("/tray") && self.text().contains("ログアウト")),
            "signed in: {}",
            self.text()
        );
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
    let notice = |kind: &str, to: &str| {
        let find = || sink.notices(kind).into_iter().find(|m| m.rcpts == [to]);
        assert!(wait_until(Duration::from_secs(15), || find().is_some()), "{}", g.log());
        find().unwrap().text()
    };
    let base = format!("http://{}", g.web);
    let browser = Browser::start();

    // The sender's held notice: Cancel.
    let told = notice("held", "taro@example.com");
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
    let request = notice("approval-request", "boss@example.com");
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

const RULES: &str = r#"
[policy]
builtin = false

[[user]]
email = "taro@example.com"
name = "山田 太郎"
supervisor = "boss@example.com"

[[rule]]
name = "hold-outside"
description = "Mail to outside waits an hour."
when = { all = [{ external_recipients = { min = 1 } }, { text = { contains = ["見積"], in = ["subject"] } }] }
then = [{ hold = "1h" }]

[[rule]]
name = "contract-needs-ok"
description = "Contracts go out only once the supervisor agrees."
when = { text = { contains = ["契約"], in = ["subject"] } }
then = [{ require_approval = { approver = "supervisor", timeout = "4h" } }]
"#;

#[test]
fn a_sender_cancels_from_the_tray_an_approver_approves_and_an_admin_sees_all_on_a_phone() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{RULES}", relay_to(sink.port, "")));
    let admin_password = first_admin_password(&g, "admin@example.com");
    for who in ["taro", "boss"] {
        let out = g.user(&["passwd", &format!("{who}@example.com"), "--password-stdin"], "a long enough password");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let send = |subject: &str, attachment: &str| {
        let data = format!(
            "From: Taro <taro@example.com>\r\nTo: <partner@customer.test>, <colleague@example.com>\r\n\
             Subject: =?UTF-8?B?{}?=\r\nMessage-ID: <{}@example.com>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             ご確認ください。\r\n--b\r\nContent-Type: text/plain; name={attachment}\r\n\
             Content-Disposition: attachment; filename={attachment}\r\n\r\n単価表\r\n--b--\r\n",
            base64::engine::general_purpose::STANDARD.encode(subject),
            free_port()
        );
        let rcpts = ["partner@customer.test", "colleague@example.com"];
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &rcpts, &data).unwrap())
    };
    let held = send("見積書の送付", "price.txt");
    let other = send("見積書（再送）", "price2.txt");
    let waiting = send("契約書の確認", "contract.txt");
    assert!(wait_until(Duration::from_secs(10), || g.state(&waiting) == "awaiting_approval"), "{}", g.log());
    assert_eq!(g.state(&held), "held");
    let base = format!("http://{}", g.web);
    let browser = Browser::start();

    // The sender signs in and finds both held mails in the tray, counting down.
    browser.sign_in(&base, "taro@example.com", "a long enough password");
    let card = |id: &str| format!("[data-message-id=\"{id}\"]");
    assert!(wait_until(Duration::from_secs(5), || browser.text().contains("見積書の送付")), "{}", browser.text());
    let page = browser.text();
    assert!(page.contains("保留中のメール") && page.contains("見積書（再送）") && page.contains("price.txt"), "{page}");
    assert!(page.contains("Mail to outside waits an hour."), "the rule's reason: {page}");
    assert!(page.contains("社外"), "the external recipient is marked: {page}");
    let countdown = format!("{} time.countdown", card(&held));
    let first = browser.text_of(&countdown);
    assert!(first.starts_with("あと ") && first.contains(':'), "a live countdown: {first:?}");
    assert!(
        wait_until(Duration::from_secs(5), || browser.text_of(&countdown) != first),
        "the countdown moves: {first:?}"
    );
    assert!(browser.fits(), "the tray fits a {WIDTH} px screen");
    browser.screenshot("tray-ja");
    // htmx updates the list in place: the page (and this mark on it) stays.
    browser.script("window.__stayed = 1");
    browser.click(&format!("{} button[data-action=\"cancel\"]", card(&held)));
    assert!(wait_until(Duration::from_secs(5), || g.state(&held) == "cancelled"), "{}", g.log());
    assert!(wait_until(Duration::from_secs(5), || !browser.text().contains("見積書の送付")), "{}", browser.text());
    assert_eq!(
        browser.script("return window.__stayed === 1"),
        serde_json::json!(true),
        "no reload: htmx swapped the list"
    );
    assert!(browser.text().contains("見積書（再送）"), "the other one still waits");
    assert_eq!(g.state(&other), "held");
    browser.sign_out();

    // The supervisor approves from the approval page, with a comment.
    browser.sign_in(&base, "boss@example.com", "a long enough password");
    browser.open(&format!("{base}/approvals"));
    let page = browser.text();
    assert!(
        page.contains("承認待ちのメール") && page.contains("契約書の確認") && page.contains("contract.txt"),
        "{page}"
    );
    assert!(page.contains("Contracts go out only once the supervisor agrees."), "{page}");
    assert!(browser.fits(), "the approval page fits");
    browser.screenshot("approvals-ja");
    browser.type_into(&format!("{} textarea", card(&waiting)), "確認しました");
    browser.click(&format!("{} button[data-action=\"approve\"]", card(&waiting)));
    assert!(wait_until(Duration::from_secs(10), || g.state(&waiting) == "delivered"), "{}", g.log());
    assert!(sink.messages().iter().any(|m| m.text().contains("contract.txt")), "the approved mail went out");
    assert!(!sink.mail().iter().any(|m| m.text().contains("price.txt")), "the cancelled one did not");
    // The sender heard of each hold, and that the boss approved (the
    // notice is a mail of its own: it may come a moment after).
    assert!(wait_until(Duration::from_secs(10), || !sink.notices("approved").is_empty()), "{}", g.log());
    let approved = sink.notices("approved");
    assert_eq!(approved.len(), 1, "approved by someone else: the sender is told");
    assert!(approved[0].text().contains("boss@example.com (web)"), "{}", approved[0].text());
    assert!(sink.notices("cancelled").is_empty(), "taro cancelled it himself: no notice");
    browser.sign_out();

    // The admin sees the whole queue and opens a message.
    browser.first_sign_in(&base, "admin@example.com", &admin_password);
    browser.open(&format!("{base}/queue"));
    let page = browser.text();
    for subject in ["見積書の送付", "見積書（再送）", "契約書の確認"] {
        assert!(page.contains(subject), "{subject}: {page}");
    }
    assert!(browser.fits(), "the queue fits");
    browser.screenshot("queue-ja");
    // The dashboard: two held, one cancelled by its sender.
    browser.open(&format!("{base}/dashboard"));
    assert_eq!(browser.text_of("[data-figure=held] strong"), "2", "{}", browser.text());
    assert_eq!(browser.text_of("[data-figure=cancelled_by_sender] strong"), "1", "{}", browser.text());
    assert!(
        browser.text().contains("hold-outside") && browser.text().contains("contract-needs-ok"),
        "{}",
        browser.text()
    );
    assert!(browser.fits(), "the dashboard fits");
    browser.screenshot("dashboard-ja");
    browser.open(&format!("{base}/messages/{waiting}"));
    let page = browser.text();
    assert!(page.contains("web:boss@example.com") && page.contains("contract.txt"), "{page}");
    browser.screenshot("message-ja");
}

/// An HTTP server on another loopback address that counts what reaches it:
/// the "remote" host of a mail's images and scripts.
struct Remote {
    addr: String,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Remote {
    fn start() -> Remote {
        let listener = std::net::TcpListener::bind("127.0.0.2:0").expect("127.0.0.2 is loopback on Linux");
        let addr = listener.local_addr().unwrap().to_string();
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 2048];
                let n = conn.read(&mut buf).unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string();
                seen.lock().unwrap().push(line);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Remote { addr, hits }
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

#[test]
fn an_admin_finds_mail_by_a_word_in_its_attachment_and_its_html_runs_nothing() {
    let sink = Sink::start();
    let remote = Remote::start();
    let g = Gateway::start(&relay_to(sink.port, ""));
    let admin_password = first_admin_password(&g, "admin@example.com");
    let r = &remote.addr;
    let html = format!(
        "<p>新製品のご案内です。</p><script>fetch('http://{r}/script')</script>\
         <img src=\"http://{r}/pixel.png\"><img src=\"x\" onerror=\"fetch('http://{r}/onerror')\">\
         <a href=\"javascript:fetch('http://{r}/js')\">詳細</a><div style=\"background:url(http://{r}/css)\">仕様</div>"
    );
    let data = format!(
        "From: Taro <taro@example.com>\r\nTo: <partner@customer.test>\r\nSubject: =?UTF-8?B?{}?=\r\n\
         Message-ID: <html-{}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n\
         --o\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n\
         --a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n新製品のご案内です。\r\n\
         --a\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--a--\r\n\
         --o\r\nContent-Type: text/plain; charset=utf-8; name=plan.txt\r\nContent-Disposition: attachment; filename=plan.txt\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--o--\r\n",
        base64::engine::general_purpose::STANDARD.encode("新製品の案内"),
        free_port(),
        base64::engine::general_purpose::STANDARD.encode(&html),
        base64::engine::general_purpose::STANDARD.encode("来期の極秘計画書です。社外に出さないこと。"),
    );
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["partner@customer.test"], &data).unwrap());
    let base = format!("http://{}", g.web);
    let browser = Browser::start();
    browser.first_sign_in(&base, "admin@example.com", &admin_password);

    // The word is only inside the attachment: the archive finds it.
    let mut found = false;
    for _ in 0..40 {
        browser.open(&format!("{base}/search"));
        browser.type_into("input[name=q]", "極秘計画書");
        browser.click("form.search button[type=submit]");
        if wait_until(Duration::from_millis(500), || browser.text().contains("新製品の案内")) {
            found = true;
            break;
        }
    }
    assert!(found, "found by a word in its attachment: {}\n{}", browser.text(), g.log());
    let hit = browser.text_of(&format!("[data-message-id=\"{id}\"] .highlight"));
    assert!(hit.contains("極秘計画書"), "highlighted: {hit:?}");
    assert!(browser.fits(), "the search fits");
    browser.screenshot("search-ja");

    // Opened: the HTML shows, and nothing in it runs or loads.
    browser.click(&format!("[data-message-id=\"{id}\"] a.subject"));
    assert!(
        wait_until(Duration::from_secs(5), || browser.url().ends_with(&format!("/messages/{id}"))),
        "{}",
        browser.url()
    );
    browser.element("iframe.mail-html");
    // The page's one frame is the mail's.
    let switched = browser.session_call("POST", "/frame", Some(json!({ "id": 0 })));
    assert!(switched.is_null(), "into the frame: {switched}");
    assert!(
        wait_until(Duration::from_secs(5), || browser.text().contains("新製品のご案内です。")
            && browser.text().contains("仕様")),
        "the mail's HTML shows: {}",
        browser.text()
    );
    browser.session_call("POST", "/frame/parent", Some(json!({})));
    // Give anything that would run time to try.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(remote.hits().is_empty(), "the remote host was reached: {:?}", remote.hits());
    browser.script("document.querySelector('iframe.mail-html').scrollIntoView()");
    browser.screenshot("message-html-ja");
    assert!(browser.text().contains("plan.txt"));
    // The attachment's text, its keyword marked.
    assert_eq!(browser.text_of("pre.body mark"), "極秘", "{}", browser.text());
    assert!(browser.text().contains("来期の極秘計画書です。"), "{}", browser.text());
}

/// The embedded default's whole journey: a sender sends, finds the held
/// notice in the sandbox, cancels from its link, and nothing is delivered.
#[test]
fn on_the_embedded_default_a_sender_cancels_from_the_notice_in_the_sandbox() {
    let g = Gateway::start("");
    let out = g.user(&["passwd", "taro@example.com", "--password-stdin"], "a long enough password");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = "From: Taro <taro@example.com>\r\nTo: <partner@customer.test>\r\nSubject: =?UTF-8?B?6KaL56mN5pu4?=\r\n\
                Message-ID: <sb@example.com>\r\n\r\nご確認ください。\r\n";
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["partner@customer.test"], data).unwrap());
    let base = format!("http://{}", g.web);
    let browser = Browser::start();
    browser.sign_in(&base, "taro@example.com", "a long enough password");
    let mut found = false;
    for _ in 0..30 {
        browser.open(&format!("{base}/sandbox"));
        if browser.text().contains("保留中 / Held: 見積書") {
            found = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(found, "the held notice is in the sandbox: {}\n{}", browser.text(), g.log());
    assert!(browser.text().contains("tomare の通知"), "{}", browser.text());
    assert!(browser.fits(), "the sandbox fits");
    browser.screenshot("sandbox-ja");
    browser.click("article.captured a.subject");
    assert!(
        wait_until(Duration::from_secs(5), || browser.text().contains("送信を取り消す / Cancel")),
        "{}",
        browser.text()
    );
    browser.screenshot("sandbox-notice-ja");
    browser.click("pre.body a[href*=\"/a/cancel/\"]");
    assert!(
        wait_until(Duration::from_secs(5), || browser.text().contains("このメールの送信を取り消す")),
        "{}",
        browser.text()
    );
    assert_eq!(g.state(&id), "held", "opening the link changed nothing");
    browser.click("button[data-action=\"cancel\"]");
    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "cancelled"), "{}", g.log());
    // Nothing was delivered to the partner: the sandbox has only notices.
    browser.open(&format!("{base}/sandbox"));
    assert!(!browser.text().contains("partner@customer.test"), "{}", browser.text());
    let captured = std::fs::read_dir(g.data_dir().join("sandbox")).unwrap().count();
    assert!(captured >= 2, "the notice (.eml and .json) is there");
    let mail_to_partner = std::fs::read_dir(g.data_dir().join("sandbox"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .filter(|t| t.contains("\"rcpt_to\":[\"partner@customer.test\"]"))
        .count();
    assert_eq!(mail_to_partner, 0, "nothing delivered to the partner");
}

#[test]
fn a_recipient_downloads_with_a_mailed_code_and_the_sender_revokes_the_link_on_a_phone() {
    let sink = Sink::start();
    let config =
        format!("{}[hold]\nexternal = \"0s\"\n[protect]\nexternal_attachments = \"link\"\n", relay_to(sink.port, ""));
    let g = Gateway::start(&config);
    let out = g.user(&["passwd", "taro@example.com", "--password-stdin"], "a long enough password");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = "単価表\r\n1行目,100\r\n";
    let data = format!(
        "From: Taro <taro@example.com>\r\nTo: <partner@customer.test>\r\nSubject: =?UTF-8?B?{}?=\r\n\
         Message-ID: <dl@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nご確認ください。\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8; name=price.txt\r\nContent-Disposition: attachment; filename=price.txt\r\n\r\n\
         {file}\r\n--b--\r\n",
        base64::engine::general_purpose::STANDARD.encode("単価表の送付")
    );
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["partner@customer.test"], &data).unwrap());
    // The first mail with a file to this domain is held: the sender sends it now.
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "held"), "{}", g.state(&id));
    assert!(g.cli(&["queue", "release", &id]).status.success());
    let mut delivered = None;
    assert!(wait_until(Duration::from_secs(20), || {
        delivered = sink.mail().into_iter().find(|m| m.rcpts == ["partner@customer.test"]);
        delivered.is_some()
    }));
    let parsed = mail_parser::MessageParser::default().parse(&delivered.unwrap().data).unwrap().into_owned();
    let notice = (0..parsed.text_body.len()).filter_map(|i| parsed.body_text(i)).collect::<Vec<_>>().join("\n");
    let base = format!("http://{}", g.web);
    let at = notice.find(&format!("{base}/d/")).expect("a link");
    let url: String = notice[at..].chars().take_while(|c| !c.is_whitespace()).collect();

    // The recipient opens it, asks for a code, types it in and downloads.
    let browser = Browser::start();
    browser.open(&url);
    let page = browser.text();
    assert!(page.contains("taro@example.com からのファイル") && page.contains("price.txt"), "{page}");
    assert!(page.contains("単価表の送付") && page.contains("残り 5 回"), "{page}");
    assert!(browser.fits(), "the page fits a {WIDTH} px screen");
    browser.screenshot("download-ask-ja");
    browser.type_into("form[action$='/code'] input[name=email]", "partner@customer.test");
    browser.click("form[action$='/code'] button[type=submit]");
    assert!(
        wait_until(Duration::from_secs(10), || browser.text().contains("確認コードを送りました")),
        "{}",
        browser.text()
    );
    let mut code = String::new();
    assert!(wait_until(Duration::from_secs(20), || {
        if let Some(m) = sink.notices("code").into_iter().find(|m| m.rcpts == ["partner@customer.test"]) {
            code =
                m.text().lines().filter(|l| l.starts_with("    ")).map(|l| l.trim().to_string()).next_back().unwrap();
        }
        !code.is_empty()
    }));
    // The address asked with is in the code's form already.
    let prefilled = browser.script("return document.querySelector(\"form[action$='/open'] input[name=email]\").value");
    assert_eq!(prefilled.as_str(), Some("partner@customer.test"));
    browser.type_into("form[action$='/open'] input[name=code]", &code);
    browser.click("form[action$='/open'] button[type=submit]");
    assert!(wait_until(Duration::from_secs(10), || browser.text().contains("ダウンロード")), "{}", browser.text());
    let _ = browser.element("a.download[data-file='0']");
    browser.screenshot("download-open-ja");
    // Chromium saves it: the file as it was attached.
    let downloads = tempfile::tempdir().unwrap();
    browser.session_call(
        "POST",
        "/goog/cdp/execute",
        Some(json!({ "cmd": "Browser.setDownloadBehavior",
                     "params": { "behavior": "allow", "downloadPath": downloads.path().to_str().unwrap() } })),
    );
    browser.click("a.download[data-file='0']");
    let saved = downloads.path().join("price.txt");
    assert!(
        wait_until(Duration::from_secs(20), || saved.exists()),
        "downloaded: {:?}",
        std::fs::read_dir(downloads.path()).unwrap().collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read(&saved).unwrap(), file.as_bytes(), "the identical file");

    // The sender sees the download and revokes the link from the message page.
    let sender = Browser::start();
    sender.sign_in(&base, "taro@example.com", "a long enough password");
    sender.open(&format!("{base}/history"));
    assert!(
        wait_until(Duration::from_secs(5), || sender.text_of("[data-link-state]").contains("公開中")),
        "the history shows the link: {}",
        sender.text()
    );
    sender.open(&format!("{base}/messages/{id}"));
    let section = sender.text_of("section.protect-link");
    assert!(
        section.contains("partner@customer.test") && section.contains("price.txt"),
        "the download logged: {section}"
    );
    assert!(section.contains("HeadlessChrome"), "with its user agent: {section}");
    sender.click("button[data-action=revoke]");
    assert!(
        wait_until(Duration::from_secs(10), || sender.text_of("section.protect-link .link-state") == "無効化済み"),
        "{}",
        sender.text()
    );
    assert!(sender.fits());
    sender.screenshot("download-revoked-sender-ja");

    // From then on the link refuses, even with the code already proved.
    browser.open(&url);
    assert!(browser.text().contains("取り消しました"), "{}", browser.text());
    assert!(browser.script("return document.querySelectorAll('a.download').length").as_u64() == Some(0));
    browser.screenshot("download-revoked-ja");
}
