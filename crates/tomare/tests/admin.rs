//! The admin's rule editor through the real server: a check that names the
//! line, a dry run of an archived message through the review crate, and a
//! save that the running server takes at once.

mod common;
use common::*;
use std::time::Duration;

fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

#[test]
fn an_admin_checks_dry_runs_and_saves_rules_the_server_takes_at_once() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}[hold]\nexternal = \"0s\"\ninternal = \"0s\"\n", relay_to(sink.port, "")));
    let password = first_admin_password(&g, "admin@example.com");
    let (cookie, csrf) = web_session(&g, "admin@example.com", &password);
    let headers = [cookie.clone(), "Content-Type: application/x-www-form-urlencoded".to_string()];

    // A message, delivered and archived, for the dry run.
    let id =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("見積の件", "q@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "delivered"), "{}", g.log());
    let page = || g.request("GET", "/rules", std::slice::from_ref(&cookie), "").2;
    assert!(page().contains("data-rule=\"external-hold\""), "the built-in pack is shown");

    // Check: a broken file is refused with its line; nothing is written.
    let broken = "[[rule]]\nname = \"x\"\nwhen = { nonsense = 1 }\nthen = []\n";
    let (code, _, body) =
        g.request("POST", "/rules", &headers, &form(&[("csrf", &csrf), ("rules", broken), ("do", "save")]));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("line 3"), "{body}");
    assert!(!g.data_dir().join("rules.toml").exists());

    // Dry run: the archived message judged by the rules now and edited.
    let rules = "[[rule]]\nname = \"no-quotes\"\ndescription = \"No quotes to customers yet.\"\n\
                 when = { text = { contains = [\"見積\"], in = [\"subject\"] } }\nthen = [{ reject = \"not yet\" }]\n";
    let mut dry = String::new();
    let archived = wait_until(Duration::from_secs(10), || {
        let (code, _, body) = g.request(
            "POST",
            "/rules",
            &headers,
            &form(&[("csrf", &csrf), ("rules", rules), ("message", &id), ("do", "dry_run")]),
        );
        dry = body;
        code == 200
    });
    assert!(archived, "{dry}");
    assert!(dry.contains("data-side=\"before\">deliver<"), "{dry}");
    assert!(dry.contains("data-side=\"after\">reject<") && dry.contains("no-quotes"), "{dry}");
    assert!(!g.data_dir().join("rules.toml").exists(), "a dry run writes nothing");

    // A sender may not.
    let out = g.user(&["passwd", "taro@example.com", "--password-stdin"], "a long enough password");
    assert!(out.status.success());
    let (taro, taro_csrf) = web_session(&g, "taro@example.com", "a long enough password");
    let th = [taro.clone(), "Content-Type: application/x-www-form-urlencoded".to_string()];
    let (code, _, _) =
        g.request("POST", "/rules", &th, &form(&[("csrf", &taro_csrf), ("rules", rules), ("do", "save")]));
    assert_eq!(code, 403);
    assert_eq!(g.request("GET", "/rules", &[taro], "").0, 403);

    // Save: written, reloaded, in effect for the next message.
    let (code, _, body) =
        g.request("POST", "/rules", &headers, &form(&[("csrf", &csrf), ("rules", rules), ("do", "save")]));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("保存しました") || body.contains("Saved"), "{body}");
    assert_eq!(std::fs::read_to_string(g.data_dir().join("rules.toml")).unwrap(), rules);
    assert!(page().contains("data-rule=\"no-quotes\""), "now in effect");
    let next =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("見積再送", "q2@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&next) == "rejected"), "{}", g.log());
    // Audited.
    let (_, _, audit) = g.request("GET", "/audit?q=rules_change", &[cookie], "");
    assert!(audit.contains("rules_change") && audit.contains("no-quotes"), "{audit}");
}
