//! The signed-in UI over real HTTP: sign-in and its throttle, the sender's
//! tray, CSRF on every state change, and who may see and do what (the
//! authorisation matrix, pages and API alike).

mod common;
use common::{PASSWORD, Session, start};
use tomare_model::State;
use tomare_store::{QueueStore, WebStore};

#[tokio::test]
async fn signing_in_sets_a_hardened_cookie_and_failures_are_throttled() {
    let s = start().await;
    // Not signed in: pages go to the sign-in page, the API says 401.
    let r = s.req("GET", "/tray", &[], "").await;
    assert_eq!(r.status, 303);
    assert!(r.head.contains("location: /login?next=/tray"), "{}", r.head);
    assert_eq!(s.req("GET", "/api/v1/messages", &[], "").await.status, 401);
    let page = s.req("GET", "/login", &[], "").await;
    for hook in ["<form id=\"login\"", "name=\"email\"", "name=\"password\"", "ログイン"] {
        assert!(page.body.contains(hook), "{hook}: {}", page.body);
    }
    assert!(page.head.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{}", page.head);

    // Right: a session cookie, HttpOnly and SameSite; `next` is followed
    // only within the site.
    let body = format!("email=Taro%40Example.com&password={}&next=//evil.test/", PASSWORD.replace(' ', "+"));
    let r = s.req("POST", "/login", &[], &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.head.contains("location: /tray\r\n"), "never off-site: {}", r.head);
    let set = r.head.lines().find(|l| l.starts_with("set-cookie: tomare_session=")).unwrap().to_string();
    assert!(set.contains("httponly") && set.contains("samesite=lax") && set.contains("path=/"), "{set}");
    let cookie = r.cookie("tomare_session").unwrap();
    let tray = s.req("GET", "/tray", &[format!("Cookie: tomare_session={cookie}")], "").await;
    assert_eq!(tray.status, 200);
    // A made-up cookie is nobody.
    let r = s.req("GET", "/tray", &["Cookie: tomare_session=forged".into()], "").await;
    assert_eq!(r.status, 303);

    // Wrong five times: the account is locked, even for the right password.
    for _ in 0..5 {
        let r = s.req("POST", "/login", &[], "email=jiro%40example.com&password=guess").await;
        assert_eq!(r.status, 401);
        assert!(r.body.contains("パスワードが違います"), "{}", r.body);
    }
    let right = format!("email=jiro%40example.com&password={}", PASSWORD.replace(' ', "+"));
    let r = s.req("POST", "/login", &[], &right).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.head.contains("retry-after: "), "{}", r.head);
    assert!(r.cookie("tomare_session").is_none());
    // Through the API too, under the same count.
    let json = format!("{{\"email\":\"jiro@example.com\",\"password\":\"{PASSWORD}\"}}");
    let r = s.req("POST", "/api/v1/login", &["Content-Type: application/json".into()], &json).await;
    assert_eq!(r.status, 429);
    // Another account from the same address still signs in.
    s.sign_in("boss").await;

    let log = s.store.audit_log(s.org, "", 100).await.unwrap();
    let count = |action: &str| log.iter().filter(|e| e.action == action).count();
    assert_eq!(count("login_failed"), 5);
    assert_eq!(count("login_locked"), 2);
    assert!(log.iter().any(|e| e.action == "login" && e.actor == "taro@example.com" && e.ip == "127.0.0.1"), "{log:?}");
}

