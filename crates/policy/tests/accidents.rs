//! One message per mis-send accident (DESIGN §1), and per false-positive
//! trap, through the real inspector and the built-in pack.

use tomare_config::{Config, DirectoryUser};
use tomare_inspect::Inspector;
use tomare_model::Envelope;
use tomare_model::i18n::Lang;
use tomare_policy::{Context, Directory, Engine, History, OnTimeout, Outcome, Verdict};

struct World {
    config: Config,
    engine: Engine,
    inspector: Inspector,
    directory: Directory,
    history: History,
}

fn world() -> World {
    world_with(Config::default())
}

fn world_with(mut config: Config) -> World {
    config.org.internal_domains = vec!["example.co.jp".into()];
    let engine = Engine::new(&config, Vec::new()).unwrap();
    let inspector = Inspector::new(&config).unwrap();
    let directory = Directory::new([DirectoryUser {
        email: "taro@example.co.jp".into(),
        name: "山田太郎".into(),
        role: "member".into(),
        supervisor: Some("boss@example.co.jp".into()),
        groups: vec!["sales".into()],
    }]);
    let contacted = ["customer.co.jp".to_string(), "partner.com".to_string()].into_iter().collect();
    World { config, engine, inspector, directory, history: History { contacted, waiting: Default::default() } }
}

impl World {
    fn verdict(&self, rcpts: &[&str], raw: &str) -> Verdict {
        let facts = self.inspector.message(raw.as_bytes());
        let envelope = Envelope {
            mail_from: "taro@example.co.jp".parse().unwrap(),
            rcpt_to: rcpts.iter().map(|s| s.parse().unwrap()).collect(),
            helo: "h".into(),
            client_ip: "127.0.0.1".into(),
            auth_user: None,
        };
        let ctx = Context {
            internal_domains: &self.config.org.internal_domains,
            directory: &self.directory,
            history: &self.history,
            now_ms: 1_700_000_000_000,
            lang: Lang::En,
        };
        self.engine.evaluate(&envelope, &facts, &ctx)
    }
}

fn fired(v: &Verdict) -> Vec<&str> {
    v.rules.iter().map(|r| r.name.as_str()).collect()
}

fn mail(to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: taro@example.co.jp\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <m@example.co.jp>\r\n\r\n{body}\r\n"
    )
}

fn with_attachment(to: &str, name: &str, content: &str) -> String {
    format!(
        "From: taro@example.co.jp\r\nTo: {to}\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n\
         --x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nご確認ください。\r\n\
         --x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\n{content}\r\n--x--\r\n"
    )
}

#[test]
fn everyday_mail_outside_is_held_briefly_and_inside_goes_at_once() {
    let w = world();
    let v = w.verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "お打ち合わせ", "来週の件です。"));
    assert_eq!((v.outcome, v.hold_seconds), (Outcome::Hold, 300));
    assert_eq!(fired(&v), ["external-hold"]);
    let v = w.verdict(&["jiro@example.co.jp"], &mail("jiro@example.co.jp", "社内連絡", "会議室の件"));
    assert_eq!((v.outcome, v.hold_seconds), (Outcome::Deliver, 0));
    assert_eq!(fired(&v), ["internal-only"]);
}

#[test]
fn mass_mail_with_visible_recipients_becomes_bcc() {
    let w = world();
    let to = "a@customer.co.jp, b@partner.com, c@customer.co.jp";
    let v =
        w.verdict(&["a@customer.co.jp", "b@partner.com", "c@customer.co.jp"], &mail(to, "ご案内", "セミナーのご案内"));
    assert!(fired(&v).contains(&"visible-recipients"));
    assert_eq!(v.convert_to_bcc.as_deref(), Some("undisclosed"));
    assert_eq!(v.transforms, ["convert_to_bcc"]);
    // Two visible outside addresses are within the default threshold.
    let v = w.verdict(&["a@customer.co.jp", "b@partner.com"], &mail("a@customer.co.jp, b@partner.com", "x", "y"));
    assert!(!fired(&v).contains(&"visible-recipients"));
    // Many colleagues in To are not a leak.
    let to = "a@example.co.jp, b@example.co.jp, c@example.co.jp, d@example.co.jp";
    let v =
        w.verdict(&["a@example.co.jp", "b@example.co.jp", "c@example.co.jp", "d@example.co.jp"], &mail(to, "x", "y"));
    assert!(!fired(&v).contains(&"visible-recipients"));
}

