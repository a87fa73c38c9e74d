//! Whole SMTP sessions in memory: the real session code over a duplex pipe.

use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tomare_config::Config;
use tomare_model::{Envelope, Metrics};
use tomare_smtp::{Authenticator, Incoming, Login, MessageSink, Session, SessionConfig};

#[derive(Default)]
struct Sink {
    got: Arc<Got>,
    fail: bool,
}

#[derive(Default)]
struct Got {
    messages: Mutex<Vec<(Envelope, Vec<u8>)>>,
    /// Messages that arrived streamed (through `begin`), and the biggest
    /// chunk any of them was written in.
    streamed: Mutex<(usize, usize)>,
}

impl Got {
    fn push(&self, envelope: Envelope, data: Vec<u8>) -> String {
        let mut m = self.messages.lock().unwrap();
        m.push((envelope, data));
        format!("ID{}", m.len())
    }
}

#[async_trait]
impl MessageSink for Sink {
    async fn accept(&self, envelope: Envelope, data: Vec<u8>) -> Result<String, String> {
        if self.fail {
            return Err("disk full".into());
        }
        Ok(self.got.push(envelope, data))
    }

    async fn begin(&self) -> Result<Box<dyn Incoming>, String> {
        if self.fail {
            return Err("disk full".into());
        }
        self.got.streamed.lock().unwrap().0 += 1;
        Ok(Box::new(Streamed { got: self.got.clone(), data: Vec::new() }))
    }
}

struct Streamed {
    got: Arc<Got>,
    data: Vec<u8>,
}

#[async_trait]
impl Incoming for Streamed {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), String> {
        let mut s = self.got.streamed.lock().unwrap();
        s.1 = s.1.max(chunk.len());
        drop(s);
        self.data.extend_from_slice(&chunk);
        Ok(())
    }

    async fn finish(self: Box<Self>, envelope: Envelope) -> Result<String, String> {
        Ok(self.got.push(envelope, self.data))
    }
}

/// taro (who may also send as team@) and hanako.
struct Users;

#[async_trait]
impl Authenticator for Users {
    async fn verify(&self, user: &str, password: &str) -> Option<Login> {
        let address = |a: &str| a.parse::<tomare_model::SendAs>().unwrap();
        match (user, password) {
            ("taro@example.com", "correct horse") => Some(Login {
                user: user.into(),
                send_as: vec![address("taro@example.com"), address("team@example.com")],
            }),
            ("hanako@example.com", "battery staple") => {
                Some(Login { user: user.into(), send_as: vec![address("hanako@example.com")] })
            }
            _ => None,
        }
    }
}

struct Harness {
    sink: Arc<Sink>,
    cfg: Arc<SessionConfig>,
    metrics: Arc<Metrics>,
    peer: IpAddr,
}

impl Harness {
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// A harness whose config `change` adjusts first.
    fn with(change: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        config.smtp.max_message_size = tomare_config::ByteSize(2000);
        config.smtp.max_recipients = 3;
        config.smtp.max_errors = 10;
        change(&mut config);
        Harness {
            sink: Arc::new(Sink::default()),
            cfg: Arc::new(SessionConfig::new(&config, "gw.example.com".into(), None)),
            metrics: Arc::new(Metrics::default()),
            peer: "127.0.0.1".parse().unwrap(),
        }
    }

    fn cfg(&mut self) -> &mut SessionConfig {
        Arc::get_mut(&mut self.cfg).expect("configured before the first session")
    }

    fn with_tls(mut self) -> Self {
        self.cfg().tls = Some(tls_acceptor());
        self
    }

    fn from(mut self, peer: &str) -> Self {
        self.peer = peer.parse().unwrap();
        self
    }

    fn failing_sink(mut self) -> Self {
        self.sink = Arc::new(Sink { fail: true, ..Default::default() });
        self
    }

