//! End to end: the real binary on loopback, real clients (swaks, Python's
//! smtplib, a raw SMTP client) and real sinks (Postfix's smtp-sink and an
//! in-test server with programmable faults).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const HOLD_NONE: &str = "[hold]\nexternal = \"0s\"\ninternal = \"0s\"\n";

#[test]
fn swaks_to_postfix_smtp_sink() {
    let sink_port = free_port();
    let sink_dir = tempfile::tempdir().unwrap();
    let mut sink = Command::new("smtp-sink")
        .arg("-d")
        .arg(sink_dir.path().join("%M."))
        .args(["-u", "root"])
        .arg(format!("127.0.0.1:{sink_port}"))
        .arg("10")
        .spawn()
        .expect("smtp-sink (Debian package postfix) must be installed");
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink_port, "")));
    let out = Command::new("swaks")
        .args(["--server", &g.smtp, "--from", "taro@example.com", "--to", "partner@customer.test"])
        .args(["--header", "Subject: swaks test 見積書", "--body", "Hello from swaks"])
        .output()
        .expect("swaks must be installed");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    let id = transcript.lines().find(|l| l.contains("queued as")).map(queued_id).expect("queued");

    let arrived = wait_until(Duration::from_secs(10), || {
        files_in(sink_dir.path())
            .iter()
            .any(|f| std::fs::read_to_string(f).unwrap_or_default().contains("Hello from swaks"))
    });
    let _ = sink.kill();
    let _ = sink.wait();
    assert!(arrived, "message did not reach smtp-sink:\n{}", g.log());
    let file = files_in(sink_dir.path()).into_iter().next().unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("X-Mail-Args: <taro@example.com>"), "{text}");
    assert!(text.contains("X-Rcpt-Args: <partner@customer.test>"), "{text}");
    assert!(text.contains("by gw.example.com (tomare)"), "our Received header: {text}");

    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "delivered"));
    let rows = g.cli_json(&["queue", "list", "--json"]);
    let row = rows.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert_eq!(row["from"], "taro@example.com");
    assert_eq!(row["to"], serde_json::json!(["partner@customer.test"]));
    assert!(row["subject"].as_str().unwrap().contains("swaks test"), "{row}");
    assert!(row["received_at"].as_str().unwrap().ends_with('Z'));
    assert!(row["release_at"].is_string());
}

#[test]
fn python_smtplib_message_is_relayed_byte_for_byte() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    // A message as a signing MTA would send it: DKIM-Signature, 8-bit UTF-8
    // body, trailing spaces and a dot-leading line. Only our Received header
    // may be added in front.
    let script = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(':', 1)
msg = ("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1; h=from:to:subject; bh=abc=; b=xyz=\r\n"
       "From: taro@example.com\r\nTo: a@customer.test, b@other.test\r\nSubject: =?UTF-8?B?6KaL56mN5pu4?=\r\n"
       "Message-ID: <py-1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
       "Content-Transfer-Encoding: 8bit\r\n\r\n御見積書を添付します。  \r\n.dot line\r\n\r\n")
with smtplib.SMTP(host, int(port)) as s:
    s.ehlo("python.example.com")
    s.sendmail("taro@example.com", ["a@customer.test", "b@other.test"], msg.encode("utf-8"))
sys.stdout.write(msg)
"#;
    let out = Command::new("python3").args(["-c", script, &g.smtp]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent = out.stdout;
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1), "{}", g.log());
    let got = &sink.messages()[0];
    assert_eq!(got.mail_from, "taro@example.com");
    assert_eq!(got.rcpts, vec!["a@customer.test", "b@other.test"]);
    let text = got.text();
    assert!(text.starts_with("Received: from python.example.com ([127.0.0.1])"), "{text}");
    let after_received = &got.data[text.find("DKIM-Signature").unwrap()..];
    assert_eq!(after_received, &sent[..], "message bytes changed in transit");
}

#[test]
fn held_mail_waits_and_is_released_on_time() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}[hold]\nexternal = \"2s\"\ninternal = \"0s\"\n", relay_to(sink.port, "")));
    let started = std::time::Instant::now();
    let r = smtp_send(&g.smtp, "taro@example.com", &["x@customer.test"], &message("held", "h1@example.com")).unwrap();
    let external = queued_id(&r);
    let r =
        smtp_send(&g.smtp, "taro@example.com", &["jiro@example.com"], &message("internal", "i1@example.com")).unwrap();
    let internal = queued_id(&r);

    // Internal-only mail is not held.
    assert!(wait_until(Duration::from_secs(5), || sink.count_mail() == 1));
    // The sink has it; the delivery record follows a moment later.
    assert!(wait_until(Duration::from_secs(5), || g.state(&internal) == "delivered"), "{}", g.log());
    assert!(wait_until(Duration::from_secs(5), || g.state(&external) == "held"), "{}", g.log());
    let held = g.cli_json(&["queue", "list", "--state", "held", "--json"]);
    assert_eq!(held.as_array().unwrap().len(), 1);
    assert!(wait_until(Duration::from_secs(6), || sink.count_mail() == 2), "{}", g.log());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "released early: {waited:?}");
    assert!(waited < Duration::from_millis(3500), "released late: {waited:?}");
    let kinds: Vec<String> = g.show(&external)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["received", "inspected", "held", "released", "delivering", "delivered"]);
}