#[test]
fn malformed_bcc_and_address_lists_in_the_body_are_held() {
    let w = world();
    let raw = "From: taro@example.co.jp\r\nTo: a@customer.co.jp\r\nBcc: boss@example.co.jp\r\nceo@customer.co.jp\r\nSubject: x\r\n\r\nbody\r\n";
    let v = w.verdict(&["a@customer.co.jp"], raw);
    assert!(fired(&v).contains(&"malformed-recipient-headers"), "{v:?}");
    assert_eq!(v.hold_seconds, 1800);
    let list: String = (0..15).map(|i| format!("member{i}@customer.co.jp\r\n")).collect();
    let v = w.verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "名簿", &list));
    assert!(fired(&v).contains(&"addresses-in-body"));
}

#[test]
fn confidential_content_to_outside_needs_the_supervisors_approval() {
    let w = world();
    let v = w.verdict(&["a@customer.co.jp"], &with_attachment("a@customer.co.jp", "資料.txt", "本資料は社外秘です。"));
    assert_eq!(v.outcome, Outcome::Approval);
    assert_eq!(v.approval.as_ref().unwrap().approver, "boss@example.co.jp");
    assert!(fired(&v).contains(&"confidential-to-outside"));
    assert!(fired(&v).contains(&"unprotected-confidential-attachment"), "attachment not protected: {v:?}");
    let reason = &v.rules.iter().find(|r| r.name == "confidential-to-outside").unwrap().reason;
    assert!(reason.contains("社外秘") && reason.contains("資料.txt"), "{reason}");
    // The same mail inside the company is fine.
    let v =
        w.verdict(&["jiro@example.co.jp"], &with_attachment("jiro@example.co.jp", "資料.txt", "本資料は社外秘です。"));
    assert_eq!(v.outcome, Outcome::Deliver);
}

#[test]
fn traps_that_must_not_fire() {
    let w = world();
    // 社外 and 外秘 apart are not 社外秘.
    let v =
        w.verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "ご連絡", "社外の皆様へ。外秘扱いではありません。"));
    assert!(!fired(&v).contains(&"confidential-to-outside"), "{v:?}");
    // A 9-digit invoice number is not a My Number.
    let v = w.verdict(
        &["a@customer.co.jp"],
        &with_attachment("a@customer.co.jp", "請求書.txt", "請求書番号 123456789 金額 5,000円"),
    );
    assert!(!fired(&v).contains(&"personal-data-to-outside"), "{v:?}");
}

#[test]
fn personal_data_in_attachments_needs_approval() {
    let w = world();
    let v = w.verdict(
        &["a@customer.co.jp"],
        &with_attachment("a@customer.co.jp", "名簿.csv", "氏名,個人番号\n山田,123456789018\n"),
    );
    assert!(fired(&v).contains(&"personal-data-to-outside"));
    assert_eq!(v.outcome, Outcome::Approval);
}

#[test]
fn lookalike_domains_and_first_contact() {
    let w = world();
    let v = w.verdict(&["a@exmaple.co.jp"], &mail("a@exmaple.co.jp", "x", "y"));
    assert!(fired(&v).contains(&"lookalike-domain"), "{v:?}");
    assert_eq!(v.hold_seconds, 3600);
    let v = w.verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "x", "y"));
    assert!(!fired(&v).contains(&"lookalike-domain"));
    let v = w.verdict(&["new@stranger.com"], &with_attachment("new@stranger.com", "a.txt", "hello"));
    assert!(fired(&v).contains(&"first-contact-with-attachments"));
    let v = w.verdict(&["a@customer.co.jp"], &with_attachment("a@customer.co.jp", "a.txt", "hello"));
    assert!(!fired(&v).contains(&"first-contact-with-attachments"));
}

#[test]
fn a_lookalike_of_a_domain_mail_is_waiting_for_is_caught() {
    // newclient.co.jp has never been delivered to: mail to it is held now.
    let mut w = world();
    let v = w.verdict(&["a@newc1ient.co.jp"], &mail("a@newc1ient.co.jp", "x", "y"));
    assert!(!fired(&v).contains(&"lookalike-domain"), "nothing to imitate yet: {v:?}");
    w.history.waiting.insert("newclient.co.jp".into());
    let v = w.verdict(&["a@newc1ient.co.jp"], &mail("a@newc1ient.co.jp", "x", "y"));
    assert!(fired(&v).contains(&"lookalike-domain"), "{v:?}");
    assert!(v.rules.iter().any(|r| r.reason.contains("newclient.co.jp")), "{v:?}");
    // The waiting domain itself is still a first contact, not a look-alike.
    let v = w.verdict(&["b@newclient.co.jp"], &with_attachment("b@newclient.co.jp", "a.txt", "hello"));
    assert!(!fired(&v).contains(&"lookalike-domain"), "{v:?}");
    assert!(fired(&v).contains(&"first-contact-with-attachments"), "{v:?}");
    // A held typo of a customer delivered to before is no reference: the
    // customer's own domain is not its look-alike.
    w.history.waiting.insert("cust0mer.co.jp".into());
    let v = w.verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "x", "y"));
    assert!(!fired(&v).contains(&"lookalike-domain"), "{v:?}");
    let v = w.verdict(&["a@cust0mer.co.jp"], &mail("a@cust0mer.co.jp", "x", "y"));
    assert!(fired(&v).contains(&"lookalike-domain"), "the typo still is one: {v:?}");
}

