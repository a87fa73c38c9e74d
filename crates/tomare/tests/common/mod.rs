//! Helpers for end-to-end tests: the real `tomare` binary on loopback, an
//! in-test SMTP sink with programmable faults, and a tiny SMTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary, speaking English whatever the machine's locale (assertions
/// read its messages).
pub fn tomare() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tomare"));
    c.env("TOMARE_LANG", "en");
    c
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    cond()
}

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub smtp: String,
    pub web: String,
    /// Started under this umask (through `sh -c`), when set.
    pub umask: Option<u32>,
    child: Option<Child>,
}

impl Gateway {
    /// Starts `tomare serve` with `extra` appended to a config that listens
    /// on free loopback ports and keeps data in a fresh directory.
    pub fn start(extra: &str) -> Gateway {
        Self::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// [`Gateway::start`] under `umask` instead of the test's own.
    pub fn start_with_umask(extra: &str, umask: u32) -> Gateway {
        let mut g = Self::configure(tempfile::tempdir().unwrap(), extra);
        g.umask = Some(umask);
        g.spawn();
        g
    }

    /// [`Gateway::start`] with data in `dir/data` (which may exist already).
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> Gateway {
        let mut g = Self::configure(dir, extra);
        g.spawn();
        g
    }

    fn configure(dir: tempfile::TempDir, extra: &str) -> Gateway {
        let smtp = format!("127.0.0.1:{}", free_port());
        let web = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("tomare.toml");
        // Keys `extra` gives in [smtp], [web] or [storage] join those tables.
        let mut own: HashMap<&str, String> = HashMap::new();
        let mut rest = String::new();
        let mut section: Option<&str> = None;
        for line in extra.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                section = ["[smtp]", "[web]", "[storage]"].into_iter().find(|s| *s == t);
                if section.is_some() {
                    continue;
                }
            }
            match section {
                Some(s) => own.entry(s).or_default().push_str(&format!("{line}\n")),
                None => rest.push_str(&format!("{line}\n")),
            }
        }
        // The default reserve (1 GB) would refuse mail on a nearly full test disk.
        let storage = own.get("[storage]").cloned().unwrap_or_default();
        let reserve = if storage.contains("min_free") { "" } else { "min_free = \"10MB\"\n" };
        let text = format!(
            "[smtp]\nlisten = \"{smtp}\"\nhostname = \"gw.example.com\"\n{}[web]\nlisten = \"{web}\"\n{}\
             [storage]\ndata_dir = \"{}\"\n{reserve}{storage}{rest}\n",
            own.get("[smtp]").map_or("", |s| s.as_str()),
            own.get("[web]").map_or("", |s| s.as_str()),
            dir.path().join("data").display(),
        );
        std::fs::write(&config, text).unwrap();
        Gateway { dir, config, smtp, web, umask: None, child: None }
    }

    pub fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("serve.log")).unwrap();
        let mut command = match self.umask {
            None => {
                let mut c = tomare();
                c.args(["serve", "--config"]).arg(&self.config);
                c
            }
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask:03o}; exec \"$0\" serve --config \"$1\""))
                    .arg(env!("CARGO_BIN_EXE_tomare"))
                    .arg(&self.config)
                    .env("TOMARE_LANG", "en");
                c
            }
        };
        let child = command
            .env("TOMARE_LOG", "info,tomare=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tomare");
        self.child = Some(child);
        let smtp = self.smtp.clone();
        assert!(
            wait_until(Duration::from_secs(20), || TcpStream::connect(&smtp).is_ok()),
            "gateway did not start:\n{}",
            self.log()
        );
        // The pid file (for reloads) comes a moment after the listener.
        let pid_file = self.data_dir().join("tomare.pid");
        wait_until(Duration::from_secs(10), || pid_file.exists());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        c.wait().unwrap()
    }

    /// Waits for a process already sent SIGTERM to exit.
    pub fn terminate_wait(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        for _ in 0..600 {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("tomare did not exit after SIGTERM:\n{}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        tomare().args(args).arg("--config").arg(&self.config).output().unwrap()
    }

    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The queue row of message `id`.
    pub fn show(&self, id: &str) -> serde_json::Value {
        self.cli_json(&["queue", "show", id, "--json"])
    }

    pub fn state(&self, id: &str) -> String {
        self.show(id)["state"].as_str().unwrap().to_string()
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.http("GET", path)
    }

    /// One request with `headers` (`Name: value` each) and `body`: (status,
    /// head as sent, body).
    pub fn request(&self, method: &str, path: &str, headers: &[String], body: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.web).unwrap();
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (code, head.to_string(), body.to_string())
    }

    /// `tomare user ARGS`, with `stdin` as its standard input.
    pub fn user(&self, args: &[&str], stdin: &str) -> Output {
        let mut c = tomare()
            .arg("user")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// One request without a body (a POST of an empty form).
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.web).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (code, body)
    }
}