#[test]
fn release_now_and_cancel_during_hold() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}[hold]\nexternal = \"1h\"\n", relay_to(sink.port, "")));
    let a = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("A", "a@x")).unwrap());
    let b = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["b@customer.test"], &message("B", "b@x")).unwrap());
    // Inspection and the rules come right after the 250.
    assert!(wait_until(Duration::from_secs(5), || g.state(&a) == "held" && g.state(&b) == "held"), "{}", g.log());
    assert_eq!(g.show(&a)["release_at"].as_str().map(|s| s.len()), Some(20));

    let out = g.cli(&["queue", "release", &a]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = g.cli(&["queue", "cancel", &b]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_until(Duration::from_secs(5), || sink.count_mail() == 1), "{}", g.log());
    assert!(wait_until(Duration::from_secs(5), || g.state(&a) == "delivered"), "{}", g.log());
    assert_eq!(g.state(&b), "cancelled");
    // A cancelled message is never delivered, and cannot be released again.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sink.count_mail(), 1);
    assert!(sink.mail()[0].text().contains("Subject: A"));
    // Taro heard of both holds, and that someone else (the CLI) sent one
    // early and cancelled the other.
    assert_eq!(sink.notices("held").len(), 2);
    assert!(wait_until(Duration::from_secs(5), || sink.notices("cancelled").len() == 1), "{}", g.log());
    assert_eq!(sink.notices("released").len(), 1);
    assert!(sink.notices("cancelled")[0].text().contains("cli"));
    // The audit log has what the admin did at the shell.
    let out = g.user(&["token", "admin@example.com"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (code, _, body) = g.request("GET", "/api/v1/audit?q=cli", &[format!("Authorization: Bearer {token}")], "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let did: Vec<(String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["via"] == "cli")
        .map(|e| (e["action"].as_str().unwrap().to_string(), e["target"].as_str().unwrap().to_string()))
        .collect();
    assert!(did.contains(&("cancel".into(), b.clone())) && did.contains(&("release".into(), a.clone())), "{did:?}");
    let out = g.cli(&["queue", "release", &b]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
    let out = g.cli(&["queue", "cancel", "01AAAAAAAAAAAAAAAAAAAAAAAA"]);
    assert!(!out.status.success());
    let out = g.cli(&["queue", "show", "../../etc/passwd"]);
    assert!(!out.status.success());
}

#[test]
fn senders_outside_the_org_are_refused() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    let out = Command::new("swaks")
        .args(["--server", &g.smtp, "--from", "spam@evil.test", "--to", "victim@customer.test"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("550 5.7.1"));
    let script = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(':', 1)
try:
    with smtplib.SMTP(host, int(port)) as s:
        s.sendmail("ceo@examp1e.com", ["x@customer.test"], b"Subject: x\r\n\r\nx\r\n")
except smtplib.SMTPSenderRefused as e:
    print(e.smtp_code)
"#;
    let out = Command::new("python3").args(["-c", script, &g.smtp]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "550");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.count(), 0);
    assert!(g.cli_json(&["queue", "list", "--json"]).as_array().unwrap().is_empty());
}

#[test]
fn temporary_failures_are_retried_and_delivered_once() {
    let sink = Sink::start();
    sink.plan.lock().unwrap().temp_fail_data = 2;
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    let id =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("retry", "r@x")).unwrap());
    assert!(wait_until(Duration::from_secs(15), || g.state(&id) == "delivered"), "{}", g.log());
    assert_eq!(sink.count(), 1, "delivered exactly once");
    let shown = g.show(&id);
    assert_eq!(shown["attempts"], 3);
    let kinds: Vec<&str> = shown["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "deferred").count(), 2, "{kinds:?}");
    assert_eq!(shown["recipients"][0]["status"], "delivered");
}

#[test]
fn permanent_failure_sends_a_dsn_to_the_sender() {
    let sink = Sink::start();
    sink.plan.lock().unwrap().reject_rcpt = vec!["nobody@customer.test".into()];
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    let id = queued_id(
        &smtp_send(&g.smtp, "taro@example.com", &["ok@customer.test", "nobody@customer.test"], &message("dsn", "d@x"))
            .unwrap(),
    );
    // The good recipient gets the message; the sender gets a DSN for the other.
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 2), "{}", g.log());
    let msgs = sink.messages();
    let original = msgs.iter().find(|m| m.mail_from == "taro@example.com").unwrap();
    assert_eq!(original.rcpts, vec!["ok@customer.test"]);
    let dsn = msgs.iter().find(|m| m.mail_from.is_empty()).expect("DSN with the null sender");
    assert_eq!(dsn.rcpts, vec!["taro@example.com"]);
    let text = dsn.text();
    assert!(text.contains("multipart/report; report-type=delivery-status"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; nobody@customer.test"));
    assert!(text.contains("Status: 5.1.1"));
    assert!(text.contains("Message-ID: <d@x>"), "original headers returned");
    assert_eq!(g.state(&id), "failed");
    let rcpts = g.show(&id)["recipients"].clone();
    assert_eq!(rcpts[0]["status"], "delivered");
    assert_eq!(rcpts[1]["status"], "failed");
    assert!(rcpts[1]["reply"].as_str().unwrap().contains("550 5.1.1"));
}

#[test]
fn no_bounce_for_a_bounce() {
    // The DSN itself cannot be delivered: it must fail quietly.
    let sink = Sink::start();
    sink.plan.lock().unwrap().reject_rcpt = vec!["nobody@customer.test".into(), "taro@example.com".into()];
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    let id =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["nobody@customer.test"], &message("x", "x@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "failed"));
    let dsn_failed = || {
        let rows = g.cli_json(&["queue", "list", "--json"]);
        rows.as_array().unwrap().iter().any(|r| r["dsn"] == true && r["state"] == "failed")
    };
    assert!(wait_until(Duration::from_secs(10), dsn_failed), "{}", g.log());
    std::thread::sleep(Duration::from_secs(1));
    let rows = g.cli_json(&["queue", "list", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 2, "the failed DSN made no further DSN: {rows}");
    assert_eq!(sink.count(), 0);
}

#[test]
fn expired_mail_fails_with_a_dsn() {
    // The relay is down; after max_lifetime the sender is told.
    let dead_port = free_port();
    let dsn_sink = Sink::start();
    let g = Gateway::start(&format!(
        "{}{HOLD_NONE}",
        relay_to(dead_port, "max_lifetime = \"2s\"\nconnect_timeout = \"1s\"")
    ));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("exp", "e@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "failed"), "{}", g.log());
    let shown = g.show(&id);
    assert!(shown["recipients"][0]["reply"].as_str().unwrap().starts_with("gave up after 2s"), "{shown}");
    // The DSN is queued just after the state changes.
    let dsn_queued = || {
        let rows = g.cli_json(&["queue", "list", "--json"]);
        rows.as_array().unwrap().iter().any(|r| r["dsn"] == true && r["to"][0] == "taro@example.com")
    };
    assert!(wait_until(Duration::from_secs(10), dsn_queued), "{}", g.log());
    drop(dsn_sink);
}

#[test]
fn sink_down_for_a_while_then_delivered() {
    let port = free_port();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(port, "connect_timeout = \"1s\"")));
    let id =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("down", "dn@x")).unwrap());
    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "deferred"), "{}", g.log());
    let reply = g.show(&id)["recipients"][0]["reply"].as_str().unwrap().to_string();
    assert!(reply.contains(&port.to_string()), "reason names the relay: {reply}");
    let sink = Sink::start_on(port);
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1), "{}", g.log());
    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "delivered"));
}

