//! The holes of issue 9, each through the real binary on loopback: quoted
//! addresses on the wire, DATA framing, file permissions, connection
//! slots, fail-closed holds, terminal escapes in the CLI, the free-space
//! reserve and /healthz.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const HOLD_NONE: &str = "[hold]\nexternal = \"0s\"\ninternal = \"0s\"\n";

/// A raw SMTP client: exact bytes out, whole replies in.
struct Raw {
    out: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(server: &str) -> Raw {
        Self::from_stream(TcpStream::connect(server).unwrap())
    }

    /// From a chosen loopback address (127.0.0.2 is another client).
    fn connect_from(local: &str, server: &str) -> Raw {
        let socket = bound::bind_connect(local, server);
        Self::from_stream(socket)
    }

    fn from_stream(s: TcpStream) -> Raw {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Raw { out: s.try_clone().unwrap(), reader: BufReader::new(s) }
    }

    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all.trim_end().to_string();
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let _ = self.out.write_all(bytes);
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

/// A TCP connection from a given local address, without a socket crate:
/// std binds only listeners, so the kernel picks the source unless we ask
/// `connect` through a bound socket. libc does that in a few lines.
mod bound {
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::FromRawFd;

    pub fn bind_connect(local: &str, server: &str) -> TcpStream {
        let local: std::net::Ipv4Addr = local.parse().unwrap();
        let server: SocketAddr = server.parse().unwrap();
        let SocketAddr::V4(server) = server else { panic!("IPv4 only") };
        let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
            sin_zero: [0; 8],
        };
        // SAFETY: plain socket calls on a descriptor we own; the address
        // structures outlive the calls.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let a = sockaddr(local, 0);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, &a as *const _ as *const libc::sockaddr, len), 0, "bind {local}");
            let s = sockaddr(*server.ip(), server.port());
            assert_eq!(libc::connect(fd, &s as *const _ as *const libc::sockaddr, len), 0, "connect {server}");
            TcpStream::from_raw_fd(fd)
        }
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn quoted_local_parts_reach_the_next_hop_quoted_and_attacks_are_refused() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    let mut c = Raw::connect(&g.smtp);
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client.example.com");
    // Issue 9's attack: a quoted '>' that a lax parser takes for the end of
    // the path, smuggling an address and a parameter to the next hop.
    let r = c.cmd(r#"MAIL FROM:<"spoof@evil.net> ENVID="@example.com>"#);
    assert!(r.starts_with("553"), "{r}");
    assert!(c.cmd("MAIL FROM:<taro@example.com>").starts_with("250"));
    let r = c.cmd(r#"RCPT TO:<"ceo@competitor.com> ORCPT=rfc822;"@example.com>"#);
    assert!(r.starts_with("553"), "{r}");
    // Legal quoted local parts pass, and go out in their canonical form.
    assert!(c.cmd(r#"RCPT TO:<"yamada taro"@customer.test>"#).starts_with("250"));
    assert!(c.cmd(r#"RCPT TO:<"a\"b"@customer.test>"#).starts_with("250"));
    assert!(c.cmd(r#"RCPT TO:<"hanako"@customer.test>"#).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("quoted", "q@x").as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(15), || sink.count() == 1), "{}", g.log());
    let mail = sink.commands("MAIL FROM:");
    assert!(mail.len() == 1 && mail[0].starts_with("MAIL FROM:<taro@example.com> SIZE="), "{mail:?}");
    assert_eq!(
        sink.commands("RCPT TO:"),
        [
            r#"RCPT TO:<"yamada taro"@customer.test>"#,
            r#"RCPT TO:<"a\"b"@customer.test>"#,
            "RCPT TO:<hanako@customer.test>"
        ],
        "quoted where needed, never bare text that could split the command"
    );
}

#[test]
fn only_crlf_dot_crlf_ends_data_on_the_wire() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    let mut c = Raw::connect(&g.smtp);
    c.reply();
    c.cmd("EHLO a");
    c.cmd("MAIL FROM:<taro@example.com>");
    c.cmd("RCPT TO:<hanako@customer.test>");
    assert!(c.cmd("DATA").starts_with("354"));
    // <CRLF>.<CR><CR><LF> used to end DATA and queue the second message.
    c.send(
        b"Subject: first\r\n\r\nbody\r\n.\r\r\nMAIL FROM:<taro@example.com>\r\nRCPT TO:<ceo@rival.test>\r\nDATA\r\n\
          Subject: smuggled\r\n\r\nsecond\r\n.\r\n",
    );
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok", "no second transaction was answered");
    let rows = g.cli_json(&["queue", "list", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 1, "one message queued: {rows}");
    assert!(wait_until(Duration::from_secs(15), || sink.count() == 1), "{}", g.log());
    let got = &sink.messages()[0];
    assert_eq!(got.rcpts, ["hanako@customer.test"]);
    assert!(got.text().contains("RCPT TO:<ceo@rival.test>\r\n"), "the smuggled lines stayed body text");
    assert_eq!(sink.commands("MAIL FROM:").len(), 1, "the next hop saw one transaction");
}

#[test]
fn the_data_directory_and_its_files_are_private_whatever_the_umask() {
    // Under umask 000, as a careless service manager might start it.
    let g = Gateway::start_with_umask(HOLD_NONE, 0o000);
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("p", "p@x")).unwrap());
    assert!(wait_until(Duration::from_secs(15), || g.state(&id) == "delivered"), "{}", g.log());
    let data = g.data_dir();
    assert!(wait_until(Duration::from_secs(10), || data.join("blobs").exists()), "archived");
    let mut files = Vec::new();
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files.push(p);
            }
        }
    }
    let names: Vec<String> =
        files.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    for must in
        ["tomare.db".to_string(), "archive.db".into(), "archive.key".into(), format!("{id}.eml"), format!("{id}.json")]
    {
        assert!(names.contains(&must), "{must} among {names:?}");
    }
}

#[test]
fn an_open_data_directory_is_tightened_at_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("spool")).unwrap();
    std::fs::write(data.join("spool/old.eml"), b"x").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("spool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut g = Gateway::start_in(dir, "");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("spool")), 0o700);
    let log = g.log();
    assert!(log.contains("could be read by other users (mode 0755)"), "{log}");
    g.terminate();
    // With allow_shared_permissions, an admin's choice stands.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    let text = std::fs::read_to_string(&g.config).unwrap();
    std::fs::write(&g.config, text.replace("[storage]\n", "[storage]\nallow_shared_permissions = true\n")).unwrap();
    g.spawn();
    assert_eq!(mode(&data), 0o750);
}

#[test]
fn outsiders_get_their_own_slots_and_a_cap_per_address() {
    // 127.0.0.2 is the trusted relay; 127.0.0.1 is an outsider.
    let g = Gateway::start(
        "[smtp]\nallowed_networks = [\"127.0.0.2/32\"]\nmax_connections = 10\nmax_outside_connections = 4\n\
         max_connections_per_ip = 2\npreauth_timeout = \"3s\"\n",
    );
    let smtp = g.smtp.clone();
    let mut outsiders: Vec<Raw> = Vec::new();
    for _ in 0..2 {
        let mut c = Raw::connect_from("127.0.0.1", &smtp);
        assert!(c.reply().starts_with("220"));
        outsiders.push(c);
    }
    let mut third = Raw::connect_from("127.0.0.1", &smtp);
    assert!(third.reply().starts_with("421 4.7.0"), "the third from one address is refused");
    let mut others: Vec<Raw> = Vec::new();
    for local in ["127.0.0.3", "127.0.0.4"] {
        let mut c = Raw::connect_from(local, &smtp);
        assert!(c.reply().starts_with("220"));
        others.push(c);
    }
    let mut fifth = Raw::connect_from("127.0.0.5", &smtp);
    assert!(fifth.reply().starts_with("421"), "outsiders together have 4 slots");
    // The trusted relay is not starved by them.
    for _ in 0..6 {
        let mut c = Raw::connect_from("127.0.0.2", &smtp);
        assert!(c.reply().starts_with("220"), "the allowed network keeps its own slots");
        assert!(c.cmd("EHLO relay").starts_with("250"));
    }
    // An outsider that does not authenticate is let go soon after the greeting.
    let started = std::time::Instant::now();
    let r = outsiders[0].reply();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(outsiders);
    drop(others);
    assert!(wait_until(Duration::from_secs(5), || {
        let mut c = Raw::connect_from("127.0.0.1", &smtp);
        c.reply().starts_with("220")
    }));
}

/// A message to outside with a zip whose text (社外秘 and a card number)
/// lies beyond the decompression limit.
fn zip_bomb_mail() -> String {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("a.zip");
    let script = format!(
        "import zipfile\nz = zipfile.ZipFile({:?}, 'w', zipfile.ZIP_DEFLATED)\n\
         z.writestr('memo.txt', ('x' * 200000) + '社外秘 4111 1111 1111 1111')\nz.close()\n",
        zip.display().to_string()
    );
    let out = std::process::Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&zip).unwrap();
    let b64 = base64_lines(&bytes);
    format!(
        "From: taro@example.com\r\nTo: partner@customer.test\r\nSubject: plan\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=a.zip\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}--b--\r\n"
    )
}

fn base64_lines(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in bytes.chunks(3).enumerate() {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out
}

#[test]
fn incomplete_inspection_to_outside_waits_for_a_person_never_a_timer() {
    // Even with the built-in pack off and a rule that only holds briefly.
    let g = Gateway::start(
        "[inspect]\nmax_decompressed = \"64KB\"\n[policy]\nbuiltin = false\n[org]\nadmins = [\"admin@example.com\"]\n\
         [[rule]]\nname = \"short-hold\"\nwhen = { external_recipients = { min = 1 } }\nthen = [{ hold = \"1s\" }]\n",
    );
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["partner@customer.test"], &zip_bomb_mail()).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) != "received"), "{}", g.log());
    std::thread::sleep(Duration::from_secs(3));
    let v = g.show(&id);
    assert_eq!(v["state"], "awaiting_approval", "{v}");
    assert_eq!(v["approval"]["on_timeout"], "reject", "a deadline can only refuse it: {}", v["approval"]);
    assert_eq!(v["facts"]["complete"], false);
    let fired: Vec<&str> =
        v["verdict"]["rules"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(fired.contains(&"inspection-incomplete"), "{fired:?}");
    // The same with the built-in pack.
    let g = Gateway::start("[inspect]\nmax_decompressed = \"64KB\"\n");
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["partner@customer.test"], &zip_bomb_mail()).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "awaiting_approval"), "{}", g.state(&id));
}

