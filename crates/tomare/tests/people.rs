//! People and accounts through the real binary: the first start's admin,
//! `tomare user add|passwd|list|token|import`, and what the running server
//! makes of them (roles and supervisors, sign-in, bearer tokens).

mod common;
use common::*;
use std::time::Duration;

const PASSWORD: &str = "a long enough password";

fn login(g: &Gateway, email: &str, password: &str) -> (u16, serde_json::Value, String) {
    let body = serde_json::json!({ "email": email, "password": password }).to_string();
    let (code, head, body) = g.request("POST", "/api/v1/login", &["Content-Type: application/json".into()], &body);
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: tomare_session=").or_else(|| l.strip_prefix("Set-Cookie: tomare_session="))
        })
        .map(|c| c.split(';').next().unwrap().to_string())
        .unwrap_or_default();
    (code, serde_json::from_str(&body).unwrap_or_default(), cookie)
}

fn me(g: &Gateway, auth: &str) -> (u16, serde_json::Value) {
    let (code, _, body) = g.request("GET", "/api/v1/me", &[auth.to_string()], "");
    (code, serde_json::from_str(&body).unwrap_or_default())
}

#[test]
fn the_first_start_makes_an_admin_and_people_and_accounts_are_one_list() {
    let config = "[[user]]\nemail = \"taro@example.com\"\nsupervisor = \"boss@example.com\"\n";
    let mut g = Gateway::start(config);
    let password = first_admin_password(&g, "admin@example.com");
    let (code, me_json, cookie) = login(&g, "admin@example.com", &password);
    assert_eq!(code, 200, "{me_json}");
    assert_eq!(me_json["role"], "admin");
    // The one-time password opens only the page that replaces it.
    let cookie = format!("Cookie: tomare_session={cookie}");
    let (code, _, body) = g.request("GET", "/api/v1/messages", std::slice::from_ref(&cookie), "");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("password_change_required"), "{body}");
    let (code, head, _) = g.request("GET", "/queue", std::slice::from_ref(&cookie), "");
    assert_eq!(code, 303);
    assert!(head.to_ascii_lowercase().contains("location: /account"), "{head}");
    let (_, csrf) = web_session(&g, "admin@example.com", &password);
    assert!(!csrf.is_empty());
    assert_eq!(login(&g, "admin@example.com", &password).0, 401, "used once");
    assert_eq!(login(&g, "admin@example.com", ADMIN_PASSWORD).0, 200);
    // Restarted: an admin exists, none is made again.
    g.terminate();
    g.spawn();
    assert_eq!(g.log().matches("admin@example.com").filter(|_| true).count(), 1, "{}", g.log());

    // An approver and a sender set one by one, then an import.
    let out =
        g.user(&["add", "boss@example.com", "--role", "approver", "--name", "上司 太郎", "--password-stdin"], PASSWORD);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = g.user(&["add", "hanako@example.com", "--supervisor", "boss@example.com", "--password-stdin"], PASSWORD);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = g.user(&["add", "x@example.com", "--role", "boss", "--password-stdin"], PASSWORD);
    assert!(!out.status.success(), "not a role");
    assert!(String::from_utf8_lossy(&out.stderr).contains("boss"), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = g.dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "email,name,supervisor\njiro@example.com,Jiro,boss@example.com\nhanako@example.com,Hanako,other@example.com\n",
    )
    .unwrap();
    assert!(g.cli(&["user", "import", csv.to_str().unwrap()]).status.success());

    let list = g.cli_json(&["user", "list", "--json"]);
    let person = |email: &str| -> serde_json::Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["email"] == email)
            .cloned()
            .unwrap_or_else(|| panic!("{email}: {list}"))
    };
    let facts = |email: &str| {
        let p = person(email);
        (
            p["role"].as_str().unwrap().to_string(),
            p["source"].as_str().unwrap().to_string(),
            p["can_sign_in"].as_bool().unwrap(),
        )
    };
    assert_eq!(facts("admin@example.com"), ("admin".into(), "cli".into(), true));
    assert_eq!(facts("boss@example.com"), ("approver".into(), "cli".into(), true));
    assert_eq!(person("boss@example.com")["name"], "上司 太郎");
    assert_eq!(facts("hanako@example.com"), ("sender".into(), "cli".into(), true));
    assert_eq!(person("hanako@example.com")["supervisor"], "boss@example.com", "the import leaves her as set");
    assert_eq!(facts("jiro@example.com"), ("sender".into(), "import".into(), false));
    assert_eq!(facts("taro@example.com"), ("sender".into(), "config".into(), false));
    let text = String::from_utf8(g.cli(&["user", "list"]).stdout).unwrap();
    assert!(!text.contains("No users"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("jiro@example.com") && l.contains("import")), "{text}");

    // A bearer token: the running server knows boss supervises three.
    let out = g.user(&["token", "boss@example.com"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let bearer = format!("Authorization: Bearer {token}");
    let mut seen = serde_json::Value::Null;
    let reloaded = wait_until(Duration::from_secs(10), || {
        seen = me(&g, &bearer).1;
        seen["reports"] == serde_json::json!(["hanako@example.com", "jiro@example.com", "taro@example.com"])
    });
    assert!(reloaded, "{seen}");
    assert_eq!(seen["role"], "approver");
    assert!(!g.user(&["token", "nobody@example.com"], "").status.success(), "no account, no token");

    // A new password ends the old sessions; the new one signs in.
    let (code, _, cookie) = login(&g, "boss@example.com", PASSWORD);
    assert_eq!(code, 200);
    let cookie = format!("Cookie: tomare_session={cookie}");
    assert_eq!(me(&g, &cookie).0, 200);
    let out = g.user(&["passwd", "boss@example.com", "--password-stdin"], "another long password");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(me(&g, &cookie).0, 401, "signed out by the new password");
    assert_eq!(login(&g, "boss@example.com", PASSWORD).0, 401);
    assert_eq!(login(&g, "boss@example.com", "another long password").0, 200);
    // A directory entry without a password is given one.
    assert_eq!(login(&g, "jiro@example.com", PASSWORD).0, 401);
    assert!(g.user(&["passwd", "jiro@example.com", "--password-stdin"], PASSWORD).status.success());
    assert_eq!(login(&g, "jiro@example.com", PASSWORD).0, 200);

    // The audit log has the CLI's doings and the sign-ins.
    let (code, _, body) =
        g.request("GET", "/api/v1/audit?q=passwd", &[format!("Authorization: Bearer {}", admin_token(&g))], "");
    assert_eq!(code, 200, "{body}");
    let entries: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        entries["entries"].as_array().unwrap().iter().any(|e| e["via"] == "cli" && e["target"] == "jiro@example.com"),
        "{entries}"
    );
}