#[test]
fn connections_to_the_relay_are_reused() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "concurrency = 1")));
    for i in 0..5 {
        smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("reuse", &format!("{i}@x"))).unwrap();
    }
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 5), "{}", g.log());
    assert_eq!(*sink.connections.lock().unwrap(), 1, "one connection for five messages");
}

#[test]
fn sandbox_captures_and_nothing_leaves() {
    let g = Gateway::start(HOLD_NONE);
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("sb", "sb@x")).unwrap());
    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "delivered"));
    let copy = g.data_dir().join("sandbox").join(format!("{id}.eml"));
    let text = std::fs::read_to_string(&copy).unwrap();
    assert!(text.contains("Message-ID: <sb@x>"));
    assert_eq!(g.show(&id)["sandbox_copy"], copy.display().to_string());
    let envelope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(copy.with_extension("json")).unwrap()).unwrap();
    assert_eq!(envelope["rcpt_to"][0], "a@customer.test");
}

#[test]
fn health_and_metrics() {
    let g = Gateway::start(HOLD_NONE);
    let (code, body) = g.http_get("/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"ok\""));
    smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("m", "m@x")).unwrap();
    let _ = smtp_send(&g.smtp, "x@evil.test", &["a@customer.test"], &message("m", "m2@x"));
    assert!(wait_until(Duration::from_secs(5), || g
        .http_get("/metrics")
        .1
        .contains("tomare_messages_delivered_total 1")));
    let (_, m) = g.http_get("/metrics");
    for needle in [
        "tomare_messages_accepted_total 1",
        "tomare_messages_rejected_total 1",
        "tomare_queue_depth{state=\"delivered\"} 1",
        "tomare_accept_latency_seconds_count 1",
        "tomare_messages_held_total 0",
        "tomare_messages_deferred_total 0",
        "tomare_messages_failed_total 0",
    ] {
        assert!(m.contains(needle), "{needle} missing:\n{m}");
    }
}

#[test]
fn sigterm_lets_an_open_transaction_finish() {
    let sink = Sink::start();
    let mut g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(&g.smtp).unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut read = |reader: &mut BufReader<std::net::TcpStream>| {
        let mut all = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    };
    read(&mut reader);
    out.write_all(b"EHLO a\r\nMAIL FROM:<taro@example.com>\r\nRCPT TO:<a@customer.test>\r\nDATA\r\n").unwrap();
    for _ in 0..4 {
        read(&mut reader);
    }
    out.write_all(b"Subject: in flight\r\n\r\npart one\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = g.pid();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    out.write_all(b"part two\r\n.\r\n").unwrap();
    let r = read(&mut reader);
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let r = read(&mut reader);
    assert!(r.starts_with("421"), "then closed: {r}");
    let status = g.terminate_wait();
    assert!(status.success(), "{}", g.log());
    // Delivered before the exit, or else right after the next start: once.
    g.spawn();
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1), "{}", g.log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.count(), 1);
}

#[test]
fn config_example_and_check() {
    let out = tomare().args(["config", "example"]).output().unwrap();
    let example = String::from_utf8(out.stdout).unwrap();
    for key in ["allowed_networks", "max_message_size", "[smtp.tls]", "retry", "max_lifetime", "internal_domains"] {
        assert!(example.contains(key), "{key}");
    }
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &example).unwrap();
    let out = tomare().args(["config", "check"]).arg(&good).output().unwrap();
    assert!(out.status.success());
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[smtp]\nlisten = \"0.0.0.0:25\"\nmax_mesage_size = \"1MB\"\n[delivery]\nmode = \"fax\"\n")
        .unwrap();
    let out = tomare().args(["config", "check"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("max_mesage_size"), "{err}");
    assert!(err.contains("line 5") && err.contains("fax"), "{err}");
    let out = tomare().args(["serve", "--config"]).arg(&bad).output().unwrap();
    assert!(!out.status.success(), "serve refuses a bad config");
}

#[test]
fn utf8_recipient_fails_permanently_where_smtputf8_is_missing() {
    // The in-test sink does not offer SMTPUTF8.
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    let id = queued_id(
        &smtp_send(&g.smtp, "taro@example.com", &["山田@例え.jp", "ok@customer.test"], &message("u8", "u8@x")).unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "failed"), "{}", g.log());
    let r = g.show(&id)["recipients"].clone();
    assert_eq!(r[0]["status"], "failed");
    assert!(r[0]["reply"].as_str().unwrap().contains("5.6.7"));
    // All recipients share one transaction, so none was sent; the ASCII one
    // fails with it and the sender learns of both in the DSN.
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1));
    assert!(sink.messages()[0].mail_from.is_empty(), "only the DSN arrived");
}

#[test]
fn holds_survive_a_restart() {
    let sink = Sink::start();
    let mut g = Gateway::start(&format!("{}[hold]\nexternal = \"2s\"\n", relay_to(sink.port, "")));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("rs", "rs@x")).unwrap());
    g.kill();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.count(), 0);
    g.spawn();
    // Overdue on start: released at once (a second, plus slack for a busy machine).
    assert!(wait_until(Duration::from_millis(2500), || sink.count() == 1), "{}", g.log());
    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "delivered"));
}

#[test]
fn json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("t.toml");
    let smtp = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &config,
        format!(
            "[smtp]\nlisten = \"{smtp}\"\n[web]\nlisten = \"127.0.0.1:{}\"\n[storage]\ndata_dir = \"{}\"\n[hold]\nexternal = \"0s\"\n",
            free_port(),
            dir.path().join("d").display()
        ),
    )
    .unwrap();
    let child = tomare()
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || { std::net::TcpStream::connect(&smtp).is_ok() }));
    smtp_send(&smtp, "taro@example.com", &["a@customer.test"], &message("j", "j@x")).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "delivery attempt" && l["level"] == "INFO"), "{stderr}");
}

