//! A small SMTP client for delivery: EHLO, STARTTLS, AUTH, pipelined
//! MAIL/RCPT/DATA, per-recipient results, and a connection kept open for the
//! next message. The message bytes go out unchanged except for dot-stuffing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tomare_model::{Address, OutcomeClass, Payload, RcptOutcome};

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to secure one connection.
#[derive(Clone)]
pub enum Security {
    None,
    /// STARTTLS, required: a server that does not offer it is an error.
    StartTls(TlsConnector),
    /// STARTTLS when offered (MX delivery); plaintext otherwise.
    Opportunistic(TlsConnector),
    /// TLS from the first byte (port 465).
    Implicit(TlsConnector),
}

#[derive(Clone)]
pub struct ConnectSettings {
    pub helo_name: String,
    pub security: Security,
    pub credentials: Option<(String, String)>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server answered with an error outside a transaction (greeting,
    /// EHLO, STARTTLS, AUTH).
    #[error("{0}")]
    Refused(Reply),
    #[error("server does not offer STARTTLS")]
    NoStartTls,
    #[error("TLS: {0}")]
    Tls(io::Error),
    #[error("malformed reply from server")]
    Protocol,
}

impl ClientError {
    /// Whether messages could still be delivered later (everything but a
    /// 5xx refusal).
    pub fn class(&self) -> OutcomeClass {
        match self {
            ClientError::Refused(r) if r.code >= 500 => OutcomeClass::Permanent,
            _ => OutcomeClass::Temporary,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Every line's text, joined by spaces.
    pub text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

impl Reply {
    fn class(&self) -> OutcomeClass {
        match self.code {
            200..=299 => OutcomeClass::Delivered,
            500..=599 => OutcomeClass::Permanent,
            _ => OutcomeClass::Temporary,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Caps {
    pipelining: bool,
    eightbit: bool,
    smtputf8: bool,
    starttls: bool,
    size: bool,
    auth_plain: bool,
    auth_login: bool,
}

pub struct Conn {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    caps: Caps,
    timeout: Duration,
    pub tls: bool,
    pub last_used: Instant,
    /// Messages sent on this connection.
    pub sent: usize,
}

fn tls_name(host: &str) -> io::Result<rustls_pki_types::ServerName<'static>> {
    rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad TLS server name {host:?}")))
}

impl Conn {
    /// Connects to `host:port` and gets the session ready for MAIL FROM.
    /// `addr`, when given, is where to connect (an MX host's address from
    /// our resolver); `host` is still the name TLS expects.
    pub async fn open(host: &str, addr: Option<IpAddr>, port: u16, s: &ConnectSettings) -> Result<Conn, ClientError> {
        let connect = async {
            match addr {
                Some(ip) => TcpStream::connect((ip, port)).await,
                None => TcpStream::connect((host, port)).await,
            }
        };
        let tcp = tokio::time::timeout(s.connect_timeout, connect).await.map_err(|_| ClientError::Timeout)??;
        let _ = tcp.set_nodelay(true);
        let (stream, tls): (Box<dyn Stream>, bool) = match &s.security {
            Security::Implicit(c) => {
                let tls = tokio::time::timeout(s.connect_timeout, c.connect(tls_name(host)?, tcp))
                    .await
                    .map_err(|_| ClientError::Timeout)?
                    .map_err(ClientError::Tls)?;
                (Box::new(tls), true)
            }
            _ => (Box::new(tcp), false),
        };
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(4096),
            caps: Caps::default(),
            timeout: s.command_timeout,
            tls,
            last_used: Instant::now(),
            sent: 0,
        };
        let greeting = conn.read_reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Refused(greeting));
        }
        conn.ehlo(&s.helo_name).await?;
        let connector = match &s.security {
            Security::StartTls(_) if !conn.caps.starttls => return Err(ClientError::NoStartTls),
            Security::StartTls(c) => Some(c),
            Security::Opportunistic(c) if conn.caps.starttls => Some(c),
            _ => None,
        };
        if let Some(connector) = connector {
            conn.write(b"STARTTLS\r\n").await?;
            let r = conn.read_reply().await?;
            if r.code != 220 {
                return Err(ClientError::Refused(r));
            }
            let Conn { stream, .. } = conn;
            let tls = tokio::time::timeout(s.connect_timeout, connector.connect(tls_name(host)?, stream))
                .await
                .map_err(|_| ClientError::Timeout)?
                .map_err(ClientError::Tls)?;
            conn = Conn {
                stream: Box::new(tls),
                buf: Vec::with_capacity(4096),
                caps: Caps::default(),
                timeout: s.command_timeout,
                tls: true,
                last_used: Instant::now(),
                sent: 0,
            };
            conn.ehlo(&s.helo_name).await?;
        }
        if let Some((user, password)) = &s.credentials {
            conn.auth(user, password).await?;
        }
        Ok(conn)
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    /// Reads one reply, all of its lines.
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut text = String::new();
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end();
                let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or(ClientError::Protocol)?;
                if !(200..600).contains(&code) {
                    return Err(ClientError::Protocol);
                }
                let more = line.as_bytes().get(3) == Some(&b'-');
                if !text.is_empty() {
                    text.push(' ');
                }
                // The remote server's words end up in logs, `queue show` and
                // DSNs: no control characters from it survive.
                let words = line.get(4..).unwrap_or("").trim();
                text.extend(words.chars().map(|c| if c.is_control() { '?' } else { c }));
                if !more {
                    return Ok(Reply { code, text });
                }
            }
            if self.buf.len() > 64 * 1024 {
                return Err(ClientError::Protocol);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), ClientError> {
        self.write(format!("EHLO {name}\r\n").as_bytes()).await?;
        let r = self.read_reply().await?;
        if r.code == 250 {
            self.caps = Caps::default();
            for word in r.text.split_whitespace().map(str::to_ascii_uppercase) {
                match word.as_str() {
                    "PIPELINING" => self.caps.pipelining = true,
                    "8BITMIME" => self.caps.eightbit = true,
                    "SMTPUTF8" => self.caps.smtputf8 = true,
                    "STARTTLS" => self.caps.starttls = true,
                    "SIZE" => self.caps.size = true,
                    "PLAIN" => self.caps.auth_plain = true,
                    "LOGIN" => self.caps.auth_login = true,
                    _ => {}
                }
            }
            return Ok(());
        }
        // An old server without ESMTP.
        self.write(format!("HELO {name}\r\n").as_bytes()).await?;
        let r = self.read_reply().await?;
        if r.code != 250 {
            return Err(ClientError::Refused(r));
        }
        self.caps = Caps::default();
        Ok(())
    }

    async fn auth(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let r = if self.caps.auth_plain || !self.caps.auth_login {
            let token = B64.encode(format!("\0{user}\0{password}"));
            self.write(format!("AUTH PLAIN {token}\r\n").as_bytes()).await?;
            self.read_reply().await?
        } else {
            self.write(b"AUTH LOGIN\r\n").await?;
            let mut r = self.read_reply().await?;
            for secret in [user, password] {
                if r.code != 334 {
                    break;
                }
                self.write(format!("{}\r\n", B64.encode(secret)).as_bytes()).await?;
                r = self.read_reply().await?;
            }
            r
        };
        if r.code != 235 {
            // A rejected login is a configuration problem the admin can fix:
            // keep the mail queued rather than bouncing it.
            return Err(ClientError::Refused(Reply { code: 454, text: format!("authentication failed: {r}") }));
        }
        Ok(())
    }

    /// One mail transaction. `Err` means the connection is unusable and
    /// nothing was delivered; `Ok` carries each recipient's outcome.
    pub async fn send(
        &mut self,
        mail_from: &Address,
        rcpts: &[Address],
        data: &Payload,
    ) -> Result<Vec<RcptOutcome>, ClientError> {
        let mut mail = format!("MAIL FROM:<{mail_from}>");
        if self.caps.size {
            mail.push_str(&format!(" SIZE={}", data.len()));
        }
        // A file is not read twice to find out: BODY=8BITMIME on 7-bit
        // data is allowed.
        let eightbit = match data {
            Payload::Bytes(b) => b.iter().any(|b| *b >= 0x80),
            Payload::File { .. } => true,
        };
        if self.caps.eightbit && eightbit {
            mail.push_str(" BODY=8BITMIME");
        }
        let all = |class, reply: &Reply| -> Vec<RcptOutcome> {
            rcpts.iter().map(|r| RcptOutcome { address: r.clone(), class, reply: reply.to_string() }).collect()
        };
        let utf8 = mail_from.needs_utf8() || rcpts.iter().any(Address::needs_utf8);
        if utf8 && !self.caps.smtputf8 {
            // RFC 6531 §3.2: without the extension the address cannot be
            // expressed; downgrading it is not ours to do.
            let reply = Reply { code: 553, text: "5.6.7 the receiving server does not support SMTPUTF8".into() };
            return Ok(all(OutcomeClass::Permanent, &reply));
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");

        let (mail_reply, rcpt_replies, data_reply) = if self.caps.pipelining {
            let mut batch = mail.into_bytes();
            for r in rcpts {
                batch.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.write(&batch).await?;
            let mail_reply = self.read_reply().await?;
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            for _ in rcpts {
                rcpt_replies.push(self.read_reply().await?);
            }
            let data_reply = self.read_reply().await?;
            (mail_reply, rcpt_replies, data_reply)
        } else {
            self.write(mail.as_bytes()).await?;
            let mail_reply = self.read_reply().await?;
            if mail_reply.code != 250 {
                self.rset().await?;
                return Ok(all(mail_reply.class(), &mail_reply));
            }
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            for r in rcpts {
                self.write(format!("RCPT TO:<{r}>\r\n").as_bytes()).await?;
                rcpt_replies.push(self.read_reply().await?);
            }
            let data_reply = if rcpt_replies.iter().any(|r| r.code / 100 == 2) {
                self.write(b"DATA\r\n").await?;
                self.read_reply().await?
            } else {
                Reply { code: 554, text: "no recipient accepted".into() }
            };
            (mail_reply, rcpt_replies, data_reply)
        };

        if mail_reply.code / 100 != 2 {
            if data_reply.code == 354 {
                // Cannot happen with a sane server; end the data phase empty.
                self.write(b".\r\n").await?;
                self.read_reply().await?;
            }
            self.rset().await?;
            return Ok(all(mail_reply.class(), &mail_reply));
        }
        let accepted: Vec<usize> = (0..rcpts.len()).filter(|&i| rcpt_replies[i].code / 100 == 2).collect();
        let mut outcomes: Vec<RcptOutcome> = rcpts
            .iter()
            .zip(&rcpt_replies)
            .map(|(r, reply)| RcptOutcome { address: r.clone(), class: reply.class(), reply: reply.to_string() })
            .collect();
        if data_reply.code != 354 {
            self.rset().await?;
            for &i in &accepted {
                outcomes[i].class = data_reply.class();
                outcomes[i].reply = data_reply.to_string();
            }
            return Ok(outcomes);
        }
        if accepted.is_empty() {
            // Pipelined DATA got 354 though no RCPT was accepted: send nothing.
            self.write(b".\r\n").await?;
            self.read_reply().await?;
            return Ok(outcomes);
        }
        let mut stuffer = Stuffer::default();
        let mut out = Vec::with_capacity(SEND_CHUNK + SEND_CHUNK / 64);
        match data {
            Payload::Bytes(data) => {
                for piece in data.chunks(SEND_CHUNK) {
                    out.clear();
                    stuffer.push(piece, &mut out);
                    self.write(&out).await?;
                }
            }
            Payload::File { path, .. } => {
                // Read a piece at a time: a big message is never in memory whole.
                use tokio::io::AsyncReadExt;
                let mut file = tokio::fs::File::open(path).await.map_err(ClientError::Io)?;
                let mut piece = vec![0u8; SEND_CHUNK];
                loop {
                    let n = file.read(&mut piece).await.map_err(ClientError::Io)?;
                    if n == 0 {
                        break;
                    }
                    out.clear();
                    stuffer.push(&piece[..n], &mut out);
                    self.write(&out).await?;
                }
            }
        }
        out.clear();
        stuffer.end(&mut out);
        self.write(&out).await?;
        let final_reply = self.read_reply().await?;
        for &i in &accepted {
            outcomes[i].class = final_reply.class();
            outcomes[i].reply = final_reply.to_string();
        }
        self.sent += 1;
        self.last_used = Instant::now();
        Ok(outcomes)
    }

    async fn rset(&mut self) -> Result<(), ClientError> {
        self.write(b"RSET\r\n").await?;
        self.read_reply().await.map(|_| ())
    }

    pub async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply().await;
        }
        let _ = self.stream.shutdown().await;
    }
}

/// The DATA payload: lines starting with "." get another ".", the message
/// ends with CRLF, then the terminating ".".
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 512 + 8);
    let mut stuffer = Stuffer::default();
    stuffer.push(data, &mut out);
    stuffer.end(&mut out);
    out
}

/// Dot-stuffing in pieces, so a big message goes out without a second
/// copy of it in memory.
#[derive(Debug)]
pub struct Stuffer {
    line_start: bool,
    /// The last two bytes sent, to end the data on a line of its own.
    tail: [u8; 2],
}

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer { line_start: true, tail: [0, 0] }
    }
}

