//! The archive through the real server and CLI: what `serve` accepts is
//! archived (as received and as delivered), searchable, exportable and
//! verifiable; tampering makes `archive verify` fail; `rules replay` shows
//! what a candidate rule set would change.

mod common;

use common::*;
use std::time::Duration;

const HOLD_NONE: &str = "[hold]\nexternal = \"0s\"\ninternal = \"0s\"\n";

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn served_mail_is_archived_searchable_exportable_and_verifiable() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    // A: the supervisor only in the envelope (Bcc); Japanese text.
    let a = "From: Taro <taro@example.com>\r\nTo: hanako@customer.test\r\nSubject: 御見積のご案内\r\n\
             Message-ID: <a@x>\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n新製品の見積書をお送りします。\r\n";
    let a_id =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["hanako@customer.test", "boss@example.com"], a).unwrap());
    // B: three outside addresses in To: the built-in pack moves them to Bcc.
    let b = "From: Taro <taro@example.com>\r\nTo: a@customer.test, b@partner.test, c@other.test\r\n\
             Subject: seminar invitation\r\nMessage-ID: <b@x>\r\n\r\nYou are invited to our seminar.\r\n";
    let b_id = queued_id(
        &smtp_send(&g.smtp, "taro@example.com", &["a@customer.test", "b@partner.test", "c@other.test"], b).unwrap(),
    );
    let spool = g.data_dir().join("spool");
    assert!(
        wait_until(Duration::from_secs(20), || {
            sink.count() == 2
                && g.state(&a_id) == "delivered"
                && g.state(&b_id) == "delivered"
                && files_in(&spool).is_empty()
        }),
        "delivered, archived and the spool emptied: {:?}\n{}",
        files_in(&spool),
        g.log()
    );

    let search = |q: &str| g.cli_json(&["archive", "search", q, "--json"]);
    assert_eq!(ids(&search("to:boss@example.com")), [a_id.as_str()], "the Bcc'd supervisor is searchable");
    assert_eq!(ids(&search("見積書")), [a_id.as_str()]);
    assert_eq!(ids(&search("state:delivered")), [b_id.clone(), a_id.clone()], "newest first");
    assert_eq!(ids(&search("rule:visible-recipients")), [b_id.as_str()]);
    assert_eq!(ids(&search("-subject:seminar")), [a_id.as_str()], "a query may start with -");
    let hit = &search("seminar")[0];
    assert_eq!(hit["subject"], "seminar invitation");
    assert_eq!(hit["from"], "taro@example.com");
    assert!(hit["date"].as_str().unwrap().ends_with('Z'));
    assert!(hit["highlights"][0].as_str().unwrap().contains("<b>seminar</b>"), "{hit}");
    // Human output, and a query error.
    let out = g.cli(&["archive", "search", "見積書"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&a_id));
    let out = g.cli(&["archive", "search", "subject:\"open"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("quote"));

    // Export: as delivered (recipients out of sight) and as received.
    let dir = g.dir.path();
    let out = g.cli(&["archive", "export", &b_id, "--out", dir.join("delivered").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let delivered = std::fs::read_to_string(dir.join("delivered").join(format!("{b_id}.eml"))).unwrap();
    assert!(!delivered.contains("b@partner.test"), "{delivered}");
    let out = g.cli(&["archive", "export", &b_id, "--original", "--out", dir.join("orig").to_str().unwrap()]);
    assert!(out.status.success());
    let original = std::fs::read_to_string(dir.join("orig").join(format!("{b_id}.eml"))).unwrap();
    assert!(original.contains("To: a@customer.test, b@partner.test, c@other.test"), "{original}");
    let mbox = dir.join("all.mbox");
    let out =
        g.cli(&["archive", "export", "--query", "from:taro", "--format", "mbox", "--out", mbox.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&mbox).unwrap().matches("\nFrom MAILER-DAEMON").count() + 1, 2);

    // Replay: a candidate that rejects seminar mail changes B only.
    let candidate = dir.join("candidate.toml");
    std::fs::write(
        &candidate,
        "[[rule]]\nname = \"no-seminars\"\nwhen = { text = { contains = [\"seminar\"] } }\nthen = [{ reject = \"no\" }]\n",
    )
    .unwrap();
    let v = g.cli_json(&["rules", "replay", candidate.to_str().unwrap(), "--json"]);
    assert_eq!(v["replayed"], 2, "{v}");
    assert_eq!(v["changed"], 1, "{v}");
    let d = &v["differences"][0];
    assert_eq!(d["id"], b_id.as_str());
    assert_ne!(d["before"]["outcome"], "reject", "{d}");
    assert_eq!(d["after"]["outcome"], "reject", "{d}");
    assert!(d["after"]["rules"].as_array().unwrap().iter().any(|r| r == "no-seminars"), "{d}");
    let v = g.cli_json(&["rules", "replay", candidate.to_str().unwrap(), "--query", "見積書", "--json"]);
    assert_eq!((v["replayed"].as_i64(), v["changed"].as_i64()), (Some(1), Some(0)), "{v}");

    // Verify: intact, then a stored message changed.
    let v = g.cli_json(&["archive", "verify", "--json"]);
    assert_eq!(v["intact"], true, "{v}");
    assert_eq!(v["report"]["records"], 4, "received and final for each: {v}");
    let blobs: Vec<_> = walk(&g.data_dir().join("blobs"));
    let victim = blobs.iter().find(|p| p.extension().is_some_and(|e| e == "pack")).unwrap();
    std::fs::write(victim, b"not zstd").unwrap();
    let out = g.cli(&["archive", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("record"), "{err}");
}

#[test]
fn import_seeds_history_and_is_searchable_reindexable_and_holdable() {
    let g = Gateway::start(HOLD_NONE);
    let mbox = g.dir.path().join("vault.mbox");
    std::fs::write(
        &mbox,
        "From x Thu Jan  1 00:00:00 2026\nFrom: taro@example.com\nTo: a@newclient.test\nSubject: 社外秘 contract\n\
         Date: Mon, 2 Nov 2026 10:00:00 +0900\n\n契約書の社外秘ドラフトです。\n\n\
         From y Thu Jan  1 00:00:00 2026\nFrom: taro@example.com\nTo: b@other.test\nSubject: lunch\n\
         Date: Tue, 3 Nov 2026 10:00:00 +0900\n\n社外の方と。外秘ではない。\n",
    )
    .unwrap();
    assert!(first_contact(&g), "before the import");
    let out = g.cli(&["archive", "import", mbox.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Imported 2"), "{}", String::from_utf8_lossy(&out.stdout));
    let hits = g.cli_json(&["archive", "search", "\"社外秘\"", "--json"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0]["subject"], "社外秘 contract");
    assert_eq!(hits[0]["state"], "imported");
    assert_eq!(hits[0]["date"], "2026-11-02T01:00:00Z");
    // Imported history counts: newclient.test is no first contact any more.
    assert!(!first_contact(&g), "after the import");
    // Reindex keeps the answers; verify is intact.
    let out = g.cli(&["archive", "reindex"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(g.cli_json(&["archive", "search", "\"社外秘\"", "--json"]).as_array().unwrap().len(), 1);
    assert_eq!(g.cli_json(&["archive", "verify", "--json"])["intact"], true);
    // Legal hold by query.
    let out = g.cli(&["archive", "hold", "--query", "subject:contract", "--reason", "dispute"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains('1'), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Whether a file sent to a@newclient.test counts as a first contact.
fn first_contact(g: &Gateway) -> bool {
    let eml = g.dir.path().join("m.eml");
    std::fs::write(
        &eml,
        "From: taro@example.com\r\nTo: a@newclient.test\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: text/plain; name=\"a.txt\"\r\n\
         Content-Disposition: attachment; filename=\"a.txt\"\r\n\r\nprice list\r\n--b--\r\n",
    )
    .unwrap();
    let v = g.cli_json(&["check", eml.to_str().unwrap(), "--json"]);
    v["rules"].as_array().unwrap().iter().any(|r| r["name"] == "first-contact-with-attachments")
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for p in files_in(dir) {
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn our_own_notices_are_kept_but_found_only_when_asked_for() {
    let g = Gateway::start(
        "[[rule]]\nname = \"no-plans\"\nwhen = { text = { contains = [\"機密計画\"], in = [\"subject\"] } }\n\
         then = [{ reject = \"計画書は社外に送れません\" }]\n",
    );
    let mail = "From: taro@example.com\r\nTo: a@customer.test\r\nSubject: 機密計画の件\r\n\r\n本文\r\n";
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], mail).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "rejected"), "{}", g.log());
    let search = |q: &str| g.cli_json(&["archive", "search", q, "--json"]);
    // The sender's notice names the subject: it is archived, but not a hit.
    assert!(
        wait_until(Duration::from_secs(20), || search("機密計画 is:notice").as_array().is_some_and(|a| !a.is_empty())),
        "the notice is archived and found with is:notice\n{}",
        g.log()
    );
    assert_eq!(ids(&search("機密計画")), [id.as_str()], "only the user's mail without is:notice");
    assert!(ids(&search("is:notice")).iter().all(|n| n != &id));
}

/// Issue 10: `check`, `rules replay` and `serve` judge the same message the
/// same way, with a supervisor and a group known only from `users import`.
#[test]
fn check_replay_and_serve_agree_on_the_imported_directory() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "[[rule]]\nname = \"copy-boss\"\nwhen = { sender_group = [\"sales\"] }\n\
                 then = [{ add_recipient = \"supervisor\" }]\n\n\
                 [[rule]]\nname = \"leads-approve\"\nwhen = { text = { contains = [\"見積\"], in = [\"subject\"] } }\n\
                 then = [{ require_approval = { approver = \"group:leads\" } }]\n";
    let rules_file = dir.path().join("rules.toml");
    std::fs::write(&rules_file, rules).unwrap();
    let g = Gateway::start(&format!("[policy]\nrules_file = \"{}\"\n", rules_file.display()));
    let csv = dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "email,name,supervisor,groups\ntaro@example.com,Taro,boss@example.com,sales\nlead@example.com,Lead,,leads\n",
    )
    .unwrap();
    assert!(g.cli(&["users", "import", csv.to_str().unwrap()]).status.success());
    assert!(wait_until(Duration::from_secs(10), || g.log().contains("Rules reloaded")), "{}", g.log());
    let mail =
        "From: taro@example.com\r\nTo: a@customer.test\r\nSubject: 見積のご送付\r\nMessage-ID: <q@x>\r\n\r\n本文\r\n";
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], mail).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "awaiting_approval"), "{}", g.state(&id));
    let served = g.show(&id)["verdict"].clone();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|r| r.as_str().or(r["name"].as_str()).unwrap().to_string()).collect()
    };
    let served_rules = names(&served["rules"]);
    assert!(served_rules.contains(&"copy-boss".to_string()), "the imported group counts: {served}");
    assert_eq!(served["add_recipients"][0], "boss@example.com", "the imported supervisor: {served}");
    assert_eq!(served["approval"]["approver"], "group:leads");

    // The dry run of the same message.
    let eml = dir.path().join("q.eml");
    std::fs::write(&eml, mail).unwrap();
    let checked = g.cli_json(&["check", eml.to_str().unwrap(), "--from", "taro@example.com", "--json"]);
    assert_eq!(checked["outcome"], served["outcome"]);
    assert_eq!(names(&checked["rules"]), served_rules, "check: {checked}");
    assert_eq!(checked["add_recipients"], served["add_recipients"]);

    // Replay, with a candidate set that drops copy-boss: the current rules
    // (what it compares against) are judged as the server judged them.
    assert!(wait_until(Duration::from_secs(20), || {
        g.cli_json(&["archive", "search", "見積", "--json"]).as_array().is_some_and(|a| !a.is_empty())
    }));
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(&candidate, &rules[rules.find("[[rule]]\nname = \"leads").unwrap()..]).unwrap();
    let replayed = g.cli_json(&["rules", "replay", candidate.to_str().unwrap(), "--query", "見積", "--json"]);
    let d = &replayed["differences"][0];
    assert_eq!(d["before"]["outcome"], served["outcome"], "{replayed}");
    assert_eq!(names(&d["before"]["rules"]), served_rules, "{replayed}");
    assert!(!names(&d["after"]["rules"]).contains(&"copy-boss".to_string()));
}