    /// Starts the session; returns the client end with the greeting read.
    async fn connect(&self) -> Client<DuplexStream> {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (_tx, rx) = watch::channel(false);
        let session =
            Session::new(self.cfg.clone(), self.sink.clone(), Arc::new(Users), self.metrics.clone(), self.peer, rx);
        tokio::spawn(async move {
            let _keep_shutdown_sender = _tx;
            let _ = session.run(server).await;
        });
        let mut c = Client { stream: client, buf: Vec::new() };
        assert!(c.reply().await.starts_with("220 gw.example.com"));
        c
    }

    fn messages(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.sink.got.messages.lock().unwrap().clone()
    }
}

fn rcpts(e: &Envelope) -> Vec<String> {
    e.rcpt_to.iter().map(ToString::to_string).collect()
}

struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Writes `data`; a server that has closed the connection shows in
    /// the next [`Client::reply`].
    async fn send(&mut self, data: &str) {
        let _ = self.stream.write_all(data.as_bytes()).await;
    }

    /// Reads one whole (possibly multi-line) reply; "" on EOF.
    async fn reply(&mut self) -> String {
        let mut lines = String::new();
        loop {
            while let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                lines.push_str(&line);
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    return lines.trim_end().to_string();
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("server answered in time")
                .unwrap_or(0);
            if n == 0 {
                return lines.trim_end().to_string();
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let (cert, key) = test_cert();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn test_cert() -> (rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>) {
    static CERT: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    let (c, k) = CERT.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (ck.cert.der().to_vec(), ck.signing_key.serialize_der())
    });
    (rustls::pki_types::CertificateDer::from(c.clone()), rustls::pki_types::PrivateKeyDer::try_from(k.clone()).unwrap())
}

/// The client side of the TLS handshake, trusting the test certificate.
async fn handshake(stream: DuplexStream) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(test_cert().0).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await.expect("TLS handshake");
    Client { stream, buf: Vec::new() }
}

async fn starttls(mut c: Client<DuplexStream>) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
    assert!(c.cmd("STARTTLS").await.starts_with("220 2.0.0"));
    handshake(c.stream).await
}

const MESSAGE: &str =
    "From: taro@example.com\r\nTo: hanako@customer.test\r\nSubject: hi\r\n\r\nHello.\r\n..dot-stuffed line\r\n";