#[tokio::test]
async fn a_sender_cancels_held_mail_from_the_tray_with_its_csrf_token_only() {
    let s = start().await;
    let mine = s.message(State::Held, "見積書 <img src=x onerror=alert(1)>").await;
    let second = s.message(State::Held, "second").await;
    let third = s.message(State::Held, "third").await;
    let others = s.message_from("jiro@example.com", State::Held, "jiro's", &[]).await;
    let taro = s.sign_in("taro").await;
    let tray = s.req("GET", "/tray", &[taro.header()], "").await;
    assert_eq!(tray.status, 200);
    assert!(tray.body.contains(&format!("data-message-id=\"{mine}\"")), "{}", tray.body);
    assert!(!tray.body.contains(&format!("data-message-id=\"{others}\"")), "only one's own mail");
    assert!(tray.body.contains("&#60;img src=x onerror=alert(1)&#62;"), "escaped: {}", tray.body);
    assert!(!tray.body.contains("<img src=x"), "escaped");
    assert!(tray.body.contains("data-until=\""), "a countdown");
    assert!(tray.body.contains("data-action=\"cancel\"") && tray.body.contains("data-action=\"release\""));
    assert!(tray.body.contains("社外"), "the external recipient is marked");

    // Without the token, with another session's, or another's token: refused.
    let jiro = s.sign_in("jiro").await;
    for csrf in ["", "nonsense", jiro.csrf.as_str()] {
        let body = format!("csrf={csrf}&do=cancel%3A{mine}&back=%2Ftray");
        let r = s.req("POST", "/messages/act", &[taro.header()], &body).await;
        assert_eq!(r.status, 403, "csrf {csrf:?}: {}", r.body);
    }
    assert_eq!(s.state(&mine).await, State::Held);

    let body = format!("csrf={}&do=cancel%3A{mine}&back=%2Ftray", taro.csrf);
    let r = s.req("POST", "/messages/act", &[taro.header()], &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(s.state(&mine).await, State::Cancelled);
    let (_, events) = s.store.get(&mine).await.unwrap().unwrap();
    assert!(events.iter().any(|e| e.kind == "cancelled" && e.actor == "web:taro@example.com"), "{events:?}");

    // Several at once: the ticked ones, and only those.
    let body = format!("csrf={}&id={second}&id={third}&do=release&back=%2Ftray", taro.csrf);
    let r = s.req("POST", "/messages/act", &[taro.header()], &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!((s.state(&second).await, s.state(&third).await), (State::Released, State::Released));
    // Ticking another's message does nothing to it.
    let body = format!("csrf={}&id={others}&do=cancel&back=%2Ftray", taro.csrf);
    let r = s.req("POST", "/messages/act", &[taro.header()], &body).await;
    assert_eq!(r.status, 404);
    assert_eq!(s.state(&others).await, State::Held);
    let tray = s.req("GET", "/tray", &[taro.header()], "").await;
    assert!(!tray.body.contains("data-message-id="), "nothing of taro's waits now: {}", tray.body);
    let log = s.store.audit_log(s.org, &mine.to_string(), 10).await.unwrap();
    assert_eq!((log[0].action.as_str(), log[0].via.as_str()), ("cancel", "web"));

    // Signed out: the cookie is nobody's any more.
    let r = s.req("POST", "/logout", &[taro.header()], &format!("csrf={}", taro.csrf)).await;
    assert_eq!(r.status, 303);
    assert_eq!(s.req("GET", "/tray", &[taro.header()], "").await.status, 303);
}

/// Each role × each page and call, another sender's message, another
/// approver's report.
#[tokio::test]
async fn who_may_see_and_do_what() {
    let s = start().await;
    let taros = s.message(State::Held, "taro held").await;
    let taros_approval = s.message(State::AwaitingApproval, "taro approval").await;
    let jiros_approval =
        s.message_from("jiro@example.com", State::AwaitingApproval, "jiro approval", &["other-boss@example.com"]).await;
    let mut sessions = std::collections::HashMap::new();
    for who in ["taro", "jiro", "boss", "other-boss", "root"] {
        sessions.insert(who, s.sign_in(who).await);
    }
    let get = |who: &'static str, path: String| {
        let session: Session = sessions[who].clone();
        let s = &s;
        async move { s.req("GET", &path, &[session.header()], "").await.status }
    };
    let pages = [
        ("/tray", [200, 200, 200, 200, 200]),
        ("/history", [200, 200, 200, 200, 200]),
        ("/account", [200, 200, 200, 200, 200]),
        ("/approvals", [403, 403, 200, 200, 200]),
        ("/queue", [403, 403, 403, 403, 200]),
        ("/dashboard", [403, 403, 403, 403, 200]),
        ("/dashboard.csv", [403, 403, 403, 403, 200]),
        ("/users", [403, 403, 403, 403, 200]),
        ("/audit.csv", [403, 403, 403, 403, 200]),
        ("/rules", [403, 403, 403, 403, 200]),
        ("/search", [200, 200, 200, 200, 200]),
        ("/audit", [403, 403, 403, 403, 200]),
        ("/api/v1/approvals", [403, 403, 200, 200, 200]),
        ("/api/v1/audit", [403, 403, 403, 403, 200]),
    ];
    let who = ["taro", "jiro", "boss", "other-boss", "root"];
    for (path, want) in pages {
        for (w, code) in who.iter().zip(want) {
            assert_eq!(get(w, path.to_string()).await, code, "{w} GET {path}");
        }
    }
    // A message: its sender, their supervisor and an admin see it; for
    // anyone else it does not exist.
    for id in [&taros, &taros_approval] {
        for prefix in ["/messages/", "/api/v1/messages/"] {
            let want = [200, 404, 200, 404, 200];
            for (w, code) in who.iter().zip(want) {
                assert_eq!(get(w, format!("{prefix}{id}")).await, code, "{w} GET {prefix}{id}");
            }
        }
    }
    // Lists show the same.
    let listed = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
    };
    let list = |who: &'static str| {
        let session = sessions[who].clone();
        let s = &s;
        async move { s.req("GET", "/api/v1/messages", &[session.header()], "").await.body }
    };
    assert_eq!(listed(&list("jiro").await), vec![jiros_approval.to_string()]);
    assert_eq!(listed(&list("other-boss").await), vec![jiros_approval.to_string()], "asked, not supervisor of taro");
    assert_eq!(listed(&list("boss").await).len(), 2, "taro's two");
    assert_eq!(listed(&list("root").await).len(), 3);

    // Acting, through the API with each session's CSRF token.
    let act = |who: &'static str, id: String, action: &'static str| {
        let session = sessions[who].clone();
        let s = &s;
        async move {
            let headers =
                [session.header(), format!("X-CSRF-Token: {}", session.csrf), "Content-Type: application/json".into()];
            s.req("POST", &format!("/api/v1/messages/{id}/{action}"), &headers, "{}").await.status
        }
    };
    assert_eq!(act("jiro", taros.to_string(), "cancel").await, 404, "not jiro's to see");
    assert_eq!(act("boss", taros.to_string(), "cancel").await, 403, "seen, but the sender's to cancel");
    assert_eq!(act("taro", taros_approval.to_string(), "approve").await, 403, "never one's own approval");
    assert_eq!(act("other-boss", taros_approval.to_string(), "approve").await, 404, "another approver's report");
    assert_eq!(act("boss", jiros_approval.to_string(), "approve").await, 404);
    // Asked of someone else: the supervisor sees it, but does not decide it.
    let legals = s.message_from("taro@example.com", State::AwaitingApproval, "legal", &["legal@example.com"]).await;
    assert_eq!(get("boss", format!("/api/v1/messages/{legals}")).await, 200);
    assert_eq!(act("boss", legals.to_string(), "approve").await, 403);
    assert_eq!(s.state(&legals).await, State::AwaitingApproval);
    assert_eq!(s.state(&taros_approval).await, State::AwaitingApproval);
    assert_eq!(act("boss", taros_approval.to_string(), "approve").await, 200);
    assert_eq!(s.state(&taros_approval).await, State::Released);
    assert_eq!(act("boss", taros_approval.to_string(), "deny").await, 409, "decided already");
    assert_eq!(act("taro", taros.to_string(), "release").await, 200);
    // An admin acts for an absent approver, and it says so.
    assert_eq!(act("root", jiros_approval.to_string(), "deny").await, 200);
    let (_, events) = s.store.get(&jiros_approval).await.unwrap().unwrap();
    let denied = events.iter().find(|e| e.kind == "denied" || e.kind == "rejected").expect("denied");
    assert_eq!(denied.actor, "api:root@example.com (admin, for other-boss@example.com)", "{events:?}");
    let (_, events) = s.store.get(&taros_approval).await.unwrap().unwrap();
    assert!(events.iter().any(|e| e.actor == "api:boss@example.com"), "{events:?}");
    // Each approver's own decisions, under what waits for them.
    let page = |who: &'static str| {
        let session = sessions[who].clone();
        let s = &s;
        async move { s.req("GET", "/approvals", &[session.header()], "").await.body }
    };
    let boss = page("boss").await;
    assert!(
        boss.contains("あなたの判断の履歴") && boss.contains(&format!("data-message-id=\"{taros_approval}\"")),
        "{boss}"
    );
    let other = page("other-boss").await;
    assert!(!other.contains(&format!("data-message-id=\"{taros_approval}\"")), "{other}");
    let root = page("root").await;
    assert!(root.contains(&format!("data-message-id=\"{jiros_approval}\"")), "the admin's decision: {root}");

    // The API's state changes need the token when signed in by cookie.
    let other = s.message(State::Held, "x").await;
    let taro = &sessions["taro"];
    let r = s.req("POST", &format!("/api/v1/messages/{other}/cancel"), &[taro.header()], "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "csrf");
    assert_eq!(s.state(&other).await, State::Held);
}