impl Stuffer {
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        // A line at a time: only a line's first byte can need a dot.
        out.reserve(data.len() + data.len() / 64);
        let mut rest = data;
        while !rest.is_empty() {
            if self.line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            let line = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
            out.extend_from_slice(&rest[..line]);
            self.line_start = rest[line - 1] == b'\n';
            rest = &rest[line..];
        }
        match data {
            [.., a, b] => self.tail = [*a, *b],
            [b] => self.tail = [self.tail[1], *b],
            [] => {}
        }
    }

    /// The end of data: a line break if the message lacks its last one,
    /// then `.` CRLF.
    pub fn end(&self, out: &mut Vec<u8>) {
        match self.tail {
            [b'\r', b'\n'] => {}
            [_, b'\r'] => out.push(b'\n'),
            _ => out.extend_from_slice(b"\r\n"),
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Bytes of a message stuffed and written at a time.
const SEND_CHUNK: usize = 256 * 1024;

/// Accepts any certificate: opportunistic TLS to MX hosts protects against
/// passive eavesdropping only, as in Postfix's `smtp_tls_security_level = may`.
#[derive(Debug)]
pub struct AnyCert(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r"), b"a\r\n.\r\n");
        // In pieces, a dot at the start of a piece is still a line start.
        let mut s = Stuffer::default();
        let mut out = Vec::new();
        for piece in [&b"x\r\n"[..], b".", b"y\r", b"\n", b"..z\r\n"] {
            s.push(piece, &mut out);
        }
        s.end(&mut out);
        assert_eq!(out, dot_stuff(b"x\r\n.y\r\n..z\r\n"));
    }
}