#[tokio::test]
async fn a_message_goes_through_and_is_stored_unchanged() {
    let h = Harness::new();
    let mut c = h.connect().await;
    let ehlo = c.cmd("EHLO client.example.com").await;
    for ext in ["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 2000", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.contains(ext), "{ext} missing in {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "no TLS configured: {ehlo}");
    assert!(c.cmd("MAIL FROM:<taro@example.com>").await.starts_with("250 2.1.0"));
    assert!(c.cmd("RCPT TO:<hanako@customer.test>").await.starts_with("250 2.1.5"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(MESSAGE).await;
    let r = c.cmd(".").await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as ID1"), "{r}");
    assert!(c.cmd("QUIT").await.starts_with("221"));

    let m = h.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].0.mail_from.to_string(), "taro@example.com");
    assert_eq!(rcpts(&m[0].0), vec!["hanako@customer.test"]);
    assert_eq!(m[0].0.helo, "client.example.com");
    let data = String::from_utf8(m[0].1.clone()).unwrap();
    assert!(
        data.starts_with("Received: from client.example.com ([127.0.0.1])\r\n\tby gw.example.com (tomare) with ESMTP;")
    );
    let body = &data[data.find("From: ").unwrap()..];
    assert_eq!(body, MESSAGE.replace("..dot", ".dot"), "dot-unstuffed, otherwise unchanged");
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let h = Harness::new();
    let mut c = h.connect().await;
    c.send("EHLO a\r\nMAIL FROM:<taro@example.com>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n").await;
    assert!(c.reply().await.contains("PIPELINING"));
    assert!(c.reply().await.starts_with("250 2.1.0"));
    assert!(c.reply().await.starts_with("250 2.1.5"));
    assert!(c.reply().await.starts_with("250 2.1.5"));
    assert!(c.reply().await.starts_with("354"));
    c.send("Subject: one\r\n\r\n1\r\n.\r\nMAIL FROM:<taro@example.com>\r\nRCPT TO:<c@z.test>\r\nDATA\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    assert!(c.reply().await.starts_with("250 2.1.0"));
    assert!(c.reply().await.starts_with("250 2.1.5"));
    assert!(c.reply().await.starts_with("354"));
    c.send("Subject: two\r\n\r\n2\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    let m = h.messages();
    assert_eq!(m.len(), 2);
    assert_eq!(rcpts(&m[0].0), vec!["a@x.test", "b@y.test"]);
    assert_eq!(rcpts(&m[1].0), vec!["c@z.test"]);
}

#[tokio::test]
async fn never_an_open_relay() {
    // A client outside allowed_networks, without AUTH.
    let h = Harness::new().from("203.0.113.9");
    let mut c = h.connect().await;
    c.cmd("EHLO outsider").await;
    let r = c.cmd("MAIL FROM:<taro@example.com>").await;
    assert!(r.starts_with("554 5.7.1"), "{r}");
    assert!(c.cmd("RCPT TO:<victim@x.test>").await.starts_with("503"));

    // From an allowed network, but a sender outside the org's domains.
    let h = Harness::new();
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    let r = c.cmd("MAIL FROM:<spammer@evil.test>").await;
    assert!(r.starts_with("550 5.7.1"), "{r}");
    assert!(c.cmd("MAIL FROM:<x@badexample.com>").await.starts_with("550 5.7.1"), "look-alike suffix is not internal");
    assert!(c.cmd("MAIL FROM:<>").await.starts_with("550 5.7.1"));
    assert!(c.cmd("MAIL FROM:<y@sales.example.com>").await.starts_with("250"), "subdomain is internal");
    assert!(h.messages().is_empty());
}

#[tokio::test]
async fn command_order_and_limits() {
    let h = Harness::new();
    let mut c = h.connect().await;
    assert!(c.cmd("MAIL FROM:<taro@example.com>").await.starts_with("503"), "HELO first");
    c.cmd("EHLO a").await;
    assert!(c.cmd("RCPT TO:<a@x.test>").await.starts_with("503"));
    assert!(c.cmd("DATA").await.starts_with("503"));
    assert!(c.cmd("MAIL FROM:<taro@example.com> SIZE=999999").await.starts_with("552 5.3.4"));
    c.cmd("MAIL FROM:<taro@example.com>").await;
    assert!(c.cmd("MAIL FROM:<taro@example.com>").await.starts_with("503"), "nested MAIL");
    for i in 0..3 {
        assert!(c.cmd(&format!("RCPT TO:<r{i}@x.test>")).await.starts_with("250"));
    }
    assert!(c.cmd("RCPT TO:<r4@x.test>").await.starts_with("452 4.5.3"));
    let long = format!("NOOP {}", "x".repeat(5000));
    let r = c.cmd(&long).await;
    assert!(r.starts_with("500 5.5.2"), "command line too long: {r}");
    assert!(c.cmd("NOOP").await.starts_with("250"), "session survives a long line");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(&format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(3000))).await;
    assert!(c.cmd(".").await.starts_with("552 5.3.4"), "message over max_message_size");
    assert!(h.messages().is_empty());
    // The next transaction works.
    c.cmd("MAIL FROM:<taro@example.com>").await;
    c.cmd("RCPT TO:<a@x.test>").await;
    c.cmd("DATA").await;
    assert!(c.cmd("small\r\n.").await.starts_with("250"));
    assert_eq!(h.messages().len(), 1);
}

#[tokio::test]
async fn smuggled_end_of_data_stays_inside_the_message() {
    let h = Harness::new();
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    c.cmd("MAIL FROM:<taro@example.com>").await;
    c.cmd("RCPT TO:<a@x.test>").await;
    c.cmd("DATA").await;
    // Bare-LF and bare-CR "end of data" followed by a smuggled transaction.
    c.send(
        "Subject: s\r\n\r\nbody\n.\nMAIL FROM:<ceo@example.com>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nforged\r.\rmore\r\n",
    )
    .await;
    let r = c.cmd(".").await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let m = h.messages();
    assert_eq!(m.len(), 1, "exactly one message: nothing smuggled");
    let data = String::from_utf8(m[0].1.clone()).unwrap();
    assert!(data.contains("body\r\n.\r\nMAIL FROM:<ceo@example.com>\r\n"), "{data:?}");
    assert!(data.contains("forged\r\n.\r\nmore\r\n"), "bare CR normalised: {data:?}");
    assert!(!data.replace("\r\n", "").contains(['\r', '\n']), "only CRLF line ends remain");
}

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let h = Harness::new();
    let mut c = h.connect().await;
    for _ in 0..9 {
        assert!(c.cmd("BOGUS").await.starts_with("500"));
    }
    assert!(c.cmd("BOGUS").await.starts_with("500"));
    assert!(c.reply().await.starts_with("421 4.7.0"), "the tenth error ends the session");
    assert_eq!(c.reply().await, "", "connection closed");
}

#[tokio::test]
async fn storage_failure_is_a_temporary_error() {
    let h = Harness::new().failing_sink();
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    c.cmd("MAIL FROM:<taro@example.com>").await;
    c.cmd("RCPT TO:<a@x.test>").await;
    c.cmd("DATA").await;
    assert!(c.cmd("x\r\n.").await.starts_with("451 4.3.0"));
}

#[tokio::test]
async fn auth_only_after_starttls_and_it_allows_relay() {
    let h = Harness::new().with_tls().from("198.51.100.7");
    let mut c = h.connect().await;
    let ehlo = c.cmd("EHLO roaming").await;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
    let r = c.cmd("AUTH PLAIN AHRhcm9AZXhhbXBsZS5jb20AY29ycmVjdCBob3JzZQ==").await;
    assert!(r.starts_with("538 5.7.11"), "no AUTH in the clear: {r}");
    assert!(c.cmd("MAIL FROM:<taro@example.com>").await.starts_with("530 5.7.0"));

    // Commands pipelined behind STARTTLS must not run inside TLS.
    c.send("STARTTLS\r\nMAIL FROM:<taro@example.com>\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("220 2.0.0"), "{r}");
    let mut c = handshake(c.stream).await;
    let ehlo = c.cmd("EHLO roaming").await;
    assert!(ehlo.starts_with("250-gw.example.com"), "first reply in TLS is EHLO's: {ehlo}");
    assert!(ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<taro@example.com>").await.starts_with("530"), "still needs AUTH");

    // Wrong password, then AUTH LOGIN with the right one.
    let r = c.cmd("AUTH PLAIN AHRhcm9AZXhhbXBsZS5jb20Ad3Jvbmc=").await;
    assert!(r.starts_with("535 5.7.8"), "{r}");
    assert!(c.cmd("AUTH LOGIN").await.starts_with("334 VXNlcm5hbWU6"));
    assert!(c.cmd("dGFyb0BleGFtcGxlLmNvbQ==").await.starts_with("334 UGFzc3dvcmQ6"));
    assert!(c.cmd("Y29ycmVjdCBob3JzZQ==").await.starts_with("235 2.7.0"));
    assert!(c.cmd("MAIL FROM:<taro@example.com>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<partner@x.test>").await.starts_with("250"));
    c.cmd("DATA").await;
    assert!(c.cmd("Subject: via auth\r\n\r\nok\r\n.").await.starts_with("250"));
    let m = h.messages();
    assert_eq!(m[0].0.auth_user.as_deref(), Some("taro@example.com"));
    assert!(String::from_utf8_lossy(&m[0].1).contains("with ESMTPSA;"));
}

#[tokio::test]
async fn auth_plain_with_separate_line_and_abort() {
    let h = Harness::new().with_tls();
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    let mut c = starttls(c).await;
    c.cmd("EHLO a").await;
    assert!(c.cmd("AUTH PLAIN").await.starts_with("334"));
    assert!(c.cmd("*").await.starts_with("501 5.0.0"));
    assert!(c.cmd("AUTH PLAIN").await.starts_with("334"));
    assert!(c.cmd("not base64!").await.starts_with("501 5.5.2"));
    assert!(c.cmd("AUTH CRAM-MD5").await.starts_with("504"));
    assert!(c.cmd("AUTH PLAIN").await.starts_with("334"));
    assert!(c.cmd("AHRhcm9AZXhhbXBsZS5jb20AY29ycmVjdCBob3JzZQ==").await.starts_with("235"));
    assert!(c.cmd("AUTH PLAIN").await.starts_with("503"), "only once");
}

#[tokio::test]
async fn smtputf8_addresses_are_accepted() {
    let h = Harness::new();
    let mut c = h.connect().await;
    assert!(c.cmd("EHLO a").await.contains("SMTPUTF8"));
    assert!(c.cmd("MAIL FROM:<taro@example.com> SMTPUTF8 BODY=8BITMIME").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<山田@例え.jp>").await.starts_with("250"));
    c.cmd("DATA").await;
    assert!(c.cmd("Subject: 件名\r\n\r\n本文\r\n.").await.starts_with("250"));
    let m = h.messages();
    assert_eq!(rcpts(&m[0].0), vec!["山田@例え.jp"]);
    assert!(String::from_utf8(m[0].1.clone()).unwrap().contains("Subject: 件名\r\n\r\n本文\r\n"));
}

/// Random commands, junk and binary, in random chunks: the session answers
/// and ends cleanly every time, never panics.
#[tokio::test]
async fn random_input_never_panics_a_session() {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 16] = [
        b"EHLO x\r\n",
        b"HELO y\r\n",
        b"MAIL FROM:<taro@example.com>\r\n",
        b"MAIL FROM:<a@b> SIZE=99999999999\r\n",
        b"RCPT TO:<a@x.test>\r\n",
        b"DATA\r\n",
        b"\r\n.\r\n",
        b"\n.\n",
        b"RSET\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN x\r\n",
        b"*\r\n",
        b"BDAT 10 LAST\r\n",
        b"NOOP \xff\xfe\x00\r\n",
        b"STARTTLS\r\n",
        b"..\r\n",
    ];
    let h = Harness::new().with_tls();
    let mut config = Config::default();
    config.smtp.max_message_size = tomare_config::ByteSize(2000);
    config.smtp.max_recipients = 3;
    config.smtp.max_errors = 1000;
    config.smtp.idle_timeout = tomare_config::Duration::secs(5);
    let cfg = Arc::new(SessionConfig::new(&config, "gw".into(), Some(tls_acceptor())));
    for _ in 0..150 {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_tx, rx) = watch::channel(false);
        let session =
            Session::new(cfg.clone(), h.sink.clone(), Arc::new(Users), Arc::new(Metrics::default()), h.peer, rx);
        let task = tokio::spawn(session.run(server));
        let mut input = Vec::new();
        for _ in 0..(next() % 40) {
            if next() % 4 == 0 {
                input.extend((0..next() % 300).map(|_| next() as u8));
            } else {
                input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
        }
        let (mut rd, mut wr) = tokio::io::split(client);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut sink)).await;
        });
        for chunk in input.chunks(1 + (next() % 50) as usize) {
            if wr.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        drop(wr);
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await.expect("session ended");
        assert!(ended.is_ok(), "session task panicked");
        let _ = reader.await;
    }
}