#[test]
fn serve_inspects_every_message_and_keeps_the_facts() {
    let g = Gateway::start(HOLD_NONE);
    // A zip (made by Python's zipfile, a real producer) holding a file
    // whose name is CP932-encoded and whose text carries a marker.
    let script = r#"
import smtplib, sys, io, zipfile
from email.message import EmailMessage
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("XXXXXX.txt", "この資料は社外秘です。担当 090-1234-5678".encode("shift_jis"))
# As Windows writes it: the name in CP932, no UTF-8 flag.
data = buf.getvalue().replace(b"XXXXXX.txt", "見積書.txt".encode("cp932"))
msg = EmailMessage()
msg["From"] = "taro@example.com"; msg["To"] = "partner@customer.test"; msg["Subject"] = "資料送付"
msg.set_content("ご確認ください。")
msg.add_attachment(data, maintype="application", subtype="zip", filename="資料.zip")
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port)) as s:
    s.send_message(msg)
"#;
    let out = Command::new("python3").args(["-c", script, &g.smtp]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = g.cli_json(&["queue", "list", "--json"]);
    let row = rows.as_array().unwrap().iter().find(|r| r["subject"] == "資料送付").expect("the message");
    let id = row["id"].as_str().unwrap().to_string();
    // 社外秘 going outside: the built-in pack wants a supervisor's approval.
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "awaiting_approval"), "{}", g.log());
    let shown = g.show(&id);
    let fired: Vec<&str> =
        shown["verdict"]["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(fired.contains(&"confidential-to-outside"), "{fired:?}");
    let out = g.cli(&["queue", "approve", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "delivered"), "{}", g.log());
    let facts = g.show(&id)["facts"].clone();
    assert_eq!(facts["subject"], "資料送付");
    assert_eq!(facts["complete"], true, "{facts}");
    let paths: Vec<&str> =
        facts["attachments"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["資料.zip", "資料.zip/見積書.txt"]);
    let detections: Vec<(String, String)> = facts["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["detector"].as_str().unwrap().to_string(), d["location"].as_str().unwrap().to_string()))
        .collect();
    assert!(detections.contains(&("keyword".into(), "資料.zip/見積書.txt".into())), "{detections:?}");
    assert!(detections.contains(&("phone".into(), "資料.zip/見積書.txt".into())), "{detections:?}");
    // Each message in the queue (the sender's notices too) inspected once.
    let all = g.cli_json(&["queue", "list", "--json"]).as_array().unwrap().len();
    let (_, metrics) = g.http_get("/metrics");
    assert!(metrics.contains(&format!("tomare_messages_inspected_total {all}\n")), "{all}: {metrics}");
}

#[test]
fn rules_reject_and_deny_tell_the_sender_why() {
    let sink = Sink::start();
    let rules = r#"
[[rule]]
name = "no-rivals"
description = "Mail to competitors is not allowed."
when = { recipient_domain = ["rival.test"] }
then = [{ reject = "Mail to rival.test is not allowed." }]
"#;
    let g = Gateway::start(&format!("{}{HOLD_NONE}{rules}", relay_to(sink.port, "")));
    let rejected =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["ceo@rival.test"], &message("pitch", "r@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&rejected) == "rejected"), "{}", g.log());
    // The sender is told, by a notice that went through the queue itself.
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1), "{}", g.log());
    let notice = &sink.notices("rejected")[0];
    assert!(notice.mail_from.is_empty());
    assert_eq!(notice.rcpts, ["taro@example.com"]);
    assert!(notice.text().contains("Mail to rival.test is not allowed."), "{}", notice.text());

    let held = queued_id(
        &smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("【極秘】計画", "s@x")).unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || g.state(&held) == "awaiting_approval"), "{}", g.log());
    let out = g.cli(&["queue", "deny", &held, "--reason", "Not to this customer."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(g.state(&held), "rejected");
    assert!(wait_until(Duration::from_secs(10), || sink.notices("denied").len() == 1), "{}", g.log());
    assert!(sink.notices("denied")[0].text().contains("Not to this customer."));
    assert!(!g.cli(&["queue", "approve", &held]).status.success(), "a denied message stays denied");
}

#[test]
fn approval_deadline_rejects_by_default() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{}", relay_to(sink.port, ""), boss_approves_outside_mail("3s")));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("x", "d@x")).unwrap());
    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "awaiting_approval"), "{}", g.log());
    assert_eq!(g.show(&id)["approval"]["approver"], "boss@example.com");
    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "rejected"), "{}", g.log());
    // The approver was asked; the sender is told it was not sent.
    // (No decision in time is a denial.)
    assert!(wait_until(Duration::from_secs(10), || sink.notices("denied").len() == 1), "{}", g.log());
    let request = &sink.notices("approval-request")[0];
    assert_eq!(request.rcpts, ["boss@example.com"]);
    assert!(request.text().contains(&format!("tomare queue approve {id}")), "{}", request.text());
    let told = &sink.notices("denied")[0];
    assert_eq!(told.rcpts, ["taro@example.com"]);
    // Half way, the approver was reminded, once, with the links again.
    let reminded = sink.notices("reminder");
    assert_eq!(reminded.len(), 1, "{}", g.log());
    assert_eq!(reminded[0].rcpts, ["boss@example.com"]);
    assert!(reminded[0].text().contains("/a/approve/"), "{}", reminded[0].text());
    assert!(told.text().contains("no decision before the deadline"), "{}", told.text());
}

/// Only the rule below: mail to outside waits for boss@example.com, for
/// `timeout`.
fn boss_approves_outside_mail(timeout: &str) -> String {
    format!(
        "[policy]\nbuiltin = false\n\n[[rule]]\nname = \"needs-ok\"\nwhen = {{ external_recipients = {{ min = 1 }} }}\n\
         then = [{{ require_approval = {{ approver = \"boss@example.com\", timeout = \"{timeout}\" }} }}]\n"
    )
}

/// The approver's notice carries Approve and Deny links to the web
/// listener; opening one changes nothing, its button approves, and the
/// event log names the approver and the link.
#[test]
fn an_approver_approves_from_the_link_in_the_notice() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{}", relay_to(sink.port, ""), boss_approves_outside_mail("10m")));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("x", "d@x")).unwrap());
    assert!(
        wait_until(Duration::from_secs(10), || sink.messages().iter().any(|m| m.rcpts == ["boss@example.com"])),
        "{}",
        g.log()
    );
    let request = sink.messages().into_iter().find(|m| m.rcpts == ["boss@example.com"]).unwrap().text();
    let (approve, deny) = (link_in(&request, &g.web, "approve"), link_in(&request, &g.web, "deny"));
    assert_ne!(approve, deny);
    let (code, page) = g.http("GET", &approve);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("data-action=\"approve\""), "{page}");
    assert_eq!(g.state(&id), "awaiting_approval", "a GET changes nothing");
    let (code, page) = g.http("POST", &approve);
    assert_eq!(code, 200, "{page}");
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "delivered"), "{}", g.log());
    let events = g.show(&id)["events"].clone();
    assert!(events.as_array().unwrap().iter().any(|e| e["actor"] == "link:boss@example.com"), "{events}");
    // The other link of the same notice can no longer refuse it.
    let (code, _) = g.http("POST", &deny);
    assert_eq!(code, 409);
    assert_eq!(g.state(&id), "delivered");
}