/// The one-time password the first start of `g` printed for `email`
/// (the line follows the banner: wait for it).
pub fn first_admin_password(g: &Gateway, email: &str) -> String {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = first_password(&g.log(), email);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no admin made:\n{}", g.log()))
}

/// The first admin's password once chosen (the one-time one must be replaced).
pub const ADMIN_PASSWORD: &str = "the admin's own password";

/// The value of `Set-Cookie: NAME=…` in a response head.
pub fn set_cookie(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie: "))
        .filter_map(|l| l[12..].split(';').next())
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// The hidden CSRF field of a page.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

/// Signs in through the form: the `Cookie:` header and the CSRF token.
/// Signed in with a one-time password (the first admin's), it chooses
/// [`ADMIN_PASSWORD`] first, as the web asks.
pub fn web_session(g: &Gateway, email: &str, password: &str) -> (String, String) {
    let form = "Content-Type: application/x-www-form-urlencoded".to_string();
    let enc = |s: &str| s.replace('%', "%25").replace('@', "%40").replace(' ', "+").replace('\'', "%27");
    let body = format!("email={}&password={}", enc(email), enc(password));
    let (code, head, _) = g.request("POST", "/login", std::slice::from_ref(&form), &body);
    assert_eq!(code, 303, "{head}");
    let mut cookie = format!("Cookie: tomare_session={}", set_cookie(&head, "tomare_session").unwrap());
    let (_, _, page) = g.request("GET", "/account", std::slice::from_ref(&cookie), "");
    let mut csrf = csrf_of(&page);
    if page.contains("ワンタイム") || page.contains("one-time") {
        let body = format!("csrf={csrf}&current={}&new={}", enc(password), enc(ADMIN_PASSWORD));
        let (code, head, page) = g.request("POST", "/account", &[cookie.clone(), form], &body);
        assert_eq!(code, 200, "{page}");
        cookie = format!("Cookie: tomare_session={}", set_cookie(&head, "tomare_session").unwrap());
        csrf = csrf_of(&page);
    }
    (cookie, csrf)
}

/// The one-time password printed for `email` in `log`.
pub fn first_password(log: &str, email: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(email) && (l.contains("one-time") || l.contains("ワンタイム")))?;
    let after = line.split_once("one-time password ").or_else(|| line.split_once("ワンタイムパスワード "))?.1;
    Some(after.split_whitespace().next()?.to_string())
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let prefix = format!("{}:", name.to_ascii_lowercase());
        text.split("\r\n\r\n")
            .next()?
            .split("\r\n")
            .find_map(|l| l.to_ascii_lowercase().starts_with(&prefix).then(|| l[prefix.len()..].trim().to_string()))
    }
}

/// What the sink answers. Counts go down as they are used.
#[derive(Default)]
pub struct Plan {
    /// Answer the end of DATA with 451 this many times.
    pub temp_fail_data: usize,
    /// RCPT TO answered with 550 for these addresses.
    pub reject_rcpt: Vec<String>,
    /// Pause before answering the end of DATA.
    pub data_delay: Duration,
}

/// An SMTP server in the test process, recording what it receives.
pub struct Sink {
    pub port: u16,
    pub messages: Arc<Mutex<Vec<Received>>>,
    /// Every command line as it arrived, without its CRLF (DATA excluded).
    pub commands: Arc<Mutex<Vec<Vec<u8>>>>,
    pub plan: Arc<Mutex<Plan>>,
    pub connections: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    pub fn start() -> Sink {
        Self::start_on(0)
    }

