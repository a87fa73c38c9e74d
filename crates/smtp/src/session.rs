//! One SMTP session, over any byte stream. Replies to pipelined commands are
//! collected and written when the client's input runs dry (RFC 2920).

use crate::{Authenticator, MessageSink, SessionConfig, normalize_line_endings};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, LineReceiver, RequestReceiver};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ProtoError, Request};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tomare_model::{Envelope, Metrics, domain_of, is_internal_domain, now_ms, rfc2822};

/// Time allowed for the TLS handshake after `220 Ready to start TLS`.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest command line accepted (RFC 5321 allows 512; extensions add more).
const MAX_COMMAND_LINE: usize = 4096;
/// Pause after a failed AUTH, to slow down password guessing.
const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(500);

enum Mode {
    Command(RequestReceiver),
    Data(DataReceiver, Vec<u8>),
    /// Discarding a message that is over the size limit, until its end.
    Discard(DummyDataReceiver),
    Auth(LineReceiver<AuthStep>),
}

#[derive(Default)]
enum AuthStep {
    #[default]
    Plain,
    LoginUser,
    LoginPassword(String),
}

enum Flow {
    Continue,
    Close,
    StartTls,
}

pub struct Session {
    cfg: Arc<SessionConfig>,
    sink: Arc<dyn MessageSink>,
    auth: Arc<dyn Authenticator>,
    metrics: Arc<Metrics>,
    peer: IpAddr,
    shutdown: watch::Receiver<bool>,
    tls: bool,
    helo: Option<String>,
    esmtp: bool,
    auth_user: Option<String>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    errors: usize,
    /// Bytes of the command line received so far without its newline.
    partial_line: usize,
    /// Inside an over-long command line, dropping bytes until its end.
    skipping_line: bool,
}

fn reply(out: &mut Vec<u8>, code: u16, esc: &str, text: &str) {
    out.extend_from_slice(format!("{code} {esc} {text}\r\n").as_bytes());
}

