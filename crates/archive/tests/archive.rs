//! The archive against a real SQLite store and a real tantivy index:
//! import, search (every operator, Japanese in every charset, the 社外秘
//! trap, widths), the queue path (states, rules, Bcc), tampering, retention,
//! export round trips.

use base64::Engine as _;
use encoding_rs::{EUC_JP, ISO_2022_JP, SHIFT_JIS};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tomare_archive::{Archive, ops};
use tomare_model::{Envelope, MessageId, State, now_ms};
use tomare_store::{Decision, NewMessage, SqliteStore, Store};

const DAY: i64 = 86_400_000;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// RFC 2822 date `days_ago` days before now.
fn date(days_ago: i64) -> String {
    tomare_model::rfc2822(now_ms() - days_ago * DAY)
}

struct Env {
    dir: tempfile::TempDir,
    archive: Arc<Archive>,
    sqlite: Arc<SqliteStore>,
    store: Arc<dyn Store>,
    inspector: Arc<tomare_inspect::Inspector>,
    org: i64,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("tomare.db")).await.unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    let org = store.ensure_org("Example").await.unwrap();
    let archive = Arc::new(Archive::open(dir.path()).unwrap());
    let inspector = Arc::new(tomare_inspect::Inspector::new(&tomare_config::Config::default()).unwrap());
    Env { dir, archive, sqlite, store, inspector, org }
}

impl Env {
    async fn import(&self, path: &Path) -> ops::ImportReport {
        let internal = Arc::new(|d: &str| d == "example.com");
        ops::import(&self.archive, &self.store, &self.inspector, self.org, path, internal, |_| {}).await.unwrap()
    }

    fn search(&self, q: &str) -> Vec<String> {
        self.archive
            .index
            .search(q, 100)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .into_iter()
            .map(|h| h.subject)
            .collect()
    }

    /// Subjects matching `q`, sorted (for set comparisons).
    fn subjects(&self, q: &str) -> Vec<String> {
        let mut s = self.search(q);
        s.sort();
        s
    }

    async fn verify(&self) -> Result<i64, tomare_archive::chain::Broken> {
        ops::verify(&self.archive, &self.store).await.unwrap().map(|r| r.records)
    }