#[test]
fn incomplete_inspection_is_held() {
    let w = world();
    let raw = "From: taro@example.co.jp\r\nTo: a@customer.co.jp\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n\
               --x\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.7z\"\r\nContent-Transfer-Encoding: base64\r\n\r\nN3q8ryccAAQ=\r\n--x--\r\n";
    let v = w.verdict(&["a@customer.co.jp"], raw);
    assert!(fired(&v).contains(&"inspection-incomplete"), "{v:?}");
}

const SEVEN_ZIP: &str = "From: taro@example.co.jp\r\nTo: a@customer.co.jp\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: application/octet-stream\r\n\
    Content-Disposition: attachment; filename=\"a.7z\"\r\nContent-Transfer-Encoding: base64\r\n\r\nN3q8ryccAAQ=\r\n--x--\r\n";

#[test]
fn unread_content_to_outside_waits_for_a_person_whatever_the_rules_say() {
    // The built-in pack: an approval that a deadline can only refuse.
    let v = world().verdict(&["a@customer.co.jp"], SEVEN_ZIP);
    assert_eq!(v.outcome, Outcome::Approval, "{v:?}");
    let a = v.approval.as_ref().unwrap();
    assert_eq!((a.approver.as_str(), a.on_timeout.as_str()), ("boss@example.co.jp", "reject"));
    // No built-in pack, and a rule that only holds briefly: still a person.
    let mut config = Config::default();
    config.policy.builtin = false;
    config.rule = Config::parse_rules(
        "[[rule]]\nname = \"brief\"\nwhen = { external_recipients = { min = 1 } }\nthen = [{ hold = \"1m\" }]\n",
    )
    .unwrap();
    let v = world_with(config).verdict(&["a@customer.co.jp"], SEVEN_ZIP);
    assert_eq!(v.outcome, Outcome::Approval, "{v:?}");
    assert!(fired(&v).contains(&"inspection-incomplete"));
    // An approval the rules let lapse into a release is made to refuse.
    let mut config = Config::default();
    config.policy.builtin = false;
    config.rule = Config::parse_rules(
        "[[rule]]\nname = \"lenient\"\nwhen = { external_recipients = { min = 1 } }\n\
         then = [{ require_approval = { approver = \"boss@example.co.jp\", timeout = \"1h\", on_timeout = \"release\" } }]\n",
    )
    .unwrap();
    let v = world_with(config.clone()).verdict(&["a@customer.co.jp"], SEVEN_ZIP);
    assert_eq!(v.approval.as_ref().unwrap().on_timeout, OnTimeout::Reject);
    // Mail read in full keeps the rule's own choice; so does mail inside.
    let v = world_with(config).verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "x", "y"));
    assert_eq!(v.approval.as_ref().unwrap().on_timeout, OnTimeout::Release);
    let v = world().verdict(&["hanako@example.co.jp"], SEVEN_ZIP);
    assert_ne!(v.outcome, Outcome::Approval, "internal-only mail is not forced: {v:?}");
    // A rule that adds an outside recipient counts as going outside.
    let mut config = Config::default();
    config.policy.builtin = false;
    config.rule = Config::parse_rules(
        "[[rule]]\nname = \"audit\"\nwhen = { all_internal = true }\nthen = [{ add_recipient = \"audit@archive-vendor.test\" }]\n",
    )
    .unwrap();
    let v = world_with(config).verdict(&["hanako@example.co.jp"], SEVEN_ZIP);
    assert_eq!(v.outcome, Outcome::Approval, "{v:?}");
    // A rejection stays a rejection.
    let config = Config {
        rule: Config::parse_rules(
            "[[rule]]\nname = \"no-7z\"\nwhen = { attachment = { name = \"\\\\.7z$\" } }\nthen = [{ reject = \"no 7z\" }]\n",
        )
        .unwrap(),
        ..Config::default()
    };
    assert_eq!(world_with(config).verdict(&["a@customer.co.jp"], SEVEN_ZIP).outcome, Outcome::Reject);
}