#[test]
fn notify_tells_the_sender_and_the_admins_that_mail_is_held() {
    let sink = Sink::start();
    let rules = r#"
[[rule]]
name = "night-mail"
description = "Held overnight."
when = { external_recipients = { min = 1 } }
then = [{ hold = "1h" }, { notify = "sender" }, { notify = "admin" }]
"#;
    let g = Gateway::start(&format!(
        "{}[org]\ninternal_domains = [\"example.com\"]\nadmins = [\"admin@example.com\"]\n{rules}",
        relay_to(sink.port, "")
    ));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("夜間", "n@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 2), "{}", g.log());
    assert_eq!(g.state(&id), "held");
    let mut to: Vec<String> = sink.messages().iter().flat_map(|m| m.rcpts.clone()).collect();
    to.sort();
    assert_eq!(to, ["admin@example.com", "taro@example.com"]);
    let text = sink.messages()[0].text();
    assert!(text.contains("Held overnight.") && text.contains("held before sending"), "{text}");
}

#[test]
fn mass_mail_is_delivered_with_recipients_out_of_sight_and_supervisor_in_bcc() {
    let sink = Sink::start();
    let extra = r#"
[[user]]
email = "taro@example.com"
name = "Taro"
supervisor = "boss@example.com"
groups = ["sales"]

[[rule]]
name = "sales-copies-supervisor"
when = { all = [ { sender_group = ["sales"] }, { external_recipients = { min = 1 } } ] }
then = [ { add_recipient = "supervisor" }, { add_header = { name = "X-Tomare-Rules", value = "checked" } } ]
"#;
    let g = Gateway::start(&format!("{}{HOLD_NONE}{extra}", relay_to(sink.port, "")));
    let rcpts = ["a@customer.test", "b@partner.test", "c@other.test", "jiro@example.com"];
    let body = "From: Taro <taro@example.com>\r\nTo: a@customer.test, b@partner.test, jiro@example.com\r\n\
                Cc: c@other.test\r\nSubject: seminar\r\nMessage-ID: <mass@x>\r\n\r\nYou are invited.\r\n";
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &rcpts, body).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "delivered"), "{}", g.log());
    let got = &sink.messages()[0];
    let mut delivered_to = got.rcpts.clone();
    delivered_to.sort();
    assert_eq!(
        delivered_to,
        ["a@customer.test", "b@partner.test", "boss@example.com", "c@other.test", "jiro@example.com"],
        "every recipient, and the supervisor, still gets it"
    );
    let text = got.text();
    assert_eq!(got.header("To").as_deref(), Some("jiro@example.com"), "{text}");
    assert!(got.header("Cc").is_none(), "{text}");
    assert!(!text.contains("customer.test") && !text.contains("partner.test") && !text.contains("boss@"), "{text}");
    assert_eq!(got.header("X-Tomare-Rules").as_deref(), Some("checked"));
    assert!(text.contains("\r\n\r\nYou are invited.\r\n"), "body intact: {text}");
    let kinds: Vec<String> =
        g.show(&id)["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect();
    assert!(kinds.contains(&"transformed".to_string()), "{kinds:?}");
    let verdict = g.show(&id)["verdict"].clone();
    assert_eq!(verdict["transforms"], serde_json::json!(["convert_to_bcc", "add_recipient", "add_header"]));
}

#[test]
fn rules_reload_keeps_the_last_good_rules_and_reads_the_imported_directory() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("rules.toml");
    let block = "[[rule]]\nname = \"block\"\nwhen = { recipient_domain = [\"blocked.test\"] }\nthen = [{ reject = \"blocked\" }]\n";
    std::fs::write(&rules_file, block).unwrap();
    let g = Gateway::start(&format!(
        "{}{HOLD_NONE}[policy]\nrules_file = \"{}\"\n",
        relay_to(sink.port, ""),
        rules_file.display()
    ));
    let send =
        |to: &str, mid: &str| queued_id(&smtp_send(&g.smtp, "taro@example.com", &[to], &message("r", mid)).unwrap());
    let first = send("a@blocked.test", "r1@x");
    assert!(wait_until(Duration::from_secs(10), || g.state(&first) == "rejected"), "{}", g.log());

    // A broken file is refused by the command, with its line, and a
    // SIGHUP with it leaves the server on the old rules.
    std::fs::write(&rules_file, "[[rule]]\nname = \"oops\"\nwhen = { no_such_predicate = true }\nthen = []\n").unwrap();
    let out = g.cli(&["rules", "reload"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"), "{}", String::from_utf8_lossy(&out.stderr));
    Command::new("kill").args(["-HUP", &g.pid().to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let second = send("b@blocked.test", "r2@x");
    assert!(wait_until(Duration::from_secs(10), || g.state(&second) == "rejected"), "{}", g.log());

    // New rules and an imported directory, taken by `rules reload`.
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "email,name,supervisor,groups\ntaro@example.com,Taro,boss@example.com,sales\n").unwrap();
    assert!(g.cli(&["users", "import", csv.to_str().unwrap()]).status.success());
    std::fs::write(
        &rules_file,
        "[[rule]]\nname = \"copy-boss\"\nwhen = { sender_group = [\"sales\"] }\nthen = [{ add_recipient = \"supervisor\" }]\n",
    )
    .unwrap();
    let out = g.cli(&["rules", "reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_until(Duration::from_secs(10), || g.log().contains("Rules reloaded")), "{}", g.log());
    let third = send("c@blocked.test", "r3@x");
    assert!(wait_until(Duration::from_secs(10), || g.state(&third) == "delivered"), "{}", g.log());
    let got = sink.messages().into_iter().find(|m| m.text().contains("r3@x")).expect("delivered");
    assert!(got.rcpts.contains(&"boss@example.com".to_string()), "{:?}", got.rcpts);
}

#[test]
fn check_dry_run_prints_the_verdict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("m.eml");
    std::fs::write(
        &eml,
        "From: taro@example.com\r\nTo: a@customer.test, b@partner.test, c@other.test\r\nSubject: 社外秘の件\r\n\r\nbody\r\n",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[storage]\ndata_dir = \"{}\"\n", dir.path().join("data").display())).unwrap();
    let out = tomare().args(["check", "--json", "--config"]).arg(&config).arg(&eml).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "approval");
    assert_eq!(v["hold_seconds"], 300);
    let names: Vec<&str> = v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["visible-recipients", "confidential-to-outside", "external-hold"]);
    assert_eq!(v["transforms"], serde_json::json!(["convert_to_bcc"]));
    // With --to only an internal recipient: nothing fires but internal-only.
    let out = tomare()
        .args(["check", "--json", "--to", "jiro@example.com", "--config"])
        .arg(&config)
        .arg(&eml)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "deliver", "{v}");
    assert!(!dir.path().join("data").exists(), "a dry run creates nothing");
}