    async fn sql(&self, sql: &str) {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", self.dir.path().join("archive.db").display()))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// A corpus of mail written here: Japanese in each charset, English,
/// mixed, attachments, Cc and Bcc, dates and sizes that differ.
fn write_corpus(dir: &Path) {
    let mut mails: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (charset, enc)) in
        [("ISO-2022-JP", ISO_2022_JP), ("Shift_JIS", SHIFT_JIS), ("EUC-JP", EUC_JP)].iter().enumerate()
    {
        let subject = format!("見積書{charset}");
        let mut raw = format!(
            "From: =?{charset}?B?{}?= <tanaka@example.com>\r\nTo: suzuki@customer.co.jp\r\nSubject: =?{charset}?B?{}?=\r\n\
             Date: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n\r\n",
            b64(&enc.encode("田中").0),
            b64(&enc.encode(&subject).0),
            date(10 + i as i64),
        )
        .into_bytes();
        raw.extend_from_slice(
            &enc.encode(&format!("いつもお世話になっております。{charset}の社外秘資料をお送りします。\r\n")).0,
        );
        mails.push((format!("jp-{i}.eml"), raw));
    }
    // The trap: 社外 and 外秘 both present, never 社外秘.
    mails.push((
        "trap.eml".into(),
        format!(
            "From: sato@example.com\r\nTo: partner@vendor.test\r\nSubject: trap\r\nDate: {}\r\n\
             Content-Type: text/plain; charset=UTF-8\r\n\r\n社外の方へ。外秘ではありません。\r\n",
            date(5)
        )
        .into_bytes(),
    ));
    // English, Cc and Bcc headers, an attachment with text in Shift_JIS.
    let attachment = SHIFT_JIS.encode("売上報告 四半期 CONFIDENTIAL\r\n").0;
    mails.push((
        "english.eml".into(),
        format!(
            "From: Alice <alice@example.com>\r\nTo: bob@partner.test\r\nCc: carol@partner.test\r\n\
             Bcc: boss@example.com\r\nSubject: Quarterly report\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             Please find the quarterly numbers attached.\r\n--b\r\nContent-Type: text/plain; charset=Shift_JIS; name=\"uriage.txt\"\r\n\
             Content-Disposition: attachment; filename=\"uriage.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            date(3),
            b64(&attachment)
        )
        .into_bytes(),
    ));
    // Full-width Latin and half-width kana in the body, a big body.
    mails.push((
        "width.eml".into(),
        format!(
            "From: yamada@example.com\r\nTo: info@shop.test\r\nSubject: widths\r\nDate: {}\r\n\
             Content-Type: text/plain; charset=UTF-8\r\n\r\nＩＮＴＥＲＮＡＬ ＯＮＬＹ ｶﾞｲﾄﾞﾗｲﾝ\r\n{}\r\n",
            date(1),
            "padding line to make this message large\r\n".repeat(40_000)
        )
        .into_bytes(),
    ));
    std::fs::create_dir_all(dir).unwrap();
    for (name, raw) in mails {
        std::fs::write(dir.join(name), raw).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_japanese_english_and_every_operator() {
    let e = env().await;
    let corpus = e.dir.path().join("corpus");
    write_corpus(&corpus);
    let report = e.import(&corpus).await;
    assert_eq!(report.messages, 6, "{report:?}");
    let jp = ["見積書EUC-JP", "見積書ISO-2022-JP", "見積書Shift_JIS"];

    // Japanese body text from every charset; the phrase trap.
    assert_eq!(e.subjects("社外秘"), jp);
    assert_eq!(e.subjects("\"社外秘\""), jp);
    assert_eq!(e.subjects("\"外秘\""), ["trap", jp[0], jp[1], jp[2]]);
    assert_eq!(e.subjects("お世話"), jp);
    // A lone kanji matches inside words.
    assert_eq!(e.subjects("秘"), ["trap", jp[0], jp[1], jp[2]]);
    // Subject decoded from each charset's encoded word.
    assert_eq!(e.subjects("subject:見積書"), jp);
    assert_eq!(e.subjects("subject:shift_jis"), [jp[2]]);
    // English words, case-insensitive; attachment text (Shift_JIS) and name.
    assert_eq!(e.subjects("QUARTERLY numbers"), ["Quarterly report"]);
    assert_eq!(e.subjects("売上報告"), ["Quarterly report"]);
    assert_eq!(e.subjects("confidential"), ["Quarterly report"]);
    assert_eq!(e.subjects("filename:uriage.txt"), ["Quarterly report"]);
    assert_eq!(e.subjects("has:attachment"), ["Quarterly report"]);
    // Widths: full-width Latin and half-width kana found by their plain forms, and back.
    assert_eq!(e.subjects("\"internal only\""), ["widths"]);
    assert_eq!(e.subjects("ガイドライン"), ["widths"]);
    assert_eq!(e.subjects("ｶﾞｲﾄﾞ"), ["widths"]);
    // Addresses: from (display name and address), to (Bcc too), cc.
    assert_eq!(e.subjects("from:alice@example.com"), ["Quarterly report"]);
    assert_eq!(e.subjects("from:田中"), jp);
    assert_eq!(e.subjects("to:boss@example.com"), ["Quarterly report"]);
    assert_eq!(e.subjects("to:carol@partner.test"), ["Quarterly report"], "to: covers Cc");
    assert_eq!(e.subjects("cc:carol"), ["Quarterly report"]);
    assert!(e.subjects("cc:bob").is_empty());
    assert_eq!(e.subjects("to:customer.co.jp"), jp);
    // Dates (days in Japan time) and sizes.
    let day = |days_ago: i64| {
        // The day in Japan time.
        tomare_model::rfc3339(now_ms() - days_ago * DAY + 9 * 3_600_000)[..10].to_string()
    };
    assert_eq!(e.subjects(&format!("after:{}", day(4))), ["Quarterly report", "widths"]);
    assert_eq!(e.subjects(&format!("before:{}", day(11))), [jp[0]], "12 days ago only");
    assert_eq!(e.subjects("larger:1M"), ["widths"]);
    assert_eq!(e.subjects("smaller:1M").len(), 5);
    // Negation, OR, parentheses.
    assert_eq!(e.subjects("社外秘 -subject:iso-2022-jp"), [jp[0], jp[2]]);
    assert_eq!(e.subjects("trap OR widths"), ["trap", "widths"]);
    assert_eq!(e.subjects("(from:alice OR from:yamada) -has:attachment"), ["widths"]);
    assert_eq!(e.subjects("-from:example.com"), Vec::<String>::new());
    assert_eq!(e.subjects("state:imported").len(), 6);
    // Newest first, with the match highlighted.
    let hits = e.archive.index.search("社外秘", 10).unwrap();
    assert!(hits.windows(2).all(|w| w[0].date_ms >= w[1].date_ms));
    assert_eq!(hits[0].subject, jp[1], "10 days ago is the newest of the three");
    assert!(hits[0].highlights.iter().any(|h| h.contains("<b>社外秘</b>")), "{:?}", hits[0].highlights);
    // A bad query is an error with its position, not a panic.
    let err = e.archive.index.search("subject:\"open", 10).unwrap_err().to_string();
    assert!(err.contains("quote"), "{err}");

    // Reindex from the blobs gives the same answers.
    let n = ops::reindex(&e.archive, &e.store, &e.inspector, |_| {}).await.unwrap();
    assert_eq!(n, 6);
    assert_eq!(e.subjects("\"社外秘\""), jp);
    assert_eq!(e.subjects("to:boss@example.com"), ["Quarterly report"]);
    assert_eq!(e.archive.index.num_docs().unwrap(), 6);
    assert_eq!(e.verify().await, Ok(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reads_maildir_mbox_and_eml_once_and_seeds_history() {
    let e = env().await;
    let root = e.dir.path().join("in");
    for d in ["maildir/cur", "maildir/new", "maildir/tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let mail = |n: usize, from: &str, to: &str, body: &str| {
        format!("From: {from}\r\nTo: {to}\r\nSubject: m{n}\r\nDate: {}\r\n\r\n{body}\r\n", date(n as i64))
    };
    std::fs::write(root.join("maildir/cur/1:2,S"), mail(1, "a@example.com", "x@alpha.test", "maildir cur")).unwrap();
    std::fs::write(root.join("maildir/new/2"), mail(2, "a@example.com", "y@beta.test", "maildir new")).unwrap();
    std::fs::write(root.join("maildir/tmp/3"), mail(3, "a@example.com", "z@gamma.test", "half written")).unwrap();
    // An mbox (as a Google Vault export): a body line that starts with From, quoted.
    let m4 = mail(4, "someone@outside.test", "a@example.com", "From the customer side\r\n>From quoted");
    let m5 = mail(5, "b@example.com", "w@delta.test", "mbox two");
    let mbox = format!(
        "From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n{}\n\nFrom b@example.com Thu Jan  1 00:00:00 2026\n{}\n",
        m4.replace("\r\nFrom the", "\r\n>From the").replace("\r\n>From quoted", "\r\n>>From quoted"),
        m5
    );
    std::fs::write(root.join("vault.mbox"), mbox).unwrap();
    std::fs::create_dir_all(root.join("eml/sub")).unwrap();
    std::fs::write(root.join("eml/sub/6.eml"), mail(6, "c@example.com", "v@alpha.test", "eml file")).unwrap();
    std::fs::write(root.join("eml/notes.txt"), "not mail").unwrap();

    let r = e.import(&root).await;
    assert_eq!(r.messages, 5, "maildir cur+new, two mbox messages, one .eml (not tmp/, not .txt): {r:?}");
    assert_eq!(e.subjects("maildir"), ["m1", "m2"]);
    assert!(e.subjects("\"half written\"").is_empty());
    assert_eq!(e.subjects("\"from the customer side\""), ["m4"]);
    // The mbox quoting is undone: the stored message is the original.
    let id = e.archive.index.ids("subject:m4", 1).unwrap().remove(0);
    let bytes = ops::message_bytes(&e.archive, &e.store, &id, true).await.unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap().trim_end(), m4.trim_end());

    // History: external domains mailed by internal senders; not the
    // domain of an outside sender.
    let contacted = e.store.contacted(e.org).await.unwrap();
    for d in ["alpha.test", "beta.test", "delta.test"] {
        assert!(contacted.contains(d), "{d} in {contacted:?}");
    }
    assert!(!contacted.contains("example.com") && !contacted.contains("outside.test"), "{contacted:?}");

    // Importing again adds nothing.
    let again = e.import(&root).await;
    assert_eq!((again.messages, again.skipped_duplicates), (0, 5));
    assert_eq!(e.archive.index.num_docs().unwrap(), 5);
    assert_eq!(e.verify().await, Ok(5));
}

/// The queue's spool, in memory.
/// Original and rewritten bytes per message.
type Copies = (Vec<u8>, Option<Vec<u8>>);

struct MemSpool(Mutex<HashMap<MessageId, Copies>>);

impl ops::SpoolSource for MemSpool {
    fn original(&self, id: &MessageId) -> std::io::Result<Vec<u8>> {
        self.0.lock().unwrap().get(id).map(|m| m.0.clone()).ok_or(std::io::ErrorKind::NotFound.into())
    }

    fn rewritten(&self, id: &MessageId) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.0.lock().unwrap().get(id).and_then(|m| m.1.clone()))
    }
}

/// One archiver pass, then what it left pending recorded.
async fn archive_pass(e: &Env, source: &Arc<dyn ops::SpoolSource>) -> Result<ops::Batch, tomare_archive::ArchiveError> {
    let mut state = ops::QueueState::default();
    let mut batch =
        ops::archive_queue(&e.archive, &e.store, &e.inspector, source, None, &mut state, 100, u64::MAX, 0).await?;
    let (records, done) = ops::commit_round(&e.archive, &e.store, &mut state).await?;
    batch.records += records;
    batch.done.extend(done);
    ops::release(&e.archive, &e.store, &mut state).await?;
    Ok(batch)
}

async fn queue_message(e: &Env, spool: &MemSpool, raw: &str, rcpts: &[&str], state: State, verdict: &str) -> MessageId {
    let id = MessageId::generate(now_ms());
    let envelope = Envelope {
        mail_from: "tanaka@example.com".parse().unwrap(),
        rcpt_to: rcpts.iter().map(|r| r.parse().unwrap()).collect(),
        helo: "client".into(),
        client_ip: "127.0.0.1".into(),
        auth_user: None,
    };
    e.store
        .insert_messages(&[NewMessage {
            id: id.clone(),
            org_id: e.org,
            envelope,
            subject: "s".into(),
            header_from: "tanaka@example.com".into(),
            message_id_header: String::new(),
            size: raw.len() as u64,
            received_at: now_ms(),
            state: State::Received,
            release_at: None,
            is_dsn: false,
        }])
        .await
        .unwrap();
    e.store
        .decide(&[Decision {
            id: id.clone(),
            facts: Default::default(),
            summary: String::new(),
            verdict: if verdict == "{}" { None } else { Some(serde_json::from_str(verdict).unwrap()) },
            reasons: String::new(),
            state,
            release_at: now_ms() + 3_600_000,
            approval: None,
            add_recipients: Vec::new(),
            rewritten: false,
            protection: None,
            notify: Vec::new(),
        }])
        .await
        .unwrap();
    spool.0.lock().unwrap().insert(id.clone(), (raw.as_bytes().to_vec(), None));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_archived_as_received_then_final() {
    let e = env().await;
    let spool = Arc::new(MemSpool(Mutex::new(HashMap::new())));
    let source: Arc<dyn ops::SpoolSource> = spool.clone();
    let raw =
        "From: tanaka@example.com\r\nTo: suzuki@customer.co.jp\r\nSubject: held one\r\n\r\n極秘の見積もりです\r\n";
    let verdict = r#"{"outcome":"hold","rules":[{"name":"confidential-external","reason":"r"}]}"#;
    // Envelope-only recipient: a Bcc.
    let held =
        queue_message(&e, &spool, raw, &["suzuki@customer.co.jp", "boss@example.com"], State::Held, verdict).await;
    let batch = archive_pass(&e, &source).await.unwrap();
    assert_eq!((batch.messages, batch.records, batch.done.len()), (1, 1, 0), "received copy only: not final yet");
    assert_eq!(e.subjects("state:held"), ["held one"]);
    assert_eq!(e.subjects("rule:confidential-external"), ["held one"]);
    assert_eq!(e.subjects("rule:Confidential-External"), ["held one"]);
    assert_eq!(e.subjects("to:boss@example.com"), ["held one"], "envelope Bcc is searchable");
    assert_eq!(e.subjects("極秘"), ["held one"]);
    // Nothing more to do until its state changes.
    let idle = archive_pass(&e, &source).await.unwrap();
    assert_eq!(idle.messages, 0);

    // Cancelled: the final record, the index doc restated, spool may go.
    assert_eq!(e.store.cancel(&held, "cli").await.unwrap(), tomare_store::Transition::Done);
    // The rules rewrote it before: the delivered copy differs.
    spool.0.lock().unwrap().get_mut(&held).unwrap().1 = Some(raw.replace("To: suzuki", "To: undisclosed").into_bytes());
    let batch = archive_pass(&e, &source).await.unwrap();
    assert_eq!((batch.records, batch.done.clone()), (1, vec![held.clone()]));
    assert!(e.subjects("state:held").is_empty());
    assert_eq!(e.subjects("state:cancelled"), ["held one"]);
    assert_eq!(e.subjects("rule:confidential-external"), ["held one"], "rules survive the restate");
    let records = e.store.archive_records_of(held.as_str()).await.unwrap();
    assert_eq!(records.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["received", "final"]);
    let meta: serde_json::Value = serde_json::from_str(records[1].meta.as_deref().unwrap()).unwrap();
    assert_eq!(meta["state"], "cancelled");
    assert_eq!(meta["rewritten"], true);
    assert!(meta["events"].as_array().unwrap().iter().any(|ev| ev["kind"] == "cancelled"), "{meta}");
    let original = ops::message_bytes(&e.archive, &e.store, held.as_str(), true).await.unwrap();
    let delivered = ops::message_bytes(&e.archive, &e.store, held.as_str(), false).await.unwrap();
    assert_eq!(original, raw.as_bytes());
    assert!(String::from_utf8(delivered).unwrap().contains("To: undisclosed"));
    assert_eq!(e.store.live_ids(true).await.unwrap(), Vec::<MessageId>::new());
    assert_eq!(e.verify().await, Ok(2));
}

async fn pass(e: &Env, source: &Arc<dyn ops::SpoolSource>, state: &mut ops::QueueState) -> ops::Batch {
    ops::archive_queue(&e.archive, &e.store, &e.inspector, source, None, state, 100, u64::MAX, 0).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_is_recorded_only_after_its_index_commit() {
    let e = env().await;
    let spool = Arc::new(MemSpool(Mutex::new(HashMap::new())));
    let source: Arc<dyn ops::SpoolSource> = spool.clone();
    let raw = "From: tanaka@example.com\r\nTo: a@customer.test\r\nSubject: round\r\n\r\n議事録\r\n";
    // Rounds of an hour: only an idle pass closes one here.
    let mut state = ops::QueueState::with_commit_every(std::time::Duration::from_secs(3600));
    // The first pass commits at once (no commit yet this run).
    let first = queue_message(&e, &spool, raw, &["a@customer.test"], State::Held, "{}").await;
    assert_eq!(pass(&e, &source, &mut state).await.records, 1);
    // Within the round: pending, not recorded, not searchable, not taken again.
    let second =
        queue_message(&e, &spool, &raw.replace("round", "second"), &["a@customer.test"], State::Held, "{}").await;
    let b = pass(&e, &source, &mut state).await;
    assert_eq!((b.messages, b.records), (1, 0), "waits for the round's commit");
    assert!(e.store.archive_records_of(second.as_str()).await.unwrap().is_empty());
    assert!(e.subjects("subject:second").is_empty());
    assert_eq!(e.store.cancel(&second, "cli").await.unwrap(), tomare_store::Transition::Done);
    // In this round already, it is not taken again; with nothing else to
    // do the pass commits the round: recorded and searchable.
    let b = pass(&e, &source, &mut state).await;
    assert_eq!((b.messages, b.records), (0, 1));
    assert_eq!(e.subjects("subject:second"), ["second"]);
    let b = pass(&e, &source, &mut state).await;
    assert_eq!((b.messages, b.records), (1, 0), "its final record, in the next round");
    let b = pass(&e, &source, &mut state).await;
    assert_eq!((b.records, b.done.clone()), (1, vec![second.clone()]), "recorded by the idle pass; its spool may go");
    assert_eq!(e.subjects("state:cancelled"), ["second"]);
    assert_eq!(e.subjects("state:held"), ["round"]);
    let done = ops::release(&e.archive, &e.store, &mut state).await.unwrap();
    assert!(done.is_empty());
    assert!(e.store.archive_records_of(first.as_str()).await.unwrap().len() == 1);
    assert_eq!(e.verify().await, Ok(3));
}

async fn archive_of_six(e: &Env) {
    let dir = e.dir.path().join("six");
    std::fs::create_dir_all(&dir).unwrap();
    for n in 0..6 {
        let raw =
            format!("From: a@example.com\r\nTo: b@x.test\r\nSubject: n{n}\r\nDate: {}\r\n\r\nbody {n}\r\n", date(n));
        std::fs::write(dir.join(format!("{n}.eml")), raw).unwrap();
    }
    assert_eq!(e.import(&dir).await.messages, 6);
    assert_eq!(e.verify().await, Ok(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_found_and_named() {
    // A changed byte in one stored message.
    let e = env().await;
    archive_of_six(&e).await;
    let rec = e.store.archive_records(0, 10).await.unwrap();
    let loc = e.store.blob_locations(std::slice::from_ref(&rec[3].blob)).await.unwrap().remove(&rec[3].blob).unwrap();
    let path = e.archive.blobs.pack_path(&loc.pack);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(loc.offset + loc.len / 2) as usize] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(e.verify().await.unwrap_err().seq, 4);
    // A stored message's place forgotten; then the whole pack gone.
    e.sql(&format!("DELETE FROM blobs WHERE hash = '{}'", rec[4].blob)).await;
    assert_eq!(e.verify().await.unwrap_err().seq, 4);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(e.verify().await.unwrap_err().seq, 1);

    // A deleted record.
    let e = env().await;
    archive_of_six(&e).await;
    e.sql("DELETE FROM archive WHERE seq = 3").await;
    let broken = e.verify().await.unwrap_err();
    assert_eq!(broken.seq, 3, "{broken:?}");

    // Two records swapped.
    let e = env().await;
    archive_of_six(&e).await;
    e.sql("UPDATE archive SET seq = -1 WHERE seq = 2; UPDATE archive SET seq = 2 WHERE seq = 5; UPDATE archive SET seq = 5 WHERE seq = -1;").await;
    assert_eq!(e.verify().await.unwrap_err().seq, 2);

    // Changed details (meta), and a record rewritten with its hash recomputed
    // (caught by the hash of the next record).
    let e = env().await;
    archive_of_six(&e).await;
    e.sql("UPDATE archive SET meta = replace(meta, 'b@x.test', 'c@x.test') WHERE seq = 2").await;
    assert_eq!(e.verify().await.unwrap_err().seq, 2);

    // The last records removed with their hashes intact: the signed
    // checkpoint names them.
    let e = env().await;
    archive_of_six(&e).await;
    e.sql("DELETE FROM archive WHERE seq > 4").await;
    let broken = e.verify().await.unwrap_err();
    assert!(broken.reason.contains("checkpoint"), "{broken:?}");

    // Details dropped as if by retention, without a purge record.
    let e = env().await;
    archive_of_six(&e).await;
    e.sql("UPDATE archive SET meta = NULL, purged_at = 1 WHERE seq = 4").await;
    assert_eq!(e.verify().await.unwrap_err().seq, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_what_is_due_and_never_held_mail() {
    let e = env().await;
    let dir = e.dir.path().join("ages");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, days) in [("old1", 400), ("old2", 200), ("old-held", 300), ("recent", 10), ("today", 0)] {
        let raw = format!(
            "From: a@example.com\r\nTo: b@x.test\r\nSubject: {name}\r\nDate: {}\r\n\r\n保存期間 {name}\r\n",
            date(days)
        );
        std::fs::write(dir.join(format!("{name}.eml")), raw).unwrap();
    }
    // The same bytes as "recent" under another name share its blob.
    assert_eq!(e.import(&dir).await.messages, 5);
    let held = e.archive.index.ids("subject:old-held", 1).unwrap();
    assert_eq!(e.store.set_legal_hold(&held, true, "test", "litigation").await.unwrap(), 1);
    let old1 = e.archive.index.ids("subject:old1", 1).unwrap().remove(0);
    let old1_blob = e.store.archive_records_of(&old1).await.unwrap()[0].blob.clone();
    let old_pack = e.store.blob_locations(std::slice::from_ref(&old1_blob)).await.unwrap()[&old1_blob].pack.clone();

    let removed = ops::retention(&e.archive, &e.store, e.org, 90, now_ms()).await.unwrap();
    assert_eq!(removed, 2);
    assert_eq!(e.subjects("保存期間"), ["old-held", "recent", "today"]);
    assert!(e.store.blob_locations(std::slice::from_ref(&old1_blob)).await.unwrap().is_empty());
    assert!(!e.archive.blobs.pack_path(&old_pack).exists(), "its pack was rewritten without it");
    let stored = stored_messages(&e.dir.path().join("blobs"));
    assert_eq!(stored.len(), 3, "the bytes of removed mail are gone from disk");
    assert!(!stored.iter().any(|m| m.contains("Subject: old1") || m.contains("Subject: old2")));
    // The survivors moved and still read back.
    let today = e.archive.index.ids("subject:today", 1).unwrap().remove(0);
    assert!(ops::message_bytes(&e.archive, &e.store, &today, true).await.is_ok());
    assert!(ops::message_bytes(&e.archive, &e.store, &old1, true).await.is_err());
    // The chain still verifies: the purge is a record of its own.
    assert_eq!(e.verify().await, Ok(6));
    // Nothing more is due; lifting the hold makes it due.
    assert_eq!(ops::retention(&e.archive, &e.store, e.org, 90, now_ms()).await.unwrap(), 0);
    e.store.set_legal_hold(&held, false, "test", "").await.unwrap();
    assert_eq!(ops::retention(&e.archive, &e.store, e.org, 90, now_ms()).await.unwrap(), 1);
    assert_eq!(e.subjects("保存期間"), ["recent", "today"]);
    assert_eq!(e.verify().await, Ok(7));
    // 0 days: keep everything.
    assert_eq!(ops::retention(&e.archive, &e.store, e.org, 0, now_ms()).await.unwrap(), 0);
}

/// Every message in every pack file, read by walking the frames.
fn stored_messages(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        let mut at = 0;
        while at + 48 <= bytes.len() {
            assert_eq!(&bytes[at..at + 8], b"tomareb1");
            let len = u64::from_le_bytes(bytes[at + 40..at + 48].try_into().unwrap()) as usize;
            let frame = &bytes[at + 48..at + 48 + len];
            out.push(String::from_utf8(zstd::stream::decode_all(frame).unwrap()).unwrap());
            at += 48 + len;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_eml_and_mbox_round_trip() {
    let e = env().await;
    let dir = e.dir.path().join("x");
    std::fs::create_dir_all(&dir).unwrap();
    let a = "From: a@example.com\r\nTo: b@x.test\r\nSubject: one\r\n\r\nFrom here on\r\n>From there\r\n";
    let b = "From: a@example.com\r\nTo: b@x.test\r\nSubject: two\r\n\r\nno newline at the end";
    std::fs::write(dir.join("a.eml"), a).unwrap();
    std::fs::write(dir.join("b.eml"), b).unwrap();
    e.import(&dir).await;
    let ids = e.archive.index.ids("from:a@example.com", 10).unwrap();
    let out = e.dir.path().join("out.mbox");
    ops::export(&e.archive, &e.store, &ids, ops::Format::Mbox, &out, false).await.unwrap();
    let mut back: Vec<String> =
        ops::split_mbox(&std::fs::read(&out).unwrap()).into_iter().map(|m| String::from_utf8(m).unwrap()).collect();
    back.sort();
    let mut want = vec![a.to_string(), format!("{b}\n")];
    want.sort();
    assert_eq!(back, want, "mboxrd quoting undone; only the missing final newline added");
    let eml = e.dir.path().join("eml");
    ops::export(&e.archive, &e.store, &ids, ops::Format::Eml, &eml, false).await.unwrap();
    for id in &ids {
        let bytes = std::fs::read(eml.join(format!("{id}.eml"))).unwrap();
        assert!(bytes == a.as_bytes() || bytes == b.as_bytes());
    }
    let err = ops::message_bytes(&e.archive, &e.store, "01M8NOTHERE0000000000000000", false).await.unwrap_err();
    assert!(err.to_string().contains("not in the archive"));
    e.sqlite.close().await;
}

/// The queue's spool as files, as the server has it.
struct FileSpool(std::path::PathBuf);

impl ops::SpoolSource for FileSpool {
    fn original(&self, id: &MessageId) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.0.join(format!("{id}.eml")))
    }

    fn rewritten(&self, _: &MessageId) -> std::io::Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn original_path(&self, id: &MessageId) -> Option<std::path::PathBuf> {
        Some(self.0.join(format!("{id}.eml")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_message_gets_a_pass_of_its_own_is_packed_from_its_file_and_indexed_in_part() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let files = Arc::new(FileSpool(dir.path().to_path_buf()));
    let source: Arc<dyn ops::SpoolSource> = files.clone();
    let mut raw =
        String::from("From: tanaka@example.com\r\nTo: a@customer.co.jp\r\nSubject: big one\r\n\r\n冒頭の見積書\r\n");
    while raw.len() < 6 << 20 {
        raw.push_str("lorem ipsum dolor sit amet 0123456789\r\n");
    }
    raw.push_str("末尾の合言葉\r\n");
    // Queued as the server does, with the review stage's inspection at hand.
    let mem = MemSpool(Mutex::new(HashMap::new()));
    let id = queue_message(&e, &mem, &raw, &["a@customer.co.jp"], State::Held, "{}").await;
    std::fs::write(dir.path().join(format!("{id}.eml")), &raw).unwrap();
    let texts = Arc::new(ops::Handoffs::default());
    let facts = e.inspector.message(raw.as_bytes());
    assert!(facts.body_text.len() > tomare_archive::index::TEXT_INDEXED);
    texts.put(id.clone(), &Arc::new(raw.as_bytes().to_vec()), facts);

    let mut state = ops::QueueState::default();
    let (a, st, ins) = (&e.archive, &e.store, &e.inspector);
    let first =
        ops::archive_queue(a, st, ins, &source, Some(&texts), &mut state, 100, ops::BATCH_BYTES, 0).await.unwrap();
    assert_eq!((first.messages, first.cut, first.wanted), (0, true, raw.len() as u64), "too big for a normal pass");
    let second = ops::archive_queue(a, st, ins, &source, Some(&texts), &mut state, 100, first.wanted, 0).await.unwrap();
    assert_eq!(second.messages, 1);
    ops::commit_round(&e.archive, &e.store, &mut state).await.unwrap();
    ops::release(&e.archive, &e.store, &mut state).await.unwrap();

    assert_eq!(e.subjects("冒頭"), ["big one"], "the beginning of its text is searchable");
    assert_eq!(e.subjects("has:truncated"), ["big one"], "and it says the rest is not");
    assert!(e.subjects("合言葉").is_empty());
    let stored = ops::message_bytes(&e.archive, &e.store, id.as_str(), true).await.unwrap();
    assert!(stored == raw.as_bytes(), "packed from the file, byte for byte");
    assert_eq!(e.verify().await, Ok(1));
}

/// What review hands over is what the archiver uses: with the spool copy
/// gone, the message is still archived from the hand-off's bytes, and the
/// hand-off's Facts (not a second inspection) make its index document.
#[tokio::test]
async fn the_review_handoff_spares_reading_and_inspecting_again() {
    let e = env().await;
    let mem = Arc::new(MemSpool(Mutex::new(HashMap::new())));
    let raw =
        "From: tanaka@example.com\r\nTo: a@customer.co.jp\r\nSubject: handed over\r\n\r\n見積書をお送りします\r\n";
    let id = queue_message(&e, &mem, raw, &["a@customer.co.jp"], State::Held, "{}").await;
    mem.0.lock().unwrap().clear();
    let handoffs = Arc::new(ops::Handoffs::default());
    let mut facts = e.inspector.message(raw.as_bytes());
    facts.body_text.push_str(" 合言葉ハンドオフ");
    handoffs.put(id.clone(), &Arc::new(raw.as_bytes().to_vec()), facts);
    // A second message whose hand-off is gone: read and inspected again.
    let other = "From: tanaka@example.com\r\nTo: b@customer.co.jp\r\nSubject: no hand-off\r\n\r\n請求書\r\n";
    queue_message(&e, &mem, other, &["b@customer.co.jp"], State::Held, "{}").await;
    let source: Arc<dyn ops::SpoolSource> = mem.clone();
    let mut state = ops::QueueState::default();
    let batch =
        ops::archive_queue(&e.archive, &e.store, &e.inspector, &source, Some(&handoffs), &mut state, 100, u64::MAX, 0)
            .await
            .unwrap();
    assert_eq!((batch.messages, batch.reinspected), (2, 1), "only the one without a hand-off is inspected again");
    ops::commit_round(&e.archive, &e.store, &mut state).await.unwrap();
    ops::release(&e.archive, &e.store, &mut state).await.unwrap();
    assert_eq!(e.subjects("合言葉ハンドオフ"), ["handed over"], "the hand-off's Facts were indexed");
    let stored = ops::message_bytes(&e.archive, &e.store, id.as_str(), true).await.unwrap();
    assert_eq!(stored, raw.as_bytes(), "archived from the hand-off's bytes");
    assert!(handoffs.take(&id).is_none(), "taken once");
    assert_eq!(e.subjects("請求書"), ["no hand-off"]);
    assert_eq!(e.verify().await, Ok(2));
}