#[test]
fn classification_reads_the_domain_field_not_the_last_at() {
    let w = world();
    let secret = mail("x@customer.co.jp", "【社外秘】", "計画");
    // The local part may hold an '@': what counts is the domain after it.
    let v = w.verdict(&[r#""boss@example.co.jp"@rival.test"#], &secret);
    assert_eq!(v.outcome, Outcome::Approval, "outside, though the text before its @ looks internal: {v:?}");
    let v = w.verdict(&[r#""ceo@rival.test"@example.co.jp"#], &secret);
    assert_ne!(v.outcome, Outcome::Approval, "inside, though the local part names an outsider: {v:?}");
}

#[test]
fn custom_rules_combine_strictest_first_and_stop() {
    let text = r#"
[[rule]]
name = "ceo-bcc"
description = "Mail from sales to outside copies the supervisor."
when = { all = [ { sender_group = ["sales"] }, { external_recipients = { min = 1 } } ] }
then = [ { add_recipient = "supervisor" }, { add_header = { name = "X-Tomare-Checked", value = "yes" } } ]

[[rule]]
name = "no-competitors"
when = { recipient_domain = ["rival.example"] }
then = [ { reject = "Mail to competitors is not allowed." } ]
stop = true

[[rule]]
name = "never-reached-after-stop"
when = { external_recipients = { min = 1 } }
then = [ { hold = "2h" } ]
"#;
    let mut config = Config { rule: Config::parse_rules(text).unwrap(), ..Config::default() };
    config.policy.builtin = false;
    let w = world_with(config);
    let v = w.verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "x", "y"));
    assert_eq!(v.add_recipients, ["boss@example.co.jp"]);
    assert_eq!(v.add_headers, [("X-Tomare-Checked".to_string(), "yes".to_string())]);
    assert_eq!(v.transforms, ["add_recipient", "add_header"]);
    assert_eq!(v.hold_seconds, 7200);
    let v = w.verdict(&["a@rival.example"], &mail("a@rival.example", "x", "y"));
    assert_eq!(v.outcome, Outcome::Reject);
    assert_eq!(v.reject_reason.as_deref(), Some("Mail to competitors is not allowed."));
    assert!(!fired(&v).contains(&"never-reached-after-stop"));
}

#[test]
fn rule_errors_are_refused_with_their_line() {
    let errors = Config::parse_rules(
        "[[rule]]\nname = \"x\"\nwhen = { external_recipientz = { min = 1 } }\nthen = [{ hold = \"1m\" }]\n",
    )
    .unwrap_err();
    assert_eq!(errors[0].line, 3, "{errors:?}");
    assert!(errors[0].message.contains("external_recipientz"), "{errors:?}");
    let errors =
        Config::parse_rules("[[rule]]\nname = \"x\"\nwhen = { all_internal = true }\nthen = [{ hold = \"soon\" }]\n")
            .unwrap_err();
    assert_eq!(errors[0].line, 4);
    let bad = "[[rule]]\nname = \"bad\"\nwhen = { text = { matches = \"(\" } }\nthen = [{ hold = \"1m\" }]\n";
    let mut c = Config { rule: Config::parse_rules(bad).unwrap(), ..Config::default() };
    assert_eq!(Engine::new(&c, Vec::new()).err().unwrap().rule, "bad");
    c.rule = Config::parse_rules(
        "[[rule]]\nname = \"external-hold\"\nwhen = { all_internal = true }\nthen = [{ hold = \"1m\" }]\n",
    )
    .unwrap();
    assert!(Engine::new(&c, Vec::new()).err().unwrap().message.contains("twice"));
    for (approver, ok) in
        [("boss", false), ("supervisor", true), ("group:leads", true), ("boss@example.co.jp", true), ("a b@x", false)]
    {
        c.rule = Config::parse_rules(&format!(
            "[[rule]]\nname = \"ask\"\nwhen = {{ all_internal = true }}\nthen = [{{ require_approval = {{ approver = \"{approver}\" }} }}]\n"
        ))
        .unwrap();
        assert_eq!(Engine::new(&c, Vec::new()).is_ok(), ok, "approver {approver:?}");
    }
}

#[test]
fn time_size_text_and_attachment_predicates() {
    let text = r#"
[[rule]]
name = "late"
when = { time_of_day = { from = "22:00", to = "06:00" } }
then = [{ hold = "8h" }]

[[rule]]
name = "big"
when = { size = { min = "1KB" } }
then = [{ hold = "1m" }]

[[rule]]
name = "project-name"
when = { text = { matches = "project\\s+x\\d", in = ["subject"] } }
then = [{ hold = "2m" }]

[[rule]]
name = "spreadsheets"
when = { attachment = { name = "\\.(csv|xlsx)$", min = 1 } }
then = [{ hold = "3m" }]
"#;
    let config = Config { rule: Config::parse_rules(text).unwrap(), ..Config::default() };
    let mut config = config;
    config.policy.builtin = false;
    let w = world_with(config);
    // 1_700_000_000_000 ms is 2023-11-14 22:13 UTC = 07:13 JST: not late.
    let v = w.verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "Project  X1 plan", "short"));
    assert_eq!(fired(&v), ["project-name"], "{v:?}");
    let big = "x".repeat(2000);
    let v = w.verdict(&["a@customer.co.jp"], &with_attachment("a@customer.co.jp", "list.CSV", &big));
    assert_eq!(fired(&v), ["big", "spreadsheets"], "{v:?}");
    assert_eq!(v.hold_seconds, 180, "the longest hold wins");

    // The same clock is 22:13 in UTC: inside 22:00–06:00.
    let text = "[[rule]]\nname = \"late\"\nwhen = { time_of_day = { from = \"22:00\", to = \"06:00\", utc_offset = \"+00:00\" } }\nthen = [{ hold = \"8h\" }]\n";
    let mut config = Config { rule: Config::parse_rules(text).unwrap(), ..Config::default() };
    config.policy.builtin = false;
    let w = world_with(config);
    let v = w.verdict(&["a@customer.co.jp"], &mail("a@customer.co.jp", "x", "y"));
    assert_eq!(fired(&v), ["late"]);
    assert!(v.rules[0].reason.contains("22:13"), "{}", v.rules[0].reason);
}