    pub fn start_on(port: u16) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = Sink {
            port,
            messages: Arc::default(),
            commands: Arc::default(),
            plan: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        };
        let (messages, plan, stop, conns) =
            (sink.messages.clone(), sink.plan.clone(), sink.stop.clone(), sink.connections.clone());
        let commands = sink.commands.clone();
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        *conns.lock().unwrap() += 1;
                        let (messages, plan, stop) = (messages.clone(), plan.clone(), stop.clone());
                        let commands = commands.clone();
                        thread::spawn(move || {
                            let _ = serve_sink(stream, messages, commands, plan, stop);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        sink
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// People's mail: what came with a sender (tomare's notices and DSNs
    /// come from `<>`).
    pub fn mail(&self) -> Vec<Received> {
        self.messages().into_iter().filter(|m| !m.mail_from.is_empty()).collect()
    }

    pub fn count_mail(&self) -> usize {
        self.mail().len()
    }

    /// tomare's notices of `kind` (`held`, `awaiting-approval`,
    /// `approval-request`, `rejected`, `denied`, `approved`, `cancelled`,
    /// `released`), in the order they came.
    pub fn notices(&self, kind: &str) -> Vec<Received> {
        let tag = format!(".{kind}.");
        self.messages()
            .into_iter()
            .filter(|m| m.mail_from.is_empty() && m.header("Message-ID").is_some_and(|id| id.contains(&tag)))
            .collect()
    }

    /// The command lines received that start with `prefix`, as text.
    pub fn commands(&self, prefix: &str) -> Vec<String> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with(prefix.as_bytes()))
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_sink(
    stream: TcpStream,
    messages: Arc<Mutex<Vec<Received>>>,
    commands: Arc<Mutex<Vec<Vec<u8>>>>,
    plan: Arc<Mutex<Plan>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 sink ESMTP\r\n")?;
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let mut line = Vec::new();
    let read_line = |reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>| -> std::io::Result<bool> {
        line.clear();
        loop {
            match reader.read_until(b'\n', line) {
                Ok(0) => return Ok(false),
                Ok(_) if line.ends_with(b"\n") => return Ok(true),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    };
    while read_line(&mut reader, &mut line)? {
        commands.lock().unwrap().push(line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec());
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            out.write_all(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = addr(&cmd[10..]);
            rcpts.clear();
            out.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            let to = addr(&cmd[8..]);
            if plan.lock().unwrap().reject_rcpt.contains(&to) {
                out.write_all(b"550 5.1.1 no such user here\r\n")?;
            } else {
                rcpts.push(to);
                out.write_all(b"250 2.1.5 ok\r\n")?;
            }
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                out.write_all(b"554 5.5.1 no valid recipients\r\n")?;
                continue;
            }
            out.write_all(b"354 go\r\n")?;
            let mut data = Vec::new();
            loop {
                if !read_line(&mut reader, &mut line)? {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                let l = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
                data.extend_from_slice(l);
            }
            let (fail, delay) = {
                let mut p = plan.lock().unwrap();
                let fail = p.temp_fail_data > 0;
                if fail {
                    p.temp_fail_data -= 1;
                }
                (fail, p.data_delay)
            };
            thread::sleep(delay);
            if fail {
                out.write_all(b"451 4.3.0 try again later\r\n")?;
            } else {
                messages.lock().unwrap().push(Received { mail_from: from.clone(), rcpts: rcpts.clone(), data });
                out.write_all(b"250 2.0.0 queued\r\n")?;
            }
        } else if upper == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        } else {
            out.write_all(b"250 ok\r\n")?;
        }
    }
    Ok(())
}

fn addr(s: &str) -> String {
    let s = s.trim();
    let end = s.find('>').map(|i| i + 1).unwrap_or(s.len());
    s[..end].trim_start_matches('<').trim_end_matches('>').to_string()
}

/// Sends one message with a minimal SMTP client; returns the final reply
/// or the first error reply.
pub fn smtp_send(server: &str, from: &str, rcpts: &[&str], data: &str) -> Result<String, String> {
    let stream = TcpStream::connect(server).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut out = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut reply = || -> Result<String, String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!("connection closed after {all:?}"));
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(all.trim_end().to_string());
            }
        }
    };
    let expect = |r: String, code: &str| if r.starts_with(code) { Ok(r) } else { Err(r) };
    expect(reply()?, "220")?;
    let mut cmd = |line: String, code: &str, reply: &mut dyn FnMut() -> Result<String, String>| {
        out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        expect(reply()?, code)
    };
    cmd("EHLO test\r\n".into(), "250", &mut reply)?;
    let utf8 = if from.is_ascii() && rcpts.iter().all(|r| r.is_ascii()) { "" } else { " SMTPUTF8" };
    cmd(format!("MAIL FROM:<{from}>{utf8}\r\n"), "250", &mut reply)?;
    for r in rcpts {
        cmd(format!("RCPT TO:<{r}>\r\n"), "250", &mut reply)?;
    }
    cmd("DATA\r\n".into(), "354", &mut reply)?;
    let mut body = data.replace("\r\n.", "\r\n..");
    if body.starts_with('.') {
        body.insert(0, '.');
    }
    let last = cmd(format!("{body}\r\n.\r\n"), "250", &mut reply)?;
    let _ = cmd("QUIT\r\n".into(), "221", &mut reply);
    Ok(last)
}

