//! Protected attachments through the real binary: mail to outside leaves
//! with a download link (or an AES-256 zip) instead of its files, and what
//! the link's page enforces — the one-time code mailed to the recipient,
//! a password, the download limit, expiry and revocation — each download
//! logged and visible through the API.

mod common;
use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A small PDF (one page of text, its cross-reference table right) with a
/// binary comment, and a CSV.
fn files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        ("見積書.pdf", "application/pdf", pdf("Quotation 2026")),
        ("list.csv", "text/csv", "名前,金額\r\n山田,100\r\n".as_bytes().to_vec()),
    ]
}

fn pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 24 Tf 72 700 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    out
}

/// Sends `data` and lets it go (the first mail with files to a domain is
/// held: the sender sends it now, as from the held notice): its queue id.
fn send_now(g: &Gateway, rcpts: &[&str], data: &str) -> String {
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", rcpts, data).unwrap());
    assert!(wait_until(Duration::from_secs(20), || g.state(&id) != "received"), "reviewed");
    if g.state(&id) == "held" {
        let out = g.cli(&["queue", "release", &id]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    id
}

fn mail_with_files(to: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = format!(
        "From: Taro <taro@example.com>\r\nTo: {to}\r\nSubject: =?UTF-8?B?{}?=\r\nMessage-ID: <p1@example.com>\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
         --XX\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nお見積もりを添付します。\r\n",
        b64.encode("お見積もり".as_bytes())
    );
    for (name, ctype, data) in files() {
        let body: Vec<String> =
            b64.encode(&data).as_bytes().chunks(76).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        out.push_str(&format!(
            "--XX\r\nContent-Type: {ctype}; name=\"=?UTF-8?B?{n}?=\"\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?{n}?=\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            body.join("\r\n"),
            n = b64.encode(name.as_bytes())
        ));
    }
    out.push_str("--XX--\r\n");
    out
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// One request, the body as bytes: (status, head, body).
fn raw(g: &Gateway, method: &str, path: &str, headers: &[String], body: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(&g.web).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: protect-test/1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&bytes[..at]).into_owned();
    let mut body = bytes[at + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    (head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0), head, body)
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

const FORM: &str = "Content-Type: application/x-www-form-urlencoded";

fn page(g: &Gateway, path: &str, cookie: &str) -> (u16, String) {
    let headers: Vec<String> = if cookie.is_empty() { vec![] } else { vec![cookie.to_string()] };
    let (code, _, body) = raw(g, "GET", path, &headers, "");
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// The texts of a received message's text parts.
fn texts(r: &Received) -> String {
    let m = MessageParser::default().parse(&r.data).unwrap();
    (0..m.text_body.len()).filter_map(|i| m.body_text(i).map(|t| t.into_owned())).collect::<Vec<_>>().join("\n")
}

/// The path of the download link in a delivered message.
fn link_path(r: &Received, web: &str) -> String {
    let text = texts(r);
    let at = text.find(&format!("http://{web}/d/")).unwrap_or_else(|| panic!("no link in {text}"));
    let url: String = text[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    url.trim_start_matches(&format!("http://{web}")).to_string()
}

fn delivered_to(sink: &Sink, rcpt: &str) -> Received {
    let mut found = None;
    wait_until(Duration::from_secs(20), || {
        found = sink.mail().into_iter().find(|m| m.rcpts.iter().any(|r| r == rcpt));
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("nothing delivered to {rcpt}"))
}

fn own_mail_to(sink: &Sink, kind: &str, rcpt: &str, n: usize) -> Vec<Received> {
    let mut got = Vec::new();
    wait_until(Duration::from_secs(20), || {
        got = sink.notices(kind).into_iter().filter(|m| m.rcpts.iter().any(|r| r == rcpt)).collect();
        got.len() >= n
    });
    got
}

/// The last line of a mail's text that is only the secret (indented).
fn secret_in(r: &Received) -> String {
    let text = r.text();
    let body = text.split("\r\n\r\n").skip(1).collect::<Vec<_>>().join("\r\n\r\n");
    body.lines().filter(|l| l.starts_with("    ")).map(|l| l.trim().to_string()).next_back().expect("a secret line")
}

#[test]
fn a_link_replaces_the_files_and_opens_only_for_the_recipient_within_its_limits() {
    let sink = Sink::start();
    let config = format!(
        "{}[hold]\nexternal = \"0s\"\n[protect]\nexternal_attachments = \"link\"\nlink_max_downloads = 2\n",
        relay_to(sink.port, "")
    );
    let g = Gateway::start(&config);
    let id = send_now(
        &g,
        &["hanako@customer.test", "jiro@example.com"],
        &mail_with_files("hanako@customer.test, jiro@example.com"),
    );
    // Inside: the files as sent. Outside: a link instead.
    let inside = delivered_to(&sink, "jiro@example.com");
    let parsed = MessageParser::default().parse(&inside.data).unwrap();
    assert_eq!(parsed.attachments().count(), 2);
    let outside = delivered_to(&sink, "hanako@customer.test");
    assert_eq!(outside.rcpts, ["hanako@customer.test"], "each copy goes on its own");
    let parsed = MessageParser::default().parse(&outside.data).unwrap();
    assert_eq!(parsed.attachments().count(), 0, "{}", outside.text());
    assert_eq!(parsed.subject(), Some("お見積もり"));
    let text = texts(&outside);
    assert!(text.contains("お見積もりを添付します。") && text.contains("見積書.pdf"), "{text}");
    assert!(text.contains("確認コード") && text.contains("one-time code"), "{text}");
    let path = link_path(&outside, &g.web);

    // The page names the files but opens nothing without a code.
    let (code, body) = page(&g, &path, "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("見積書.pdf") && body.contains("taro@example.com"), "{body}");
    assert!(!body.contains("data-file="), "no download before the code: {body}");
    let (code, head, _) = raw(&g, "GET", &format!("{path}/f/0"), &[], "");
    assert_eq!(code, 303, "{head}");
    assert_eq!(page(&g, "/d/not-a-token", "").0, 404);

    // A code only for an address the mail went to: the same answer either way.
    let (code, _, other) = raw(&g, "POST", &format!("{path}/code"), &[FORM.into()], "email=mallory%40evil.test");
    assert_eq!(code, 200);
    let (_, _, mine) = raw(&g, "POST", &format!("{path}/code"), &[FORM.into()], "email=hanako%40customer.test");
    // The same answer either way, but for the address each typed (echoed
    // into the form for the code).
    assert_eq!(
        String::from_utf8_lossy(&other).replace("mallory@evil.test", "ADDRESS"),
        String::from_utf8_lossy(&mine).replace("hanako@customer.test", "ADDRESS"),
        "no hint who the recipients are"
    );
    let codes = own_mail_to(&sink, "code", "hanako@customer.test", 1);
    assert_eq!(codes.len(), 1);
    assert!(sink.notices("code").iter().all(|m| !m.rcpts.iter().any(|r| r.contains("evil"))));
    let the_code = secret_in(&codes[0]);
    assert_eq!(the_code.len(), 6, "{}", codes[0].text());
    let wrong = if the_code == "000000" { "111111" } else { "000000" };
    let (code, _, body) =
        raw(&g, "POST", &format!("{path}/open"), &[FORM.into()], &format!("email=hanako%40customer.test&code={wrong}"));
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("一致しません")
            || String::from_utf8_lossy(&body).contains("did not match")
    );
    let (code, head, _) = raw(
        &g,
        "POST",
        &format!("{path}/open"),
        &[FORM.into()],
        &format!("email=hanako%40customer.test&code={the_code}"),
    );
    assert_eq!(code, 303, "{head}");
    let pass = set_cookie(&head, "tomare_dl").expect("a pass");
    assert!(head.contains("HttpOnly") && head.contains(&format!("Path={path}")), "{head}");
    let cookie = format!("Cookie: tomare_dl={pass}");
    // The code works once.
    let (code, head, _) = raw(
        &g,
        "POST",
        &format!("{path}/open"),
        &[FORM.into()],
        &format!("email=hanako%40customer.test&code={the_code}"),
    );
    assert!(code == 200 && set_cookie(&head, "tomare_dl").is_none(), "a used code opens nothing");

    // The identical bytes, twice; the third time the file is used up.
    let (_, body) = page(&g, &path, &cookie);
    assert!(body.contains("data-file=\"0\""), "{body}");
    let originals = files();
    for _ in 0..2 {
        let (code, head, bytes) = raw(&g, "GET", &format!("{path}/f/0"), std::slice::from_ref(&cookie), "");
        assert_eq!(code, 200, "{head}");
        assert_eq!(sha(&bytes), sha(&originals[0].2));
        assert!(head.to_ascii_lowercase().contains("content-disposition: attachment"), "{head}");
        assert!(head.contains("filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8.pdf"), "{head}");
    }
    let (code, _, _) = raw(&g, "GET", &format!("{path}/f/0"), std::slice::from_ref(&cookie), "");
    assert_eq!(code, 410, "the limit holds");
    let (code, _, bytes) = raw(&g, "GET", &format!("{path}/f/1"), std::slice::from_ref(&cookie), "");
    assert_eq!((code, sha(&bytes)), (200, sha(&originals[1].2)));
    // Another link's pass opens nothing here.
    let (code, _, _) = raw(&g, "GET", &format!("{path}/f/1"), &["Cookie: tomare_dl=forged.pass".into()], "");
    assert_eq!(code, 303);

    // Every download is logged, and the API shows it.
    // The sender sees them (an account of their own).
    let out = g.user(&["add", "taro@example.com", "--password-stdin"], "a long enough password");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = g.user(&["token", "taro@example.com"], "");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && !token.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let bearer = format!("Authorization: Bearer {token}");
    let (code, _, body) = g.request("GET", &format!("/api/v1/messages/{id}/link"), std::slice::from_ref(&bearer), "");
    assert_eq!(code, 200, "{body}");
    let link: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(link["status"], "active");
    assert_eq!(link["files"][0]["downloads"], 2);
    assert_eq!(link["files"][0]["sha256"], sha(&originals[0].2));
    let downloads = link["downloads"].as_array().unwrap();
    assert_eq!(downloads.len(), 3);
    assert!(downloads.iter().all(|d| d["who"] == "hanako@customer.test" && d["user_agent"] == "protect-test/1"));
    assert_eq!(downloads[0]["name"], "見積書.pdf");

    // Recalled after delivery: the link refuses from then on.
    let out = g.cli(&["protect", "revoke", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, body) = page(&g, &path, &cookie);
    assert_eq!(code, 410);
    assert!(body.contains("取り消し") || body.contains("withdrew"), "{body}");
    assert_eq!(raw(&g, "GET", &format!("{path}/f/1"), std::slice::from_ref(&cookie), "").0, 410);
    assert!(!g.cli(&["protect", "revoke", &id]).status.success(), "revoked once");
    let shown = g.cli_json(&["protect", "show", &id, "--json"]);
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["revoked_by"], "cli");
    // Its files leave the vault.
    let dir = g.data_dir().join("protect").join(&id);
    assert!(wait_until(Duration::from_secs(10), || !dir.exists()), "revoked files removed");
    // The archive keeps the message as it was received, files and all.
    let mbox = g.dir.path().join("x.mbox");
    let export = || {
        g.cli(&["archive", "export", &id, "--original", "--format", "mbox", "--out", mbox.to_str().unwrap()])
            .status
            .success()
            && std::fs::read(&mbox).is_ok_and(|m| !m.is_empty())
    };
    assert!(wait_until(Duration::from_secs(10), export), "archived");
    let bytes = std::fs::read(&mbox).unwrap();
    // After the mbox's own "From " line.
    let archived =
        MessageParser::default().parse(&bytes[bytes.iter().position(|b| *b == b'\n').unwrap() + 1..]).unwrap();
    let names: Vec<_> = archived.attachments().filter_map(|a| a.attachment_name().map(String::from)).collect();
    assert_eq!(names, ["見積書.pdf", "list.csv"]);
}

#[test]
fn a_link_expires_and_its_files_go() {
    let sink = Sink::start();
    let config = format!(
        "{}[hold]\nexternal = \"0s\"\n[protect]\nexternal_attachments = \"link\"\nlink_access = \"none\"\nlink_expiry = \"3s\"\n",
        relay_to(sink.port, "")
    );
    let g = Gateway::start(&config);
    let id = send_now(&g, &["hanako@customer.test"], &mail_with_files("hanako@customer.test"));
    let outside = delivered_to(&sink, "hanako@customer.test");
    let path = link_path(&outside, &g.web);
    // No code asked: the files download at once.
    let (_, body) = page(&g, &path, "");
    assert!(body.contains("data-file=\"1\""), "{body}");
    let (code, _, bytes) = raw(&g, "GET", &format!("{path}/f/1"), &[], "");
    assert_eq!((code, bytes), (200, files()[1].2.clone()));
    let dir = g.data_dir().join("protect").join(&id);
    assert!(dir.exists());
    // On disk the file is not readable as it was sent.
    let on_disk = std::fs::read(dir.join("1")).unwrap();
    assert!(!on_disk.windows(6).any(|w| w == "山田".as_bytes()));
    std::thread::sleep(Duration::from_secs(4));
    let (code, body) = page(&g, &path, "");
    assert_eq!(code, 410, "{body}");
    assert!(body.contains("有効期限") || body.contains("expired"));
    assert!(wait_until(Duration::from_secs(10), || !dir.exists()), "expired files removed");
}

#[test]
fn zips_for_partners_and_password_links_send_their_passwords_after_the_mail() {
    let sink = Sink::start();
    let config = format!(
        "{}[hold]\nexternal = \"0s\"\n[protect]\nexternal_attachments = \"link\"\nlink_access = \"password\"\n\
         zip_domains = [\"partner.test\"]\nzip_password_delay = \"2s\"\n",
        relay_to(sink.port, "")
    );
    let g = Gateway::start(&config);
    send_now(
        &g,
        &["hanako@customer.test", "ken@partner.test"],
        &mail_with_files("hanako@customer.test, ken@partner.test"),
    );
    let zipped = delivered_to(&sink, "ken@partner.test");
    let parsed = MessageParser::default().parse(&zipped.data).unwrap();
    let att: Vec<_> = parsed.attachments().collect();
    assert_eq!(att.len(), 1, "one zip");
    assert_eq!(att[0].attachment_name(), Some("attachments.zip"));
    let zip_bytes = att[0].contents().to_vec();
    let linked = delivered_to(&sink, "hanako@customer.test");
    let path = link_path(&linked, &g.web);
    // The passwords follow, each to its recipient, after the delay.
    let delivered_at = std::time::Instant::now();
    let zip_pw = own_mail_to(&sink, "password", "ken@partner.test", 1);
    let link_pw = own_mail_to(&sink, "password", "hanako@customer.test", 1);
    assert!(delivered_at.elapsed() >= Duration::from_millis(500), "not at once");
    assert_eq!((zip_pw.len(), link_pw.len()), (1, 1));
    let zip_password = secret_in(&zip_pw[0]);
    let link_password = secret_in(&link_pw[0]);
    assert_ne!(zip_password, link_password);
    assert!(zip_pw[0].text().contains("ZIP") || zip_pw[0].text().contains("zip"));

    // The zip opens with 7z and with pyzipper, Japanese names intact.
    let dir = g.dir.path().join("unzipped");
    std::fs::create_dir_all(&dir).unwrap();
    let zip_path = g.dir.path().join("attachments.zip");
    std::fs::write(&zip_path, &zip_bytes).unwrap();
    let out = std::process::Command::new("7z")
        .args(["x", "-y", &format!("-p{zip_password}"), &format!("-o{}", dir.display())])
        .arg(&zip_path)
        .output()
        .expect("7z (p7zip-full) is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    for (name, _, data) in files() {
        assert_eq!(sha(&std::fs::read(dir.join(name)).unwrap()), sha(&data), "{name}");
    }
    let out = std::process::Command::new("7z").args(["t", "-pwrong"]).arg(&zip_path).output().unwrap();
    assert!(!out.status.success(), "a wrong password opens nothing");
    let script = "import pyzipper,sys,hashlib\nz=pyzipper.AESZipFile(sys.argv[1])\nz.setpassword(sys.argv[2].encode())\n\
                  [print(n, hashlib.sha256(z.read(n)).hexdigest(), z.getinfo(n).flag_bits & 1) for n in z.namelist()]\n";
    let out =
        std::process::Command::new("python3").args(["-c", script]).arg(&zip_path).arg(&zip_password).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    for (name, _, data) in files() {
        assert!(listing.contains(&format!("{name} {} 1", sha(&data))), "encrypted, names intact: {listing}");
    }

    // The password link: refused without, opened with the mailed password.
    let (_, body) = page(&g, &path, "");
    assert!(body.contains("type=\"password\""), "{body}");
    let (code, head, _) = raw(&g, "POST", &format!("{path}/open"), &[FORM.into()], "password=guess");
    assert!(code == 200 && set_cookie(&head, "tomare_dl").is_none());
    let (code, head, _) =
        raw(&g, "POST", &format!("{path}/open"), &[FORM.into()], &format!("password={link_password}"));
    assert_eq!(code, 303, "{head}");
    let cookie = format!("Cookie: tomare_dl={}", set_cookie(&head, "tomare_dl").unwrap());
    let (code, _, bytes) = raw(&g, "GET", &format!("{path}/f/0"), &[cookie], "");
    assert_eq!((code, sha(&bytes)), (200, sha(&files()[0].2)));
}