#[tokio::test]
async fn an_admin_imports_people_and_exports_the_audit_log() {
    let s = start().await;
    let root = s.sign_in("root").await;
    let page = s.req("GET", "/users", &[root.header()], "").await;
    assert!(page.body.contains("data-person=\"taro@example.com\""), "{}", page.body);
    // A sender may not import.
    let taro = s.sign_in("taro").await;
    let body = format!("csrf={}&csv=email%0Ax%40example.com", taro.csrf);
    assert_eq!(s.req("POST", "/users", &[taro.header()], &body).await.status, 403);
    // A bad file is refused and changes nothing; a good one replaces the import.
    let body = format!("csrf={}&csv=name%0Ax", root.csrf);
    let r = s.req("POST", "/users", &[root.header()], &body).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let csv = "email,name,supervisor%0Ahanako%40example.com,%E8%8A%B1%E5%AD%90,boss%40example.com";
    let r = s.req("POST", "/users", &[root.header()], &format!("csrf={}&csv={csv}", root.csrf)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("data-person=\"hanako@example.com\"") && r.body.contains("花子"), "{}", r.body);
    let dir = tomare_store::PeopleStore::directory(s.store.as_ref(), s.org).await.unwrap();
    assert_eq!(dir.len(), 1);
    assert_eq!(dir[0].supervisor.as_deref(), Some("boss@example.com"));
    // The audit log as CSV: every sign-in and the import, a formula made text.
    let r = s.req("GET", "/audit.csv", &[root.header()], "").await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("content-type: text/csv"), "{}", r.head);
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines[0], "at,actor,via,action,target,detail,ip");
    assert!(lines.iter().any(|l| l.contains(",users_import,directory,1 people,")), "{}", r.body);
    assert!(lines.iter().filter(|l| l.contains(",login,")).count() >= 2, "{}", r.body);
}
