//! DKIM through the real binary, checked by an independent verifier
//! (Python's dkimpy, its DNS answered from the records `tomare dkim keygen`
//! printed): what tomare changes (Bcc conversion, protection) and what it
//! writes itself (notices) verifies with tomare's key; what it leaves alone
//! arrives byte for byte with its upstream signature still good.

mod common;
use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// `tomare dkim keygen`, and the (name, value) of the TXT record it prints.
fn keygen(dir: &Path, domain: &str, selector: &str, algorithm: &str) -> (String, String) {
    let out = tomare()
        .args(["dkim", "keygen", "--domain", domain, "--selector", selector, "--algorithm", algorithm, "--out"])
        .arg(dir.join(format!("{selector}.pem")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    let (name, rest) = line.split_once(" IN TXT ").expect("a TXT record");
    // The record's strings, joined as DNS does.
    let value: String = rest.trim().split('"').skip(1).step_by(2).collect();
    assert!(value.starts_with(&format!("v=DKIM1; k={algorithm}; p=")), "{value}");
    (name.to_string(), value)
}

/// dkimpy's verdict on the top signature of `data`: "pass", or why not.
fn verify(data: &[u8], records: &HashMap<String, String>, dir: &Path) -> String {
    let path = dir.join(format!("verify-{}.eml", records.len() + data.len()));
    std::fs::write(&path, data).unwrap();
    let json = serde_json::to_string(records).unwrap();
    let script = "import dkim,json,sys\nrecs=json.loads(sys.argv[2])\n\
                  def dns(name, timeout=5):\n    return recs.get(name.decode()).encode() if name.decode() in recs else None\n\
                  d=dkim.DKIM(open(sys.argv[1],'rb').read())\n\
                  try:\n    print('pass' if d.verify(dnsfunc=dns) else 'fail')\n\
                  except Exception as e:\n    print('fail: %s' % e)\n";
    let out = std::process::Command::new("python3").args(["-c", script]).arg(&path).arg(json).output().unwrap();
    assert!(out.status.success(), "dkimpy: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Signs `msg` as the sender's own MTA would (dkimpy, the upstream key).
fn upstream_sign(msg: &str, key: &Path) -> String {
    let script = "import dkim,sys\nm=open(sys.argv[1],'rb').read()\n\
                  s=dkim.sign(m,b'upstream',b'example.com',open(sys.argv[2],'rb').read(),\
                  canonicalize=(b'relaxed',b'relaxed'),include_headers=[b'from',b'to',b'cc',b'subject',b'date',b'message-id'])\n\
                  sys.stdout.buffer.write(s+m)\n";
    let path = key.with_extension("msg");
    std::fs::write(&path, msg).unwrap();
    let out = std::process::Command::new("python3").args(["-c", script]).arg(&path).arg(key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn what_tomare_changes_or_writes_verifies_and_what_it_leaves_alone_keeps_its_signature() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut records = HashMap::new();
    for (domain, selector, algorithm) in
        [("example.com", "tomare1", "rsa"), ("example.co.jp", "tomare2", "ed25519"), ("example.com", "upstream", "rsa")]
    {
        let (name, value) = keygen(&data, domain, selector, algorithm);
        records.insert(name, value);
    }
    let key_mode = std::fs::metadata(data.join("tomare1.pem")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777, 0o600);
    let out = tomare()
        .args(["dkim", "keygen", "--domain", "example.com", "--selector", "tomare1", "--out"])
        .arg(data.join("tomare1.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "an existing key is never replaced");

    let sink = Sink::start();
    let config = format!(
        "{}[hold]\nexternal = \"1s\"\n[org]\ninternal_domains = [\"example.com\", \"example.co.jp\"]\n\
         [dkim]\ndomain = \"example.com\"\nselector = \"tomare1\"\nkey_file = \"tomare1.pem\"\n\
         [protect]\nexternal_attachments = \"link\"\n\
         [[dkim.keys]]\ndomain = \"example.co.jp\"\nselector = \"tomare2\"\nkey_file = \"tomare2.pem\"\n",
        relay_to(sink.port, "")
    );
    let g = Gateway::start_in(dir, &config);
    let upstream_key = g.data_dir().join("upstream.pem");

    // Left alone (inside only, nothing to change): byte for byte, and the
    // upstream signature verifies.
    let plain = upstream_sign(
        "From: Taro <taro@example.com>\r\nTo: jiro@example.com\r\nSubject: =?UTF-8?B?5LqI5a6a?=\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0900\r\nMessage-ID: <d1@example.com>\r\n\r\nそのまま届きます。  \r\n\r\n",
        &upstream_key,
    );
    // (The client ends DATA with CRLF "." CRLF: the last CRLF is the message's.)
    smtp_send(&g.smtp, "taro@example.com", &["jiro@example.com"], plain.strip_suffix("\r\n").unwrap()).unwrap();
    let got = wait_for(&sink, "jiro@example.com");
    let text = got.text();
    assert!(text.starts_with("Received: "), "{text}");
    let after = &got.data[text.find("DKIM-Signature").unwrap()..];
    assert_eq!(after, plain.as_bytes(), "unchanged bytes");
    assert_eq!(verify(&got.data, &records, g.dir.path()), "pass");

    // Changed (To/Cc to Bcc): the upstream signature breaks, tomare's holds.
    let changed = upstream_sign(
        "From: Taro <taro@example.com>\r\nTo: a@one.test, b@two.test, c@three.test\r\nSubject: Hello\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0900\r\nMessage-ID: <d2@example.com>\r\n\r\nTo all of you.\r\n",
        &upstream_key,
    );
    let eml = g.dir.path().join("changed.eml");
    std::fs::write(&eml, &changed).unwrap();
    let out = g.cli(&["check", eml.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("upstream signature (example.com)") && said.contains("convert_to_bcc"), "{said}");
    assert!(said.contains("signs the changed message for example.com (selector tomare1)"), "{said}");
    smtp_send(&g.smtp, "taro@example.com", &["a@one.test", "b@two.test", "c@three.test"], &changed).unwrap();
    let got = wait_for(&sink, "a@one.test");
    assert!(!got.text().contains("b@two.test"), "converted to Bcc");
    assert!(got.text().starts_with("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=tomare1;"));
    assert_eq!(verify(&got.data, &records, g.dir.path()), "pass", "{}", got.text());
    // The upstream one, under it, no longer holds: tomare's is what counts.
    let second = got.text()[1..].find("DKIM-Signature:").unwrap() + 1;
    let upstream_only = &got.data[second..];
    assert!(got.text()[second..].contains("s=upstream"));
    assert_ne!(verify(upstream_only, &records, g.dir.path()), "pass");

    // tomare's own mail (the held notice) is signed too.
    let notice = sink.notices("held").into_iter().next().expect("a held notice");
    assert!(notice.text().starts_with("DKIM-Signature:"));
    assert_eq!(verify(&notice.data, &records, g.dir.path()), "pass");

    // A protected copy (its files behind a link) is signed as well.
    let with_file = "From: taro@example.com\r\nTo: a@one.test\r\nSubject: file\r\nMIME-Version: 1.0\r\n\
        Date: Tue, 01 Dec 2026 10:00:00 +0900\r\nMessage-ID: <d4@example.com>\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n\
        --b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"a.csv\"\r\n\r\nx,y\r\n--b--\r\n";
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@one.test"], with_file).unwrap());
    assert!(wait_until(Duration::from_secs(20), || g.state(&id) == "held"));
    assert!(g.cli(&["queue", "release", &id]).status.success());
    let got = wait_for_with(&sink, "a@one.test", "d4@example.com");
    let parsed = mail_parser::MessageParser::default().parse(&got.data).unwrap();
    assert_eq!(parsed.attachments().count(), 0, "a link copy: {}", got.text());
    assert!(parsed.body_text(1).is_some_and(|t| t.contains("/d/")), "{}", got.text());
    assert_eq!(verify(&got.data, &records, g.dir.path()), "pass", "{}", got.text());

    // Another domain's key, Ed25519, for its own senders.
    let jp = "From: hanako@example.co.jp\r\nTo: x@one.test, y@two.test, z@three.test\r\nSubject: jp\r\n\
              Date: Tue, 01 Dec 2026 10:00:00 +0900\r\nMessage-ID: <d3@example.co.jp>\r\n\r\nこんにちは\r\n";
    smtp_send(&g.smtp, "hanako@example.co.jp", &["x@one.test", "y@two.test", "z@three.test"], jp).unwrap();
    let got = wait_for(&sink, "x@one.test");
    assert!(got.text().starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.co.jp;"));
    assert_eq!(verify(&got.data, &records, g.dir.path()), "pass", "{}", got.text());
}

fn wait_for(sink: &Sink, rcpt: &str) -> Received {
    wait_for_with(sink, rcpt, "")
}

fn wait_for_with(sink: &Sink, rcpt: &str, marker: &str) -> Received {
    let mut found = None;
    wait_until(Duration::from_secs(20), || {
        found = sink.mail().into_iter().find(|m| m.rcpts.iter().any(|r| r == rcpt) && m.text().contains(marker));
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("nothing for {rcpt}"))
}