/// Sends `MAIL`, one `RCPT` and `DATA`, answered 250, 250, 354.
async fn open_data<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Client<S>, from: &str) {
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@x.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
}

#[tokio::test]
async fn quoted_local_parts_are_kept_and_cannot_hide_a_path() {
    let h = Harness::new();
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    // Issue 9's attack: the quoted '>' would end the path for a lax parser.
    let r = c.cmd(r#"MAIL FROM:<"spoof@evil.net> ENVID="@example.com>"#).await;
    assert!(r.starts_with("553 5.1.7"), "{r}");
    assert!(c.cmd("MAIL FROM:<taro@example.com>").await.starts_with("250"));
    let r = c.cmd(r#"RCPT TO:<"ceo@competitor.com> ORCPT=rfc822;"@example.com>"#).await;
    assert!(r.starts_with("553 5.1.3"), "{r}");
    for bad in ["RCPT TO:<a\0b@x.test>", "RCPT TO:<a b@x.test>", "RCPT TO:<a<b@x.test>", "RCPT TO:<\"a\rb\"@x.test>"] {
        let r = c.cmd(bad).await;
        assert!(r.starts_with("501") || r.starts_with("553"), "{bad:?}: {r}");
    }
    // A legal quoted local part is kept whole, its domain apart.
    let r = c.cmd(r#"RCPT TO:<"boss@rival.test"@example.com>"#).await;
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd(r#"RCPT TO:<"yamada taro"@customer.test>"#).await.starts_with("250"));
    c.cmd("DATA").await;
    assert!(c.cmd("Subject: q\r\n\r\nx\r\n.").await.starts_with("250"));
    let m = h.messages();
    let r = &m[0].0.rcpt_to;
    assert_eq!((r[0].local(), r[0].domain()), ("boss@rival.test", "example.com"));
    assert_eq!(r[1].to_string(), r#""yamada taro"@customer.test"#);
}

#[tokio::test]
async fn every_dot_variant_but_crlf_dot_crlf_is_message_text() {
    for variant in [".\r\r\n", ".\r\r\r\n", ".\n", "\n.\r\n", ".\r", " .\r\n", ". \r\n", ".x\r\n"] {
        let h = Harness::new();
        let mut c = h.connect().await;
        c.cmd("EHLO a").await;
        open_data(&mut c, "taro@example.com").await;
        // After the variant, a whole second transaction; then the real end.
        c.send(&format!(
            "Subject: v\r\n\r\nfirst\r\n{variant}MAIL FROM:<taro@example.com>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nsecond\r\n"
        ))
        .await;
        let r = c.cmd(".").await;
        assert!(r.starts_with("250 2.0.0"), "{variant:?}: {r}");
        assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok", "{variant:?}: one reply for one message");
        let m = h.messages();
        assert_eq!(m.len(), 1, "{variant:?} ended the data");
        let data = String::from_utf8(m[0].1.clone()).unwrap();
        assert!(data.contains("MAIL FROM:<taro@example.com>\r\nRCPT TO:<b@y.test>\r\n"), "{variant:?}: {data:?}");
        assert_eq!(rcpts(&m[0].0), vec!["a@x.test"], "{variant:?}");
    }
}

#[tokio::test]
async fn a_trickle_of_bytes_does_not_keep_a_command_wait_open() {
    let h = Harness::with(|c| c.smtp.idle_timeout = tomare_config::Duration(Duration::from_millis(400)));
    let mut c = h.connect().await;
    let started = Instant::now();
    // One byte every 100 ms of a command that never ends.
    let mut reply = String::new();
    for b in "NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".bytes() {
        let written = c.stream.write_all(&[b]).await.is_ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !written || started.elapsed() > Duration::from_millis(600) {
            reply = c.reply().await;
            break;
        }
    }
    assert!(reply.starts_with("421 4.4.2 Idle timeout"), "{reply}");
}

#[tokio::test]
async fn sessions_end_at_their_deadline_however_busy() {
    let h = Harness::with(|c| c.smtp.session_timeout = tomare_config::Duration(Duration::from_millis(500)));
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(3) {
        last = c.cmd("NOOP").await;
        if !last.starts_with("250") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.starts_with("421 4.4.2 Session time limit"), "{last}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn data_has_a_deadline_and_a_minimum_rate() {
    // Whole-DATA deadline.
    let h = Harness::with(|c| c.smtp.data_timeout = tomare_config::Duration(Duration::from_millis(500)));
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    open_data(&mut c, "taro@example.com").await;
    let started = Instant::now();
    let mut reply = String::new();
    while started.elapsed() < Duration::from_secs(3) {
        let written = c.stream.write_all(b"a line of the body\r\n").await.is_ok();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !written || started.elapsed() > Duration::from_millis(700) {
            reply = c.reply().await;
            break;
        }
    }
    assert!(reply.starts_with("421 4.4.2 DATA took too long"), "{reply}");
    assert!(h.messages().is_empty(), "nothing accepted, the client keeps its copy");

    // Too slow once the grace is over.
    let mut h = Harness::with(|c| c.smtp.min_data_rate = tomare_config::ByteSize(10_000));
    h.cfg().rate_grace = Duration::from_millis(300);
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    open_data(&mut c, "taro@example.com").await;
    let mut reply = String::new();
    for _ in 0..40 {
        let written = c.stream.write_all(b"slow\r\n").await.is_ok();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !written {
            reply = c.reply().await;
            break;
        }
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), c.reply()).await {
            reply = r;
            break;
        }
    }
    assert!(reply.starts_with("421 4.4.2 DATA too slow"), "{reply}");
}

#[tokio::test]
async fn outsiders_must_authenticate_soon() {
    let h = Harness::with(|c| c.smtp.preauth_timeout = tomare_config::Duration(Duration::from_millis(400)))
        .with_tls()
        .from("203.0.113.50");
    let mut c = h.connect().await;
    c.cmd("EHLO outsider").await;
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(3) {
        last = c.cmd("NOOP").await;
        if !last.starts_with("250") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.starts_with("421 4.7.0 Authentication required"), "{last}");
    // Clients inside allowed_networks are not held to it.
    let h = Harness::with(|c| c.smtp.preauth_timeout = tomare_config::Duration(Duration::from_millis(200)));
    let mut c = h.connect().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.cmd("NOOP").await.starts_with("250"));
}

#[tokio::test]
async fn big_messages_are_streamed_to_the_sink_not_kept() {
    let h = Harness::with(|c| c.smtp.max_message_size = tomare_config::ByteSize(20_000_000));
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    open_data(&mut c, "taro@example.com").await;
    let line = format!("{}\r\n", "0123456789abcdef".repeat(4));
    let mut body = String::from("Subject: big\r\n\r\n");
    while body.len() < 5_000_000 {
        body.push_str(&line);
    }
    for chunk in body.as_bytes().chunks(64 * 1024) {
        c.stream.write_all(chunk).await.unwrap();
    }
    let r = c.cmd(".").await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let (streamed, biggest) = *h.sink.got.streamed.lock().unwrap();
    assert_eq!(streamed, 1, "handed over in chunks");
    assert!(biggest < 2 << 20, "chunks stay small: {biggest}");
    let m = h.messages();
    let data = &m[0].1;
    assert!(data.ends_with(body.as_bytes()), "the message arrives whole");
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_when_it_ends() {
    let h = Harness::with(|c| c.smtp.max_message_size = tomare_config::ByteSize(3_000_000));
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    open_data(&mut c, "taro@example.com").await;
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..64 {
        c.stream.write_all(&chunk).await.unwrap();
        c.stream.write_all(b"\r\n").await.unwrap();
    }
    assert!(c.cmd(".").await.starts_with("552 5.3.4"));
    assert!(h.messages().is_empty());
    assert!(c.cmd("NOOP").await.starts_with("250"), "the session goes on");
}

async fn logged_in(h: &Harness, plain: &str) -> (Client<tokio_rustls::client::TlsStream<DuplexStream>>, String) {
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    let mut c = starttls(c).await;
    c.cmd("EHLO a").await;
    let r = c.cmd(&format!("AUTH PLAIN {plain}")).await;
    (c, r)
}

/// `\0user\0password`, base64.
fn plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[tokio::test]
async fn guessing_passwords_locks_the_account_even_in_parallel() {
    let h = Arc::new(Harness::new().with_tls().from("198.51.100.20"));
    // 36 wrong guesses at once, from one address.
    let mut tasks = Vec::new();
    for i in 0..36 {
        let h = h.clone();
        tasks
            .push(tokio::spawn(async move { logged_in(&h, &plain("taro@example.com", &format!("guess{i}"))).await.1 }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let checked = replies.iter().filter(|r| r.starts_with("535")).count();
    assert!(checked <= 5, "at most auth_max_failures guesses were checked: {replies:?}");
    assert!(replies.iter().all(|r| r.starts_with("535") || r.starts_with("454 4.7.0")), "{replies:?}");
    // Now even the right password is refused, for a while.
    let (_, r) = logged_in(&h, &plain("taro@example.com", "correct horse")).await;
    assert!(r.starts_with("454 4.7.0"), "{r}");
}

#[tokio::test]
async fn an_authenticated_client_sends_only_as_itself() {
    let h = Harness::new().with_tls().from("198.51.100.30");
    let (mut c, r) = logged_in(&h, &plain("taro@example.com", "correct horse")).await;
    assert!(r.starts_with("235"), "{r}");
    let r = c.cmd("MAIL FROM:<hanako@example.com>").await;
    assert!(r.starts_with("553 5.7.1"), "{r}");
    assert!(c.cmd("MAIL FROM:<Taro@EXAMPLE.com>").await.starts_with("250"), "case does not matter");
    c.cmd("RSET").await;
    assert!(c.cmd("MAIL FROM:<team@example.com>").await.starts_with("250"), "a granted address");
    // The relay inside allowed_networks, unauthenticated, sends for anyone in the org.
    let h = Harness::new();
    let mut c = h.connect().await;
    c.cmd("EHLO relay").await;
    assert!(c.cmd("MAIL FROM:<hanako@example.com>").await.starts_with("250"));
}

#[tokio::test]
async fn addresses_need_smtputf8_and_valid_utf8() {
    let h = Harness::new();
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    let r = c.cmd("MAIL FROM:<太郎@example.com>").await;
    assert!(r.starts_with("553 5.6.7"), "{r}");
    c.stream.write_all(b"MAIL FROM:<t\xffaro@example.com>\r\n").await.unwrap();
    let r = c.reply().await;
    assert!(r.starts_with("501"), "{r}");
    assert!(c.cmd("MAIL FROM:<taro@example.com>").await.starts_with("250"));
    let r = c.cmd("RCPT TO:<花子@example.jp>").await;
    assert!(r.starts_with("553 5.6.7"), "no SMTPUTF8 in MAIL: {r}");
}

#[tokio::test]
async fn control_characters_in_helo_are_refused_and_never_echoed() {
    let h = Harness::new();
    let mut c = h.connect().await;
    let r = c.cmd("EHLO evil\x1b]0;pwned\x07").await;
    assert!(r.starts_with("501"), "{r}");
    assert!(!r.contains('\x1b') && !r.contains("pwned"), "{r:?}");
    let r = c.cmd("EHLO client.example.net").await;
    assert!(r.starts_with("250-gw.example.com Hello [127.0.0.1]"), "the name is not echoed: {r}");
}

#[tokio::test]
async fn no_new_mail_below_the_free_space_reserve() {
    let h = Harness::new();
    h.metrics.health.disk_free.store(500_000_000, Relaxed);
    h.metrics.health.disk_reserve.store(1_000_000_000, Relaxed);
    let mut c = h.connect().await;
    c.cmd("EHLO a").await;
    let r = c.cmd("MAIL FROM:<taro@example.com>").await;
    assert!(r.starts_with("452 4.3.1"), "{r}");
    h.metrics.health.disk_free.store(2_000_000_000, Relaxed);
    assert!(c.cmd("MAIL FROM:<taro@example.com> SIZE=1000").await.starts_with("250"));
}