#[test]
fn values_from_mail_are_escaped_in_cli_output() {
    let g = Gateway::start("");
    // Subject: "Hi<ESC>]0;owned<BEL>" CR LF "Bcc: all@corp <CSI>2J <RLO>exe.pdf"
    // as an encoded word (CSI is the one-byte C1 escape, RLO a bidi override).
    let subject = "=?UTF-8?B?SGkbXTA7b3duZWQHDQpCY2M6IGFsbEBjb3JwIMKbMkog4oCuZXhlLnBkZg==?=";
    let mail = format!("From: taro@example.com\r\nTo: a@customer.test\r\nSubject: {subject}\r\n\r\nbody\r\n");
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &mail).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) != "received"));
    for args in [
        &["queue", "list"][..],
        &["queue", "show", &id],
        &["queue", "list", "--json"],
        &["queue", "show", &id, "--json"],
    ] {
        let out = g.cli(args);
        assert!(out.status.success(), "{args:?}");
        let text = &out.stdout;
        assert!(!text.contains(&0x1b) && !text.contains(&0x07), "{args:?}: raw control bytes");
        assert!(!text.contains(&b'\r'), "{args:?}: raw CR");
        let s = String::from_utf8_lossy(text);
        assert!(!s.lines().any(|l| l.starts_with("Bcc:")), "{args:?}: a forged line\n{s}");
        assert!(!s.contains('\u{9b}') && !s.contains('\u{202e}'), "{args:?}: C1 or bidi control\n{s}");
    }
    let show = String::from_utf8(g.cli(&["queue", "show", &id]).stdout).unwrap();
    assert!(show.contains(r"Hi\x1b]0;owned\x07\r\nBcc: all@corp \x9b2J \u{202e}exe.pdf"), "{show}");
}

