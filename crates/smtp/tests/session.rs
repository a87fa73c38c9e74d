//! Whole SMTP sessions in memory: the real session code over a duplex pipe.

use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tomare_config::Config;
use tomare_model::{Envelope, Metrics};
use tomare_smtp::{Authenticator, MessageSink, Session, SessionConfig};

#[derive(Default)]
struct Sink {
    messages: Mutex<Vec<(Envelope, Vec<u8>)>>,
    fail: bool,
}

#[async_trait]
impl MessageSink for Sink {
    async fn accept(&self, envelope: Envelope, data: Vec<u8>) -> Result<String, String> {
        if self.fail {
            return Err("disk full".into());
        }
        let mut m = self.messages.lock().unwrap();
        m.push((envelope, data));
        Ok(format!("ID{}", m.len()))
    }
}

struct Users;

#[async_trait]
impl Authenticator for Users {
    async fn verify(&self, user: &str, password: &str) -> bool {
        user == "taro@example.com" && password == "correct horse"
    }
}

struct Harness {
    sink: Arc<Sink>,
    cfg: SessionConfig,
    peer: IpAddr,
}

impl Harness {
    fn new() -> Self {
        let mut config = Config::default();
        config.smtp.max_message_size = tomare_config::ByteSize(2000);
        config.smtp.max_recipients = 3;
        config.smtp.max_errors = 10;
        Harness {
            sink: Arc::new(Sink::default()),
            cfg: SessionConfig::new(&config, "gw.example.com".into(), None),
            peer: "127.0.0.1".parse().unwrap(),
        }
    }

    fn with_tls(mut self) -> Self {
        self.cfg.tls = Some(tls_acceptor());
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
        let session = Session::new(
            Arc::new(SessionConfig {
                hostname: self.cfg.hostname.clone(),
                allowed_networks: self.cfg.allowed_networks.clone(),
                internal_domains: self.cfg.internal_domains.clone(),
                max_message_size: self.cfg.max_message_size,
                max_recipients: self.cfg.max_recipients,
                max_errors: self.cfg.max_errors,
                idle_timeout: self.cfg.idle_timeout,
                tls: self.cfg.tls.clone(),
            }),
            self.sink.clone(),
            Arc::new(Users),
            Arc::new(Metrics::default()),
            self.peer,
            rx,
        );
        tokio::spawn(async move {
            let _keep_shutdown_sender = _tx;
            let _ = session.run(server).await;
        });
        let mut c = Client { stream: client, buf: Vec::new() };
        assert!(c.reply().await.starts_with("220 gw.example.com"));
        c
    }

    fn messages(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.sink.messages.lock().unwrap().clone()
    }
}

struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, data: &str) {
        self.stream.write_all(data.as_bytes()).await.unwrap();
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
    assert_eq!(m[0].0.mail_from, "taro@example.com");
    assert_eq!(m[0].0.rcpt_to, vec!["hanako@customer.test"]);
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
    assert_eq!(m[0].0.rcpt_to, vec!["a@x.test", "b@y.test"]);
    assert_eq!(m[1].0.rcpt_to, vec!["c@z.test"]);
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
    assert_eq!(m[0].0.rcpt_to, vec!["山田@例え.jp"]);
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
    for _ in 0..150 {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_tx, rx) = watch::channel(false);
        let session = Session::new(
            Arc::new(SessionConfig {
                hostname: "gw".into(),
                allowed_networks: h.cfg.allowed_networks.clone(),
                internal_domains: h.cfg.internal_domains.clone(),
                max_message_size: 2000,
                max_recipients: 3,
                max_errors: 1000,
                idle_timeout: Duration::from_secs(5),
                tls: h.cfg.tls.clone(),
            }),
            h.sink.clone(),
            Arc::new(Users),
            Arc::new(Metrics::default()),
            h.peer,
            rx,
        );
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