impl Session {
    pub fn new(
        cfg: Arc<SessionConfig>,
        sink: Arc<dyn MessageSink>,
        auth: Arc<dyn Authenticator>,
        metrics: Arc<Metrics>,
        peer: IpAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Session {
        Session {
            cfg,
            sink,
            auth,
            metrics,
            peer,
            shutdown,
            tls: false,
            helo: None,
            esmtp: false,
            auth_user: None,
            mail_from: None,
            rcpts: Vec::new(),
            errors: 0,
            partial_line: 0,
            skipping_line: false,
        }
    }

    /// Runs the session to its end. STARTTLS continues it on the TLS stream.
    pub async fn run<S>(mut self, mut stream: S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let greeting = format!("220 {} ESMTP tomare\r\n", self.cfg.hostname);
        stream.write_all(greeting.as_bytes()).await?;
        if let Flow::StartTls = self.serve(&mut stream).await? {
            let Some(acceptor) = self.cfg.tls.clone() else {
                return Ok(());
            };
            let mut tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
            // RFC 3207: forget everything learned before TLS.
            self.tls = true;
            self.helo = None;
            self.esmtp = false;
            self.reset();
            self.serve(&mut tls).await?;
            let _ = tls.shutdown().await;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
    }

    fn in_transaction(&self) -> bool {
        self.mail_from.is_some()
    }

    async fn serve<S>(&mut self, stream: &mut S) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut buf = vec![0u8; 32 * 1024];
        let mut out = Vec::with_capacity(1024);
        let mut mode = Mode::Command(RequestReceiver::default());
        loop {
            let waiting_for_command = matches!(mode, Mode::Command(_)) && !self.in_transaction();
            let n = tokio::select! {
                r = tokio::time::timeout(self.cfg.idle_timeout, stream.read(&mut buf)) => match r {
                    Ok(r) => r?,
                    Err(_) => {
                        stream.write_all(b"421 4.4.2 Idle timeout, closing connection\r\n").await?;
                        return Ok(Flow::Close);
                    }
                },
                _ = self.shutdown.changed(), if waiting_for_command => {
                    stream.write_all(b"421 4.3.2 Service shutting down, try again later\r\n").await?;
                    return Ok(Flow::Close);
                }
            };
            if n == 0 {
                return Ok(Flow::Close);
            }
            let mut bytes = buf[..n].iter();
            while bytes.len() > 0 {
                let flow = match &mut mode {
                    Mode::Command(_) if self.over_long_line(&mut bytes) => {
                        mode = Mode::Command(RequestReceiver::default());
                        if self.skipping_line {
                            continue;
                        }
                        reply(&mut out, 500, "5.5.2", "Line too long");
                        self.count_error(&mut out)
                    }
                    Mode::Command(receiver) => match receiver.ingest(&mut bytes) {
                        Ok(request) => {
                            let request = request.into_owned();
                            self.command(request, &mut out, &mut mode).await
                        }
                        Err(ProtoError::NeedsMoreData { .. }) => break,
                        Err(e) => self.syntax_error(e, &mut out),
                    },
                    Mode::Data(receiver, message) => {
                        let done = receiver.ingest(&mut bytes, message);
                        if done && message.len() > self.cfg.max_message_size {
                            mode = Mode::Command(RequestReceiver::default());
                            self.too_big(&mut out);
                            Flow::Continue
                        } else if done {
                            let message = std::mem::take(message);
                            mode = Mode::Command(RequestReceiver::default());
                            self.end_of_data(message, &mut out).await
                        } else if message.len() > self.cfg.max_message_size {
                            mode = Mode::Discard(DummyDataReceiver::new_data(receiver));
                            Flow::Continue
                        } else {
                            Flow::Continue
                        }
                    }
                    Mode::Discard(receiver) => {
                        if receiver.ingest(&mut bytes) {
                            mode = Mode::Command(RequestReceiver::default());
                            self.too_big(&mut out);
                        }
                        Flow::Continue
                    }
                    Mode::Auth(receiver) => {
                        if receiver.ingest(&mut bytes) {
                            let line = String::from_utf8_lossy(&receiver.buf).trim().to_string();
                            let step = std::mem::take(&mut receiver.state);
                            mode = Mode::Command(RequestReceiver::default());
                            self.auth_line(step, &line, &mut out, &mut mode).await
                        } else {
                            Flow::Continue
                        }
                    }
                };
                match flow {
                    Flow::Continue => {}
                    Flow::Close => {
                        stream.write_all(&out).await?;
                        return Ok(Flow::Close);
                    }
                    Flow::StartTls => {
                        // Anything pipelined after STARTTLS is dropped, never
                        // executed inside the TLS session (CVE-2011-0411).
                        stream.write_all(&out).await?;
                        return Ok(Flow::StartTls);
                    }
                }
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                stream.flush().await?;
                out.clear();
            }
        }
    }

    /// Command lines are limited to [`MAX_COMMAND_LINE`] bytes. An over-long
    /// line is consumed up to its end and answered once with 500; `true` when
    /// bytes were consumed that way.
    fn over_long_line(&mut self, bytes: &mut std::slice::Iter<'_, u8>) -> bool {
        let rest = bytes.as_slice();
        let newline = rest.iter().position(|&b| b == b'\n');
        if self.skipping_line {
            match newline {
                Some(p) => {
                    *bytes = rest[p + 1..].iter();
                    self.skipping_line = false;
                    self.partial_line = 0;
                }
                None => *bytes = [].iter(),
            }
            // Report it once, when its end arrives.
            return true;
        }
        match newline {
            Some(p) if self.partial_line + p + 1 > MAX_COMMAND_LINE => {
                *bytes = rest[p + 1..].iter();
                self.partial_line = 0;
                true
            }
            Some(_) => {
                self.partial_line = 0;
                false
            }
            None if self.partial_line + rest.len() > MAX_COMMAND_LINE => {
                *bytes = [].iter();
                self.skipping_line = true;
                self.partial_line = 0;
                true
            }
            None => {
                self.partial_line += rest.len();
                false
            }
        }
    }

    fn too_big(&mut self, out: &mut Vec<u8>) {
        self.metrics.rejected.fetch_add(1, Relaxed);
        self.reset();
        reply(out, 552, "5.3.4", "Message size exceeds fixed maximum message size");
    }

    fn count_error(&mut self, out: &mut Vec<u8>) -> Flow {
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            reply(out, 421, "4.7.0", "Too many errors, closing connection");
            return Flow::Close;
        }
        Flow::Continue
    }