#[test]
fn below_the_free_space_reserve_mail_waits_and_health_says_why() {
    let g = Gateway::start("[storage]\nmin_free = \"100000TB\"\n");
    let r = smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("full", "f@x")).unwrap_err();
    assert!(r.starts_with("452 4.3.1"), "{r}");
    let (code, body) = g.http_get("/healthz");
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "degraded");
    assert!(v["problems"].as_array().unwrap().iter().any(|p| p == "disk"), "{v}");
    let (_, metrics) = g.http_get("/metrics");
    assert!(metrics.contains("tomare_disk_reserve_bytes 100000000000000000"), "{metrics}");
    // With room, the same server state is healthy.
    let g = Gateway::start("[storage]\nmin_free = \"1%\"\n");
    assert!(smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &message("ok", "o@x")).is_ok());
    let (code, body) = g.http_get("/healthz");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn send_as_grants_are_kept_and_listed() {
    let g = Gateway::start("");
    let add = |args: &[&str]| {
        let mut c = tomare()
            .args(["user", "add"])
            .args(args)
            .arg("--config")
            .arg(&g.config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(b"pw\n").unwrap();
        c.wait_with_output().unwrap()
    };
    assert!(add(&["app@example.com", "--send-as", "@example.com", "--send-as", "team@example.com"]).status.success());
    let out = add(&["x@example.com", "--send-as", "boss@rival.test"]);
    assert!(!out.status.success(), "a grant outside the org is refused");
    let list = String::from_utf8(g.cli(&["user", "list"]).stdout).unwrap();
    let line = list.lines().find(|l| l.starts_with("app@example.com ")).unwrap_or_else(|| panic!("{list}"));
    assert!(line.ends_with("(send-as: @example.com, team@example.com)"), "{list}");
}

#[test]
fn a_big_message_is_relayed_from_its_file_byte_for_byte() {
    let sink = Sink::start();
    let g = Gateway::start(&format!("{}{HOLD_NONE}", relay_to(sink.port, "")));
    // Over the spool's 1 MiB (written as it arrives) and delivery's 256 KB
    // (sent from the file in pieces), with dot lines everywhere, also where
    // the pieces meet.
    let mut body = String::new();
    let mut n = 0;
    while body.len() < 3 << 20 {
        body.push_str(&format!(".line {n} 見積\r\n{}\r\n", "x".repeat(n % 700)));
        n += 1;
    }
    let mail = format!("From: taro@example.com\r\nTo: a@customer.test\r\nSubject: big\r\n\r\n{body}");
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["a@customer.test"], &mail).unwrap());
    assert!(wait_until(Duration::from_secs(30), || g.state(&id) == "delivered"), "{}", g.log());
    let text = sink.messages()[0].text();
    // After our Received line, the message as sent (smtp_send ends it with
    // one more line break).
    let sent = format!("{mail}\r\n");
    assert!(text.ends_with(&sent), "the message arrived changed ({} bytes for {})", text.len(), sent.len());
    assert_eq!(text.len() - sent.len(), text.find("From: taro").unwrap(), "nothing but the Received line before it");
}