#[test]
fn a_group_approver_asks_every_member() {
    let sink = Sink::start();
    let extra = r#"
[policy]
builtin = false

[[user]]
email = "hanako@example.com"
groups = ["legal"]

[[user]]
email = "jiro@example.com"
groups = ["legal", "sales"]

[[user]]
email = "saburo@example.com"
groups = ["sales"]

[[rule]]
name = "legal-check"
when = { external_recipients = { min = 1 } }
then = [{ require_approval = { approver = "group:legal", timeout = "1h" } }]
"#;
    let g = Gateway::start(&format!("{}{extra}", relay_to(sink.port, "")));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("c", "g@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || sink.notices("approval-request").len() == 2), "{}", g.log());
    let mut asked: Vec<String> = sink.notices("approval-request").iter().flat_map(|m| m.rcpts.clone()).collect();
    asked.sort();
    assert_eq!(asked, ["hanako@example.com", "jiro@example.com"]);
    assert_eq!(g.state(&id), "awaiting_approval");
    assert_eq!(g.show(&id)["approval"]["approver"], "group:legal");
}

#[test]
fn an_approval_without_a_decision_escalates_to_the_deputy() {
    let sink = Sink::start();
    let rules = r#"
[policy]
builtin = false

[[rule]]
name = "needs-ok"
when = { external_recipients = { min = 1 } }
then = [{ require_approval = { approver = "boss@example.com", timeout = "1s", on_timeout = "escalate", deputy = "deputy@example.com" } }]
"#;
    let g = Gateway::start(&format!("{}{rules}", relay_to(sink.port, "")));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("e", "e@x")).unwrap());
    // Asked first: the approver; a second later: the deputy.
    assert!(wait_until(Duration::from_secs(10), || sink.notices("approval-request").len() == 2), "{}", g.log());
    let asked: Vec<String> = sink.notices("approval-request").iter().flat_map(|m| m.rcpts.clone()).collect();
    assert_eq!(asked, ["boss@example.com", "deputy@example.com"]);
    // The sender was told it waits, with a link to cancel it.
    let waiting = sink.notices("awaiting-approval");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].rcpts, ["taro@example.com"]);
    assert!(waiting[0].text().contains("/a/cancel/"), "{}", waiting[0].text());
    assert_eq!(g.state(&id), "awaiting_approval");
    assert_eq!(g.show(&id)["approval"]["approver"], "deputy@example.com");
    // The deputy's deadline passes too: rejected, the sender told.
    assert!(wait_until(Duration::from_secs(5), || g.state(&id) == "rejected"), "{}", g.log());
    assert!(wait_until(Duration::from_secs(10), || sink.notices("denied").len() == 1), "{}", g.log());
    // Asked twice (reminded perhaps, the deadlines being a second), told it
    // waits, told it was not sent; nothing else.
    let reminders = sink.notices("reminder").len();
    assert_eq!(sink.count(), 4 + reminders, "{}", g.log());
}

#[test]
fn every_accident_through_tomare_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n[org]\ninternal_domains = [\"example.com\"]\n",
            dir.path().join("d").display()
        ),
    )
    .unwrap();
    let att = |name: &str, content: &str| {
        format!(
            "From: taro@example.com\r\nTo: a@customer.test\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n\
             --x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nご確認ください。\r\n--x\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{content}\r\n--x--\r\n"
        )
    };
    let plain = |to: &str, subject: &str, body: &str| {
        format!("From: taro@example.com\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}\r\n")
    };
    let list: String = (0..12).map(|i| format!("m{i}@customer.test\r\n")).collect();
    // (fixture, rule that must fire, or None for a trap where only the plain external hold may fire)
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("mass", plain("a@customer.test, b@partner.test, c@other.test", "ご案内", "x"), Some("visible-recipients")),
        ("bcc-newline", "From: taro@example.com\r\nTo: a@customer.test\r\nBcc: boss@example.com\r\nceo@customer.test\r\nSubject: x\r\n\r\nb\r\n".into(), Some("malformed-recipient-headers")),
        ("body-list", plain("a@customer.test", "名簿", &list), Some("addresses-in-body")),
        ("confidential", plain("a@customer.test", "【社外秘】計画", "x"), Some("confidential-to-outside")),
        ("my-number", att("名簿.csv", "氏名,番号\n山田,123456789018"), Some("personal-data-to-outside")),
        ("unprotected", att("memo.txt", "関係者外秘"), Some("unprotected-confidential-attachment")),
        ("uninspectable", "From: taro@example.com\r\nTo: a@customer.test\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.7z\"\r\nContent-Transfer-Encoding: base64\r\n\r\nN3q8ryccAAQ=\r\n--x--\r\n".into(), Some("inspection-incomplete")),
        ("lookalike", plain("a@exarnple.com", "x", "y"), Some("lookalike-domain")),
        ("first-contact", att("a.txt", "hello"), Some("first-contact-with-attachments")),
        ("trap-split-words", plain("a@customer.test", "ご連絡", "社外の方へ。外秘ではありません。"), None),
        ("trap-invoice-number", att("請求書.txt", "請求書番号 123456789"), None),
    ];
    for (name, raw, expect) in cases {
        let eml = dir.path().join(format!("{name}.eml"));
        std::fs::write(&eml, raw).unwrap();
        let out = tomare().args(["check", "--json", "--config"]).arg(&config).arg(&eml).output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let fired: Vec<&str> = v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        match expect {
            Some(rule) => assert!(fired.contains(&rule), "{name}: {fired:?}"),
            None => {
                let extra: Vec<&&str> =
                    fired.iter().filter(|r| !["external-hold", "first-contact-with-attachments"].contains(r)).collect();
                assert!(extra.is_empty(), "{name}: a trap fired {extra:?}");
            }
        }
    }
}

