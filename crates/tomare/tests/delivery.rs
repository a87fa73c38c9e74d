//! Delivery modes against real peers: MX lookups through a DNS server on
//! loopback, STARTTLS + AUTH to a smarthost (another tomare), implicit TLS,
//! and swaks speaking STARTTLS + AUTH to tomare.

mod common;

use common::*;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages an in-test server received.
type Captured = Arc<Mutex<Vec<(tomare_model::Envelope, Vec<u8>)>>>;

const HOLD_NONE: &str = "[hold]\nexternal = \"0s\"\ninternal = \"0s\"\n";

#[test]
fn mx_delivery_follows_dns_and_fails_permanently_where_it_must() {
    let sink = Sink::start();
    let dns = Dns::start(vec![
        ("customer.test", vec![Rr::Mx(20, "backup.customer.test"), Rr::Mx(10, "mx1.customer.test")]),
        // The preferred MX has no address: the next one is used.
        ("mx1.customer.test", vec![]),
        ("backup.customer.test", vec![Rr::A([127, 0, 0, 1])]),
        // No MX: the domain itself is the mail host.
        ("plain.test", vec![Rr::A([127, 0, 0, 1])]),
        ("nullmx.test", vec![Rr::Mx(0, ".")]),
        ("example.com", vec![Rr::Mx(10, "mail.example.com")]),
        ("mail.example.com", vec![Rr::A([127, 0, 0, 1])]),
    ]);
    let g = Gateway::start(&format!(
        "[delivery]\nmode = \"mx\"\n[delivery.mx]\nport = {}\nnameservers = [\"{}\"]\n{HOLD_NONE}",
        sink.port, dns.addr
    ));
    let rcpts = ["a@customer.test", "b@plain.test", "c@nowhere.test", "d@nullmx.test"];
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &rcpts, &message("mx", "mx@x")).unwrap());
    assert!(wait_until(Duration::from_secs(15), || g.state(&id) == "failed"), "{}", g.log());
    let shown = g.show(&id);
    let status: Vec<(&str, &str)> = shown["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [
            ("a@customer.test", "delivered"),
            ("b@plain.test", "delivered"),
            ("c@nowhere.test", "failed"),
            ("d@nullmx.test", "failed")
        ]
    );
    assert!(shown["recipients"][2]["reply"].as_str().unwrap().contains("does not exist"));
    assert!(shown["recipients"][3]["reply"].as_str().unwrap().contains("null MX"));
    // One transaction per domain, and the DSN went to the sender's MX.
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 3), "{}", g.log());
    let msgs = sink.messages();
    let dsn = msgs.iter().find(|m| m.mail_from.is_empty()).expect("DSN");
    assert_eq!(dsn.rcpts, ["taro@example.com"]);
    assert!(dsn.text().contains("Final-Recipient: rfc822; c@nowhere.test"));
    assert!(dsn.text().contains("Final-Recipient: rfc822; d@nullmx.test"));
}