fn admin_token(g: &Gateway) -> String {
    let out = g.user(&["token", "admin@example.com"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_person_without_a_password_is_invited_by_mail_and_sets_one_once() {
    let sink = Sink::start();
    let config = format!("{}[[user]]\nemail = \"jiro@example.com\"\n", relay_to(sink.port, ""));
    let g = Gateway::start(&config);
    let password = first_admin_password(&g, "admin@example.com");
    // The admin signs in (form) and invites jiro from the people page.
    let (cookie, csrf) = web_session(&g, "admin@example.com", &password);
    let (_, _, page) = g.request("GET", "/users", std::slice::from_ref(&cookie), "");
    assert!(page.contains("data-action=\"invite\""), "{page}");
    let csrf = csrf.as_str();
    let post = |body: String| {
        g.request(
            "POST",
            "/users/invite",
            &[cookie.clone(), "Content-Type: application/x-www-form-urlencoded".into()],
            &body,
        )
    };
    assert_eq!(post(format!("csrf={csrf}&email=nobody%40example.com")).0, 404);
    assert_eq!(post(format!("csrf={csrf}&email=admin%40example.com")).0, 409, "has a password already");
    assert_eq!(post("email=jiro%40example.com".to_string()).0, 403, "no CSRF token");
    assert_eq!(post(format!("csrf={csrf}&email=jiro%40example.com")).0, 200);

    assert!(
        wait_until(Duration::from_secs(10), || sink.messages().iter().any(|m| m.rcpts == ["jiro@example.com"])),
        "{}",
        g.log()
    );
    let mail = sink.messages().into_iter().find(|m| m.rcpts == ["jiro@example.com"]).unwrap();
    assert!(mail.mail_from.is_empty(), "from tomare itself");
    let text = mail.text();
    let start = text.find(&format!("http://{}/p/", g.web)).expect("the link");
    let url = text[start..].split_whitespace().next().unwrap();
    let path = &url[url.find("/p/").unwrap()..];

    // Opening it changes nothing; a changed one is refused.
    assert_eq!(g.request("GET", path, &[], "").0, 200);
    assert_eq!(login(&g, "jiro@example.com", PASSWORD).0, 401);
    let changed = format!("{path}x");
    let form_headers = ["Content-Type: application/x-www-form-urlencoded".to_string()];
    assert_eq!(g.request("POST", &changed, &form_headers, "new=a+long+enough+password").0, 400);
    assert_eq!(g.request("POST", path, &form_headers, "new=short").0, 400);
    assert_eq!(g.request("POST", path, &form_headers, "new=a+long+enough+password").0, 200);
    assert_eq!(login(&g, "jiro@example.com", PASSWORD).0, 200, "signed in with the password set");
    // Once only.
    assert_eq!(g.request("POST", path, &form_headers, "new=another+long+password").0, 410);
    assert_eq!(login(&g, "jiro@example.com", "another long password").0, 401);
}