#[test]
fn rules_choose_protection_per_recipient_domain_and_only_for_files_sent_outside() {
    let rules = Config::parse_rules(
        r#"
[[rule]]
name = "partner-gets-zip"
when = { recipient_domain = ["partner.com"] }
then = [{ protect_attachments = "zip" }]

[[rule]]
name = "confidential-files-by-link"
when = { attachment = { detected = ["keyword"] } }
then = [{ protect_attachments = "link" }]
"#,
    )
    .unwrap();
    let w = world_with(Config { rule: rules, ..Config::default() });
    let with_file = |name: &str, text: &str| {
        format!(
            "From: taro@example.co.jp\r\nTo: x@x.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/plain; name={name}\r\n\
             Content-Disposition: attachment; filename={name}\r\n\r\n{text}\r\n--b--\r\n"
        )
    };
    let plain = with_file("a.txt", "nothing special");
    let v = w.verdict(&["p@partner.com"], &plain);
    assert_eq!(v.protect, Some(tomare_model::ProtectMode::Zip));
    assert!(v.transforms.contains(&"protect_attachments:zip".to_string()), "{:?}", v.transforms);
    // Only when a detector fires, for the others.
    assert_eq!(w.verdict(&["c@customer.co.jp"], &plain).protect, None);
    let secret = with_file("b.txt", "社外秘の資料");
    assert_eq!(w.verdict(&["c@customer.co.jp"], &secret).protect, Some(tomare_model::ProtectMode::Link));
    // Both fired: the link (recallable) wins for the message; which
    // recipients still get a zip is [protect] zip_domains' to say.
    assert_eq!(
        w.verdict(&["p@partner.com", "c@customer.co.jp"], &secret).protect,
        Some(tomare_model::ProtectMode::Link)
    );
    // Inside only, or no files: nothing to protect.
    assert_eq!(w.verdict(&["j@example.co.jp"], &secret).protect, None);
    let no_file = "From: taro@example.co.jp\r\nTo: p@partner.com\r\nSubject: s\r\n\r\nhi\r\n";
    assert_eq!(w.verdict(&["p@partner.com"], no_file).protect, None);
    assert!(
        Engine::new(
            &Config::default(),
            Config::parse_rules(
                "[[rule]]\nname = \"x\"\nwhen = { all_internal = false }\nthen = [{ protect_attachments = \"pgp\" }]\n"
            )
            .unwrap()
        )
        .is_err()
    );
}