/// A second tomare as the smarthost: TLS required, AUTH required.
fn smarthost(dir: &std::path::Path) -> (Gateway, std::path::PathBuf) {
    let (cert, key) = write_cert(dir);
    let g = Gateway::start(&format!(
        "[smtp.tls]\ncert = \"{}\"\nkey = \"{}\"\n[hold]\nexternal = \"0s\"\n",
        cert.display(),
        key.display()
    ));
    // AUTH is the only way in: no allowed networks.
    let text = std::fs::read_to_string(&g.config).unwrap();
    std::fs::write(&g.config, text.replace("[smtp]\n", "[smtp]\nallowed_networks = []\n")).unwrap();
    let mut g = g;
    g.kill();
    g.spawn();
    let mut add = tomare()
        .args(["user", "add", "relay@example.com", "--send-as", "@example.com", "--config"])
        .arg(&g.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(b"s3cret pass\n").unwrap();
    assert!(add.wait().unwrap().success());
    (g, cert)
}

#[test]
fn relay_with_starttls_and_auth_to_a_real_smarthost() {
    let certs = tempfile::tempdir().unwrap();
    let (upstream, cert) = smarthost(certs.path());
    let port = upstream.smtp.rsplit(':').next().unwrap();
    let relay = |password: &str| {
        format!(
            "[delivery]\nmode = \"relay\"\nretry = [\"1s\"]\n[delivery.relay]\nhost = \"localhost\"\nport = {port}\n\
             tls = \"starttls\"\nusername = \"relay@example.com\"\npassword = \"{password}\"\nca_file = \"{}\"\n{HOLD_NONE}",
            cert.display()
        )
    };
    let g = Gateway::start(&relay("s3cret pass"));
    let id =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["x@customer.test"], &message("tls", "tls@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "delivered"), "{}", g.log());
    let rows = upstream.cli_json(&["queue", "list", "--json"]);
    let up_id = rows[0]["id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(5), || upstream.state(&up_id) == "delivered"));
    let shown = upstream.show(&up_id);
    assert_eq!(shown["auth_user"], "relay@example.com");
    let copy = std::fs::read_to_string(shown["sandbox_copy"].as_str().unwrap()).unwrap();
    assert!(copy.contains("with ESMTPSA;"), "upstream saw TLS and AUTH: {copy}");
    assert!(copy.contains("Message-ID: <tls@x>"));

    // A wrong password keeps the mail queued (deferred), not bounced.
    let bad = Gateway::start(&relay("wrong"));
    let id = queued_id(&smtp_send(&bad.smtp, "taro@example.com", &["x@customer.test"], &message("t", "t@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || bad.state(&id) == "deferred"), "{}", bad.log());
    let reply = bad.show(&id)["recipients"][0]["reply"].as_str().unwrap().to_string();
    assert!(reply.contains("authentication failed"), "{reply}");
}

#[test]
fn relay_refuses_a_smarthost_without_starttls_or_with_an_untrusted_certificate() {
    // The in-test sink offers no STARTTLS.
    let sink = Sink::start();
    let g = Gateway::start(&format!(
        "[delivery]\nmode = \"relay\"\n[delivery.relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\n{HOLD_NONE}",
        sink.port
    ));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["x@customer.test"], &message("n", "n@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "deferred"), "{}", g.log());
    assert!(g.show(&id)["recipients"][0]["reply"].as_str().unwrap().contains("STARTTLS"));
    assert_eq!(sink.count(), 0, "nothing sent in the clear");

    // A smarthost whose certificate no configured CA signed.
    let certs = tempfile::tempdir().unwrap();
    let (upstream, _cert) = smarthost(certs.path());
    let port = upstream.smtp.rsplit(':').next().unwrap();
    let g = Gateway::start(&format!(
        "[delivery]\nmode = \"relay\"\n[delivery.relay]\nhost = \"localhost\"\nport = {port}\ntls = \"starttls\"\n{HOLD_NONE}"
    ));
    let id = queued_id(&smtp_send(&g.smtp, "taro@example.com", &["x@customer.test"], &message("u", "u@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "deferred"), "{}", g.log());
    assert!(g.show(&id)["recipients"][0]["reply"].as_str().unwrap().contains("TLS"));
}

#[test]
fn relay_with_implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path());
    let got: Captured = Arc::default();
    let port = implicit_tls_server(&cert, &key, got.clone());
    let g = Gateway::start(&format!(
        "[delivery]\nmode = \"relay\"\n[delivery.relay]\nhost = \"localhost\"\nport = {port}\ntls = \"tls\"\nca_file = \"{}\"\n{HOLD_NONE}",
        cert.display()
    ));
    let id =
        queued_id(&smtp_send(&g.smtp, "taro@example.com", &["x@customer.test"], &message("465", "465@x")).unwrap());
    assert!(wait_until(Duration::from_secs(10), || g.state(&id) == "delivered"), "{}", g.log());
    let got = got.lock().unwrap();
    assert_eq!(got[0].0.rcpt_to, ["x@customer.test".parse::<tomare_model::Address>().unwrap()]);
    assert!(String::from_utf8_lossy(&got[0].1).contains("Message-ID: <465@x>"));
}

/// tomare's own SMTP session behind TLS from the first byte (port 465 style).
fn implicit_tls_server(cert: &std::path::Path, key: &std::path::Path, got: Captured) -> u16 {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    struct Keep(Captured);
    #[async_trait::async_trait]
    impl tomare_smtp::MessageSink for Keep {
        async fn accept(&self, e: tomare_model::Envelope, d: Vec<u8>) -> Result<String, String> {
            self.0.lock().unwrap().push((e, d));
            Ok("T1".into())
        }
        async fn begin(&self) -> Result<Box<dyn tomare_smtp::Incoming>, String> {
            Err("this test server takes small messages only".into())
        }
    }
    struct NoUsers;
    #[async_trait::async_trait]
    impl tomare_smtp::Authenticator for NoUsers {
        async fn verify(&self, _: &str, _: &str) -> Option<tomare_smtp::Login> {
            None
        }
    }
    let certs = vec![CertificateDer::from_pem_file(cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let session_config = Arc::new(tomare_smtp::SessionConfig::new(
                &tomare_config::Config::default(),
                "upstream.test".into(),
                None,
            ));
            let (_tx, rx) = tokio::sync::watch::channel(false);
            loop {
                let (tcp, peer) = listener.accept().await.unwrap();
                let tls = acceptor.accept(tcp).await.unwrap();
                let session = tomare_smtp::Session::new(
                    session_config.clone(),
                    Arc::new(Keep(got.clone())),
                    Arc::new(NoUsers),
                    Arc::default(),
                    peer.ip(),
                    rx.clone(),
                );
                tokio::spawn(session.run(tls));
            }
        });
    });
    port
}

#[test]
fn swaks_starttls_and_auth_into_tomare() {
    let certs = tempfile::tempdir().unwrap();
    let (g, _) = smarthost(certs.path());
    let swaks = |extra: &[&str]| {
        Command::new("swaks")
            .args(["--server", &g.smtp, "--from", "relay@example.com", "--to", "x@customer.test"])
            .args(extra)
            .output()
            .unwrap()
    };
    // Without AUTH: refused (no allowed networks).
    let out = swaks(&["--tls"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("530 5.7.0"));
    // AUTH without TLS: refused before credentials are sent.
    let out = swaks(&["--auth", "PLAIN", "--auth-user", "relay@example.com", "--auth-password", "s3cret pass"]);
    assert!(!out.status.success());
    // STARTTLS, then AUTH LOGIN: accepted.
    let out =
        swaks(&["--tls", "--auth", "LOGIN", "--auth-user", "relay@example.com", "--auth-password", "s3cret pass"]);
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(transcript.contains("235 2.7.0"));
    assert!(transcript.contains("queued as"));
    // A wrong password.
    let out = swaks(&["--tls", "--auth", "PLAIN", "--auth-user", "relay@example.com", "--auth-password", "nope"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("535 5.7.8"));
}

#[test]
fn connection_limit_and_idle_timeout() {
    let g = Gateway::start("");
    let text = std::fs::read_to_string(&g.config).unwrap();
    std::fs::write(&g.config, text.replace("[smtp]\n", "[smtp]\nmax_connections = 2\nidle_timeout = \"1s\"\n"))
        .unwrap();
    let mut g = g;
    g.kill();
    g.spawn();
    // The start-up probe's connection must have left before slots are counted.
    assert!(wait_until(Duration::from_secs(5), || g.http_get("/metrics").1.contains("tomare_smtp_sessions 0")));
    use std::io::{BufRead, BufReader};
    let greet = |s: &std::net::TcpStream| {
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
        line
    };
    let a = std::net::TcpStream::connect(&g.smtp).unwrap();
    assert!(greet(&a).starts_with("220"));
    let b = std::net::TcpStream::connect(&g.smtp).unwrap();
    assert!(greet(&b).starts_with("220"));
    let c = std::net::TcpStream::connect(&g.smtp).unwrap();
    assert!(greet(&c).starts_with("421 4.7.0"), "third connection over the limit");
    // Silent clients are dropped after idle_timeout, freeing the slots.
    let mut line = String::new();
    BufReader::new(a.try_clone().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("421 4.4.2"), "{line}");
    assert!(wait_until(Duration::from_secs(3), || {
        std::net::TcpStream::connect(&g.smtp).map(|s| greet(&s).starts_with("220")).unwrap_or(false)
    }));
}