#[test]
fn commands_other_than_serve_never_create_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nowhere");
    let config = dir.path().join("tomare.toml");
    std::fs::write(&config, format!("[storage]\ndata_dir = \"{}\"\n", data.display())).unwrap();
    for args in [&["queue", "list"][..], &["user", "list"], &["archive", "search", "x"]] {
        let out = tomare().args(args).arg("--config").arg(&config).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No tomare data directory at") && err.contains("nowhere"), "{args:?}: {err}");
        assert!(err.contains("--config"), "says how to point at another: {err}");
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    // TOMARE_CONFIG points at a config too.
    let out = tomare().args(["queue", "list"]).env("TOMARE_CONFIG", &config).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
    // Importing an old mailbox may come before the first serve: it starts
    // the data directory (0700) — but not for a path that is not there.
    let out = tomare().args(["archive", "import", "/no/such/mbox"]).arg("--config").arg(&config).output().unwrap();
    assert!(!out.status.success() && !data.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    let mbox = dir.path().join("old.mbox");
    std::fs::write(
        &mbox,
        "From a@example.com Mon Jan  1 00:00:00 2024\nFrom: a@example.com\nTo: b@customer.test\nSubject: old\n\nbody\n",
    )
    .unwrap();
    let out = tomare().args(["archive", "import"]).arg(&mbox).arg("--config").arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Imported 1 messages"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    let out =
        tomare().args(["archive", "search", "--json", "subject:old"]).arg("--config").arg(&config).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("old"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    // More than a pipe holds, so the writer meets the closed end.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.txt");
    std::fs::write(&file, "見積書の本文です。\n".repeat(100_000)).unwrap();
    let mut child = tomare()
        .arg("inspect")
        .arg(&file)
        .arg("--text")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    assert_ne!(out.status.code(), Some(101), "no panic exit");
}

#[test]
fn an_imported_directory_reaches_the_running_server_without_a_reload() {
    let sink = Sink::start();
    let g = Gateway::start(&format!(
        "{}{HOLD_NONE}[[rule]]\nname = \"copy-boss\"\nwhen = {{ sender_group = [\"sales\"] }}\n\
         then = [{{ add_recipient = \"supervisor\" }}]\n",
        relay_to(sink.port, "")
    ));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "email,name,supervisor,groups\ntaro@example.com,Taro,boss@example.com,sales\n").unwrap();
    let out = g.cli(&["users", "import", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("now uses it"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(wait_until(Duration::from_secs(10), || g.log().contains("Rules reloaded")), "{}", g.log());
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("d", "d@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "delivered"), "{}", g.log());
    let got = sink.messages().into_iter().find(|m| m.text().contains("d@x")).expect("delivered");
    assert!(got.rcpts.contains(&"boss@example.com".to_string()), "{:?}", got.rcpts);
}

#[test]
fn config_check_refuses_the_rules_serve_would_refuse_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for (rule, why) in [
        ("when = { text = { matches = \"(unclosed\" } }\nthen = [{ hold = \"1m\" }]\n", "pattern"),
        ("when = { all_internal = true }\nthen = [{ notify = \"everyone\" }]\n", "notify"),
        ("when = { all_internal = true }\nthen = [{ require_approval = { approver = \"boss\" } }]\n", "approver"),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, format!("[hold]\nexternal = \"1m\"\n\n[[rule]]\nname = \"oops\"\n{rule}")).unwrap();
        let check = tomare().args(["config", "check"]).arg(&config).output().unwrap();
        let err = String::from_utf8_lossy(&check.stderr);
        assert!(!check.status.success(), "{why}: config check said OK");
        assert!(err.contains("line 5") && err.contains(why), "{why}: {err}");
        let serve = tomare().args(["serve", "--config"]).arg(&config).output().unwrap();
        assert!(!serve.status.success());
        assert!(String::from_utf8_lossy(&serve.stderr).contains("line 5"), "serve names the line too");
    }
}

#[test]
fn db_status_and_migrate_on_a_database_made_before_migrations_were_recorded() {
    // The queue database as the release before left it: the first two
    // steps' SQL, no record of them, user_version 0.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let config = dir.path().join("tomare.toml");
    std::fs::write(&config, format!("[storage]\ndata_dir = \"{}\"\n", data.display())).unwrap();
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../store/migrations/queue");
    let script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
                  for f in sys.argv[2:]: c.executescript(open(f).read())\nc.commit()";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(data.join("tomare.db"))
        .arg(format!("{migrations}/0001_initial.sql"))
        .arg(format!("{migrations}/0002_archive_flag.sql"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = |json: bool| {
        let mut c = tomare();
        c.args(["db", "status", "--config"]).arg(&config);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let before: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(before.as_array().unwrap().len(), 8, "{before}");
    assert!(before.as_array().unwrap().iter().all(|m| m["applied_at"].is_null()), "status applies nothing: {before}");
    assert!(status(false).contains("0 applied, 8 pending."));
    // Other commands do not migrate behind a running server's back.
    let out = tomare().args(["queue", "list", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tomare db migrate"), "{err}");
    assert!(status(false).contains("0 applied, 8 pending."), "queue list changed nothing");

    let out = tomare().args(["db", "migrate", "--config"]).arg(&config).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "0001 initial",
        "0002 archive_flag",
        "0003 canonical_addresses",
        "0004 send_as",
        "0005 used_links",
        "0006 accounts",
        "0007 protect",
    ] {
        assert!(said.contains(&format!("tomare.db: applied migration {line}")), "{said}");
    }
    assert!(said.contains("archive.db: applied migration 0001 initial"), "{said}");
    let after: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    let adopted: Vec<bool> = after.as_array().unwrap().iter().map(|m| m["adopted"] == true).collect();
    assert_eq!(adopted, [true, true, false, false, false, false, false, false], "{after}");
    assert!(status(false).contains("8 applied, 0 pending."));
    let again = tomare().args(["db", "migrate", "--config"]).arg(&config).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
    // And the data directory works: a user with a send-as grant is stored.
    let mut add = tomare()
        .args(["user", "add", "taro@example.com", "--send-as", "@example.com", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_lookalike_of_a_domain_with_mail_waiting_is_caught_and_cancelled_mail_teaches_nothing() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}[hold]\nexternal = \"10m\"\ninternal = \"0s\"\n", relay_to(sink.port, "")));
    let rules = |id: &str| -> Vec<String> {
        let v = g.show(id)["verdict"]["rules"].clone();
        v.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    };
    // newclient.test has never been delivered to; mail to it is held.
    let first =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@newclient.test"], &message("見積", "q1@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&first) == "held"), "{}", g.log());
    assert!(!rules(&first).contains(&"lookalike-domain".to_string()));
    // A slip of one letter, right after: the waiting mail is what it imitates.
    let second =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["b@newc1ient.test"], &message("見積", "q2@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&second) == "held"), "{}", g.log());
    assert!(rules(&second).contains(&"lookalike-domain".to_string()), "{}", g.show(&second));
    let reasons = g.show(&second)["verdict"].to_string();
    assert!(reasons.contains("newclient.test"), "{reasons}");
    // The held typo teaches nothing: more mail to the real one is no look-alike.
    let third =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["c@newclient.test"], &message("見積", "q4@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&third) == "held"), "{}", g.log());
    assert!(!rules(&third).contains(&"lookalike-domain".to_string()), "{}", g.show(&third));
    // The dry run reads the waiting mail from the store the same way.
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, message("見積", "q3@x")).unwrap();
    let check = |to: &str| -> Vec<String> {
        let v = g.cli_json(&["check", eml.to_str().unwrap(), "--from", "taro@example.com", "--to", to, "--json"]);
        v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(check("c@newc1ient.test").contains(&"lookalike-domain".to_string()));
    // Cancelled, neither waits any more, and neither taught the history.
    for id in [&first, &second, &third] {
        assert!(g.cli(&["queue", "cancel", id]).status.success());
    }
    assert!(!check("c@newc1ient.test").contains(&"lookalike-domain".to_string()));
    let with_file = "From: taro@example.com\r\nTo: a@newclient.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
                     Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nb\r\n--x\r\n\
                     Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\n\r\nhello\r\n--x--\r\n";
    std::fs::write(&eml, with_file).unwrap();
    assert!(check("a@newclient.test").contains(&"first-contact-with-attachments".to_string()));
    assert_eq!(sink.count(), 0);
}

/// The held notice tells the sender everything that matters — who it goes
/// to (outside marked), the files, why, when it goes (in the org's time
/// zone) and what tomare will change — and `[notify] on_hold` decides who
/// hears of a plain hold.
#[test]
fn the_held_notice_says_what_will_change_and_on_hold_decides_who_hears() {
    let sink = Sink::start();
    let g = Gateway::start(&format!(
        "{}[org]\ninternal_domains = [\"example.com\"]\ntime_zone = \"+09:00\"\n",
        relay_to(sink.port, "")
    ));
    let data = "From: taro@example.com\r\nTo: a@customer.test, b@customer.test, c@customer.test\r\nCc: jiro@example.com\r\n\
                Subject: =?UTF-8?B?5qGI5YaF?=\r\nMessage-ID: <n1@example.com>\r\nMIME-Version: 1.0\r\n\
                Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                --b\r\nContent-Type: text/plain; name=list.txt\r\nContent-Disposition: attachment; filename=list.txt\r\n\r\nx\r\n--b--\r\n";
    let rcpts = ["a@customer.test", "b@customer.test", "c@customer.test", "jiro@example.com"];
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &rcpts, data).unwrap());
    assert!(wait_until(Duration::from_secs(10), || sink.notices("held").len() == 1), "{}", g.log());
    assert_eq!(g.state(&id), "held");
    let told = &sink.notices("held")[0];
    assert_eq!(told.rcpts, ["taro@example.com"]);
    let parsed = mail_parser::MessageParser::default().parse(&told.data).unwrap();
    assert_eq!(parsed.subject(), Some("保留中 / Held: 案内"));
    let text = parsed.body_text(0).unwrap().to_string();
    for want in [
        "a@customer.test [社外 / external]",
        "jiro@example.com\r\n",
        "list.txt",
        "To/Cc を Bcc に移します",
        "Many outside addresses are visible",
        "(+09:00)",
        "/a/cancel/",
        "/a/release/",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let release_at = g.show(&id)["release_at"].as_str().unwrap().to_string();
    // The UTC hour + 9 is what the notice says.
    let hour: u32 = release_at[11..13].parse().unwrap();
    assert!(text.contains(&format!(" {:02}:{}", (hour + 9) % 24, &release_at[14..16])), "{release_at}: {text}");
    let html = parsed.body_html(0).unwrap().to_string();
    assert!(html.contains("href=\"http://") && html.contains("/a/cancel/"), "{html}");
    assert!(sink.notices("held").iter().all(|m| m.header("Auto-Submitted").as_deref() == Some("auto-replied")));

    // "rules": a plain hold of mail to outside tells nobody; a rule that fired does.
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}[notify]\non_hold = \"rules\"\n", relay_to(sink.port, "")));
    let plain =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("plain", "p@x")).unwrap());
    let many = ["a@customer.test", "b@customer.test", "c@customer.test"];
    let data =
        "From: taro@example.com\r\nTo: a@customer.test, b@customer.test, c@customer.test\r\nSubject: many\r\n\r\nx\r\n";
    let ruled = queued_id(&smtp_send(&g.smtp, "taro@example.com", &many, data).unwrap());
    assert!(wait_until(Duration::from_secs(10), || sink.notices("held").len() == 1), "{}", g.log());
    std::thread::sleep(Duration::from_secs(1));
    let held = sink.notices("held");
    assert_eq!(held.len(), 1, "only the one a rule fired on");
    assert!(held[0].text().contains(&ruled), "{}", held[0].text());
    assert_eq!(g.state(&plain), "held");

    // "never": nobody hears.
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}[notify]\non_hold = \"never\"\n", relay_to(sink.port, "")));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &many, data).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "held"), "{}", g.log());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sink.count(), 0);
}