    fn syntax_error(&mut self, e: ProtoError, out: &mut Vec<u8>) -> Flow {
        match e {
            ProtoError::ResponseTooLong => reply(out, 500, "5.5.2", "Line too long"),
            ProtoError::UnknownCommand => reply(out, 500, "5.5.1", "Command unrecognized"),
            ProtoError::InvalidSenderAddress => reply(out, 501, "5.1.7", "Bad sender address syntax"),
            ProtoError::InvalidRecipientAddress => reply(out, 501, "5.1.3", "Bad recipient address syntax"),
            ProtoError::SyntaxError { syntax } => reply(out, 501, "5.5.4", &format!("Syntax: {syntax}")),
            ProtoError::InvalidParameter { param } => reply(out, 501, "5.5.4", &format!("Invalid parameter {param}")),
            ProtoError::UnsupportedParameter { param } => {
                let param: String = param.chars().filter(|c| !c.is_control()).take(64).collect();
                reply(out, 504, "5.5.4", &format!("Unsupported parameter {param}"))
            }
            _ => reply(out, 500, "5.5.2", "Syntax error"),
        }
        self.count_error(out)
    }

    async fn command(&mut self, request: Request<String>, out: &mut Vec<u8>, mode: &mut Mode) -> Flow {
        match request {
            Request::Ehlo { host } => {
                self.reset();
                self.esmtp = true;
                let mut lines = vec![format!("{} Hello {}", self.cfg.hostname, clean(&host))];
                lines.push("PIPELINING".into());
                lines.push(format!("SIZE {}", self.cfg.max_message_size));
                lines.push("8BITMIME".into());
                lines.push("SMTPUTF8".into());
                lines.push("ENHANCEDSTATUSCODES".into());
                if self.cfg.tls.is_some() && !self.tls {
                    lines.push("STARTTLS".into());
                }
                if self.cfg.tls.is_some() && self.tls && self.auth_user.is_none() {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                let last = lines.len() - 1;
                for (i, line) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    let _ = write!(StrOut(out), "250{sep}{line}\r\n");
                }
                self.helo = Some(host);
            }
            Request::Helo { host } | Request::Lhlo { host } => {
                self.reset();
                self.esmtp = false;
                reply_plain(out, 250, &format!("{} Hello {}", self.cfg.hostname, clean(&host)));
                self.helo = Some(host);
            }
            Request::Mail { from } => return self.mail(from.address, from.size, out),
            Request::Rcpt { to } => return self.rcpt(to.address, out),
            Request::Data => {
                if self.mail_from.is_none() {
                    reply(out, 503, "5.5.1", "Error: need MAIL command");
                    return self.count_error(out);
                }
                if self.rcpts.is_empty() {
                    reply(out, 554, "5.5.1", "Error: no valid recipients");
                    return self.count_error(out);
                }
                reply_plain(out, 354, "End data with <CR><LF>.<CR><LF>");
                *mode = Mode::Data(DataReceiver::new(), Vec::with_capacity(16 * 1024));
            }
            Request::Rset => {
                self.reset();
                reply(out, 250, "2.0.0", "Ok");
            }
            Request::Noop { .. } => reply(out, 250, "2.0.0", "Ok"),
            Request::Quit => {
                reply(out, 221, "2.0.0", "Bye");
                return Flow::Close;
            }
            Request::Vrfy { .. } => reply(out, 252, "2.5.0", "Cannot VRFY user, but will accept message"),
            Request::Expn { .. } => reply(out, 502, "5.5.1", "EXPN not available"),
            Request::Help { .. } => reply(out, 214, "2.0.0", "See RFC 5321"),
            Request::StartTls => {
                if self.cfg.tls.is_none() {
                    reply(out, 502, "5.5.1", "STARTTLS not available");
                    return self.count_error(out);
                }
                if self.tls {
                    reply(out, 503, "5.5.1", "Already in TLS");
                    return self.count_error(out);
                }
                reply(out, 220, "2.0.0", "Ready to start TLS");
                return Flow::StartTls;
            }
            Request::Auth { mechanism, initial_response } => {
                return self.auth_start(mechanism, initial_response, out, mode).await;
            }
            Request::Bdat { .. } | Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                reply(out, 502, "5.5.1", "Command not implemented");
                return self.count_error(out);
            }
        }
        Flow::Continue
    }

    fn mail(&mut self, from: String, size: usize, out: &mut Vec<u8>) -> Flow {
        if self.helo.is_none() {
            reply(out, 503, "5.5.1", "Error: send HELO/EHLO first");
            return self.count_error(out);
        }
        if self.mail_from.is_some() {
            reply(out, 503, "5.5.1", "Error: nested MAIL command");
            return self.count_error(out);
        }
        if size > self.cfg.max_message_size {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 552, "5.3.4", "Message size exceeds fixed maximum message size");
            return Flow::Continue;
        }
        if self.auth_user.is_none() && !self.cfg.allowed_network(self.peer) {
            self.metrics.rejected.fetch_add(1, Relaxed);
            if self.cfg.tls.is_some() {
                reply(out, 530, "5.7.0", "Authentication required");
            } else {
                reply(out, 554, "5.7.1", "Relay access denied: client not in allowed networks");
            }
            return self.count_error(out);
        }
        if from.is_empty() {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 550, "5.7.1", "Null sender not accepted: tomare relays only the organisation's own mail");
            return self.count_error(out);
        }
        if !is_internal_domain(&domain_of(&from), &self.cfg.internal_domains) {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 550, "5.7.1", &format!("Sender <{}> is not in this organisation's domains", clean(&from)));
            return self.count_error(out);
        }
        self.mail_from = Some(from);
        reply(out, 250, "2.1.0", "Ok");
        Flow::Continue
    }

    fn rcpt(&mut self, to: String, out: &mut Vec<u8>) -> Flow {
        if self.mail_from.is_none() {
            reply(out, 503, "5.5.1", "Error: need MAIL command");
            return self.count_error(out);
        }
        if to.is_empty() || !to.contains('@') {
            reply(out, 501, "5.1.3", "Bad recipient address syntax");
            return self.count_error(out);
        }
        if self.rcpts.len() >= self.cfg.max_recipients {
            reply(out, 452, "4.5.3", "Too many recipients");
            return Flow::Continue;
        }
        self.rcpts.push(to);
        reply(out, 250, "2.1.5", "Ok");
        Flow::Continue
    }

    async fn end_of_data(&mut self, message: Vec<u8>, out: &mut Vec<u8>) -> Flow {
        let started = Instant::now();
        let (Some(mail_from), rcpts) = (self.mail_from.take(), std::mem::take(&mut self.rcpts)) else {
            reply(out, 503, "5.5.1", "Error: need MAIL command");
            return Flow::Continue;
        };
        let body = normalize_line_endings(&message);
        let received = self.received_header();
        let mut data = Vec::with_capacity(received.len() + body.len());
        data.extend_from_slice(received.as_bytes());
        data.extend_from_slice(&body);
        drop(body);
        let envelope = Envelope {
            mail_from,
            rcpt_to: rcpts,
            helo: self.helo.clone().unwrap_or_default(),
            client_ip: self.peer.to_string(),
            auth_user: self.auth_user.clone(),
        };
        match self.sink.accept(envelope, data).await {
            Ok(id) => {
                tracing::debug!(%id, took_ms = started.elapsed().as_millis() as u64, "accepted");
                reply(out, 250, "2.0.0", &format!("Ok: queued as {id}"));
            }
            Err(e) => {
                self.metrics.rejected.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "could not accept message");
                reply(out, 451, "4.3.0", "Temporary failure storing the message, try again later");
            }
        }
        if *self.shutdown.borrow() {
            reply(out, 421, "4.3.2", "Service shutting down");
            return Flow::Close;
        }
        Flow::Continue
    }

    fn received_header(&self) -> String {
        let proto = match (self.esmtp, self.tls, self.auth_user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let helo = clean(self.helo.as_deref().unwrap_or("unknown"));
        format!(
            "Received: from {helo} ([{}])\r\n\tby {} (tomare) with {proto};\r\n\t{}\r\n",
            self.peer,
            self.cfg.hostname,
            rfc2822(now_ms())
        )
    }

    async fn auth_start(&mut self, mechanism: u64, initial: String, out: &mut Vec<u8>, mode: &mut Mode) -> Flow {
        if self.cfg.tls.is_none() {
            reply(out, 502, "5.5.1", "AUTH not available");
            return self.count_error(out);
        }
        if !self.tls {
            reply(out, 538, "5.7.11", "Encryption required for requested authentication mechanism");
            return self.count_error(out);
        }
        if self.auth_user.is_some() {
            reply(out, 503, "5.5.1", "Already authenticated");
            return self.count_error(out);
        }
        if self.in_transaction() {
            reply(out, 503, "5.5.1", "AUTH not allowed during a mail transaction");
            return self.count_error(out);
        }
        match mechanism {
            AUTH_PLAIN if !initial.is_empty() => self.auth_line(AuthStep::Plain, &initial, out, mode).await,
            AUTH_PLAIN => {
                reply_plain(out, 334, "");
                *mode = Mode::Auth(LineReceiver::new(AuthStep::Plain));
                Flow::Continue
            }
            AUTH_LOGIN if !initial.is_empty() => self.auth_line(AuthStep::LoginUser, &initial, out, mode).await,
            AUTH_LOGIN => {
                reply_plain(out, 334, "VXNlcm5hbWU6");
                *mode = Mode::Auth(LineReceiver::new(AuthStep::LoginUser));
                Flow::Continue
            }
            _ => {
                reply(out, 504, "5.5.4", "Unrecognized authentication type");
                self.count_error(out)
            }
        }
    }

    async fn auth_line(&mut self, step: AuthStep, line: &str, out: &mut Vec<u8>, mode: &mut Mode) -> Flow {
        if line == "*" {
            reply(out, 501, "5.0.0", "Authentication aborted");
            return self.count_error(out);
        }
        let decoded = if line == "=" { Ok(Vec::new()) } else { B64.decode(line) };
        let Ok(decoded) = decoded else {
            reply(out, 501, "5.5.2", "Invalid base64 data");
            return self.count_error(out);
        };
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        let (user, password) = match step {
            AuthStep::LoginUser => {
                reply_plain(out, 334, "UGFzc3dvcmQ6");
                *mode = Mode::Auth(LineReceiver::new(AuthStep::LoginPassword(decoded)));
                return Flow::Continue;
            }
            AuthStep::LoginPassword(user) => (user, decoded),
            AuthStep::Plain => {
                let mut parts = decoded.split('\0');
                let (_authzid, user, password) = (parts.next(), parts.next(), parts.next());
                match (user, password) {
                    (Some(u), Some(p)) => (u.to_string(), p.to_string()),
                    _ => {
                        reply(out, 501, "5.5.2", "Malformed AUTH PLAIN response");
                        return self.count_error(out);
                    }
                }
            }
        };
        if self.auth.verify(&user, &password).await {
            tracing::info!(user = %clean(&user), peer = %self.peer, "authenticated");
            self.auth_user = Some(user);
            reply(out, 235, "2.7.0", "Authentication successful");
            Flow::Continue
        } else {
            tracing::warn!(user = %clean(&user), peer = %self.peer, "authentication failed");
            tokio::time::sleep(AUTH_FAILURE_DELAY).await;
            reply(out, 535, "5.7.8", "Authentication credentials invalid");
            self.count_error(out)
        }
    }
}

fn reply_plain(out: &mut Vec<u8>, code: u16, text: &str) {
    out.extend_from_slice(format!("{code} {text}\r\n").as_bytes());
}

/// Client-supplied text echoed in replies and headers: no control characters,
/// bounded length.
fn clean(s: &str) -> Cow<'_, str> {
    if s.len() <= 255 && !s.chars().any(char::is_control) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|c| !c.is_control()).take(255).collect())
    }
}

struct StrOut<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for StrOut<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