/// The queue id in a `250 2.0.0 Ok: queued as ID` reply.
pub fn queued_id(reply: &str) -> String {
    reply.rsplit(' ').next().unwrap().trim().to_string()
}

pub fn message(subject: &str, message_id: &str) -> String {
    format!(
        "From: Taro <taro@example.com>\r\nTo: Hanako <hanako@customer.test>\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Sun, 29 Nov 2026 10:00:00 +0900\r\n\r\nHello.\r\n.leading dot\r\n"
    )
}

pub fn relay_to(port: u16, extra: &str) -> String {
    format!(
        "[delivery]\nmode = \"relay\"\nretry = [\"1s\"]\n{extra}\n[delivery.relay]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
    )
}

/// The files directly in `dir` (not its directories: the spool's `free/`).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect()).unwrap_or_default()
}

pub fn count_by<T: std::hash::Hash + Eq + Clone>(items: &[T]) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i.clone()).or_insert(0) += 1;
    }
    m
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// files: (cert, key).
pub fn write_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// A DNS server on loopback UDP answering from a fixed table, enough for
/// MX delivery: MX and A records, NXDOMAIN, empty answers.
pub struct Dns {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

#[derive(Clone)]
pub enum Rr {
    Mx(u16, &'static str),
    A([u8; 4]),
}

impl Dns {
    /// `zone`: (name, records); a name not listed is NXDOMAIN, a listed name
    /// without records of the asked type gets an empty answer.
    pub fn start(zone: Vec<(&'static str, Vec<Rr>)>) -> Dns {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = dns_answer(&buf[..n], &zone) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        Dns { addr, stop }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn dns_answer(query: &[u8], zone: &[(&'static str, Vec<Rr>)]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    while *query.get(i)? != 0 {
        let len = query[i] as usize;
        labels.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let question_end = i + 5;
    let name = labels.join(".");
    let records = zone.iter().find(|(n, _)| *n == name).map(|(_, r)| r);
    let answers: Vec<&Rr> = records
        .map(|r| r.iter().filter(|rr| matches!((rr, qtype), (Rr::Mx(..), 15) | (Rr::A(_), 1))).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    let rcode = if records.is_none() { 3 } else { 0 };
    out.extend_from_slice(&[0x81, 0x80 | rcode]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    for rr in answers {
        out.extend_from_slice(&[0xC0, 12]);
        let mut rdata = Vec::new();
        let rtype: u16 = match rr {
            Rr::Mx(pref, host) => {
                rdata.extend_from_slice(&pref.to_be_bytes());
                encode_name(host, &mut rdata);
                15
            }
            Rr::A(ip) => {
                rdata.extend_from_slice(ip);
                1
            }
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// The path (`/a/ACTION/TOKEN`) of the `action` link a notice's text
/// carries, for the web listener at `web`.
pub fn link_in(text: &str, web: &str, action: &str) -> String {
    let prefix = format!("http://{web}");
    let start = text.find(&format!("{prefix}/a/{action}/")).unwrap_or_else(|| panic!("no {action} link in: {text}"));
    text[start + prefix.len()..].split_whitespace().next().unwrap().to_string()
}