/// Archived content stays complete while mail waits: a message is found by
/// search within 5 s of reaching held, awaiting_approval or a final state.
#[test]
fn every_message_is_searchable_within_five_seconds_of_its_state() {
    let sink = Sink::start();
    let g = Gateway::start(&format!(
        "{}[hold]\nexternal = \"10m\"\ninternal = \"0s\"\n[[rule]]\nname = \"ask\"\n\
         when = {{ text = {{ contains = [\"承認して\"] }} }}\n\
         then = [{{ require_approval = {{ approver = \"boss@example.com\" }} }}]\n",
        relay_to(sink.port, "")
    ));
    let found =
        |word: &str| g.cli_json(&["archive", "search", "--json", word]).as_array().is_some_and(|a| a.len() == 1);
    let send = |to: &str, subject: &str, word: &str| {
        let mail = format!("From: taro@example.com\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{word}\r\n");
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &[to], &mail).unwrap())
    };
    for (to, word, state) in [
        ("a@customer.test", "ほりゅうちゅう", "held"),
        ("b@customer.test", "承認して ください", "awaiting_approval"),
        ("hanako@example.com", "しゃないだけ", "delivered"),
    ] {
        let id = send(to, state, word);
        assert!(wait_until(Duration::from_secs(10), || g.state(&id) == state), "{state}: {}", g.log());
        let reached = std::time::Instant::now();
        let key = word.split(' ').next().unwrap();
        assert!(wait_until(Duration::from_secs(5), || found(key)), "{state}: not searchable in 5 s\n{}", g.log());
        assert!(reached.elapsed() < Duration::from_secs(5), "{state}: {:?}", reached.elapsed());
    }
}
