//! One SMTP session, over any byte stream. Replies to pipelined commands are
//! collected and written when the client's input runs dry (RFC 2920).
//!
//! Time is bounded three ways, none of which a trickle of bytes can reset:
//! a command must arrive whole within `idle_timeout` of the previous one,
//! the DATA phase within `data_timeout` and at `min_data_rate`, the whole
//! session within `session_timeout` — and a client outside the allowed
//! networks must authenticate within `preauth_timeout` of the greeting.

use crate::command::{self, Command, MailFrom, Mechanism, Refusal};
use crate::data::DataReader;
use crate::{Authenticator, Incoming, Login, MessageSink, SessionConfig};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tomare_model::{Address, Envelope, Metrics, now_ms, rfc2822};

/// Time allowed for the TLS handshake after `220 Ready to start TLS`.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest command line accepted (RFC 5321 allows 512; extensions add more).
const MAX_COMMAND_LINE: usize = 4096;
/// Pause after a failed AUTH, to slow down password guessing. The same for
/// unknown accounts and wrong passwords.
const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(500);
/// A message is kept in memory up to this size, then streamed to the sink
/// in chunks of this size: ten 45 MB messages arriving at once cost ten
/// chunks, not 450 MB.
const SPILL_AT: usize = 1 << 20;

enum Mode {
    Command,
    Data(Box<Body>),
    Auth(AuthStep),
}

enum AuthStep {
    Plain,
    LoginUser,
    LoginPassword(String),
}

/// A message arriving in DATA.
struct Body {
    reader: DataReader,
    /// The bytes not yet handed to the sink (our Received line first).
    mem: Vec<u8>,
    /// Set once the message outgrew memory.
    spill: Option<Box<dyn Incoming>>,
    /// Message bytes so far (without our Received line).
    size: usize,
    too_big: bool,
    /// The sink failed while streaming: read to the end, then 451.
    failed: bool,
    started: Instant,
    /// Bytes read from the client in DATA, for the rate check.
    wire: usize,
}

enum Flow {
    Continue,
    Close,
    StartTls,
}

/// An open transaction: after MAIL, until the end of DATA or RSET.
struct Txn {
    from: Address,
    utf8: bool,
    rcpts: Vec<Address>,
}

pub struct Session {
    cfg: Arc<SessionConfig>,
    sink: Arc<dyn MessageSink>,
    auth: Arc<dyn Authenticator>,
    metrics: Arc<Metrics>,
    peer: IpAddr,
    shutdown: watch::Receiver<bool>,
    /// The peer is in `allowed_networks`: it may relay without AUTH.
    trusted: bool,
    started: Instant,
    tls: bool,
    helo: Option<String>,
    esmtp: bool,
    login: Option<Login>,
    txn: Option<Txn>,
    errors: usize,
    /// Bytes of a command line received so far without its newline.
    partial: Vec<u8>,
    /// Inside an over-long command line, dropping bytes until its end.
    skipping_line: bool,
}

fn reply(out: &mut Vec<u8>, code: u16, esc: &str, text: &str) {
    let _ = write!(Out(out), "{code} {esc} {text}\r\n");
}

fn reply_plain(out: &mut Vec<u8>, code: u16, text: &str) {
    let _ = write!(Out(out), "{code} {text}\r\n");
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
            trusted: cfg.allowed_network(peer),
            cfg,
            sink,
            auth,
            metrics,
            peer,
            shutdown,
            started: Instant::now(),
            tls: false,
            helo: None,
            esmtp: false,
            login: None,
            txn: None,
            errors: 0,
            partial: Vec::new(),
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
            let limit = TLS_HANDSHAKE_TIMEOUT.min(self.session_deadline().saturating_duration_since(Instant::now()));
            let mut tls = tokio::time::timeout(limit, acceptor.accept(stream))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
            // RFC 3207: forget everything learned before TLS.
            self.tls = true;
            self.helo = None;
            self.esmtp = false;
            self.txn = None;
            self.serve(&mut tls).await?;
            let _ = tls.shutdown().await;
        }
        Ok(())
    }

    fn session_deadline(&self) -> Instant {
        let mut end = self.started + self.cfg.session_timeout;
        if !self.trusted && self.login.is_none() {
            end = end.min(self.started + self.cfg.preauth_timeout);
        }
        end
    }

    async fn serve<S>(&mut self, stream: &mut S) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut buf = vec![0u8; 32 * 1024];
        let mut out = Vec::with_capacity(1024);
        let mut mode = Mode::Command;
        let mut command_deadline = Instant::now() + self.cfg.idle_timeout;
        loop {
            // Which limit ends the wait for more bytes, and what it says.
            let session_end = self.session_deadline();
            let (deadline, why) = match &mode {
                // A message under way is not cut by the session's deadline
                // (only an authenticated or trusted client gets here): its
                // own deadline and rate bound it.
                Mode::Data(body) => {
                    let data_end = body.started + self.cfg.data_timeout;
                    let idle_end = Instant::now() + self.cfg.idle_timeout;
                    if data_end <= idle_end {
                        (data_end, "4.4.2 DATA took too long, closing connection")
                    } else {
                        (idle_end, "4.4.2 Idle timeout, closing connection")
                    }
                }
                _ if session_end <= command_deadline => (session_end, self.session_limit_text()),
                _ => (command_deadline, "4.4.2 Idle timeout, closing connection"),
            };
            let waiting_for_command = matches!(mode, Mode::Command) && self.txn.is_none();
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)) => r,
                _ = self.shutdown.changed(), if waiting_for_command => {
                    stream.write_all(b"421 4.3.2 Service shutting down, try again later\r\n").await?;
                    return Ok(Flow::Close);
                }
            };
            let n = match read {
                Ok(r) => r?,
                Err(_) => {
                    stream.write_all(format!("421 {why}\r\n").as_bytes()).await?;
                    return Ok(Flow::Close);
                }
            };
            if n == 0 {
                return Ok(Flow::Close);
            }
            let mut input = &buf[..n];
            while !input.is_empty() {
                let flow = match &mut mode {
                    Mode::Data(body) => {
                        body.wire += input.len();
                        let before = body.mem.len();
                        let used = body.reader.feed(input, &mut body.mem);
                        body.size += body.mem.len() - before;
                        match used {
                            Some(used) => {
                                input = &input[used..];
                                let Mode::Data(body) = std::mem::replace(&mut mode, Mode::Command) else {
                                    unreachable!("in DATA mode")
                                };
                                command_deadline = Instant::now() + self.cfg.idle_timeout;
                                self.end_of_data(*body, &mut out).await
                            }
                            None => {
                                input = &[];
                                self.stow(body).await;
                                if self.too_slow(body) {
                                    reply(&mut out, 421, "4.4.2", "DATA too slow, closing connection");
                                    Flow::Close
                                } else {
                                    Flow::Continue
                                }
                            }
                        }
                    }
                    Mode::Command | Mode::Auth(_) => {
                        let Some(line) = self.take_line(&mut input, &mut out) else { continue };
                        command_deadline = Instant::now() + self.cfg.idle_timeout;
                        match line {
                            Err(()) => self.count_error(&mut out),
                            Ok(line) => {
                                if let Mode::Auth(_) = mode {
                                    let Mode::Auth(step) = std::mem::replace(&mut mode, Mode::Command) else {
                                        unreachable!("in AUTH mode")
                                    };
                                    self.auth_line(step, &line, &mut out, &mut mode).await
                                } else {
                                    self.command(&line, &mut out, &mut mode).await
                                }
                            }
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

    fn session_limit_text(&self) -> &'static str {
        if !self.trusted
            && self.login.is_none()
            && self.started + self.cfg.preauth_timeout < self.started + self.cfg.session_timeout
        {
            "4.7.0 Authentication required in time, closing connection"
        } else {
            "4.4.2 Session time limit reached, closing connection"
        }
    }

    /// The next whole command line from `input` (line ending taken off), or
    /// `None` when it has not all arrived. A line over [`MAX_COMMAND_LINE`]
    /// is consumed up to its end and answered once with 500 (`Some(Err)`).
    fn take_line(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> Option<Result<Vec<u8>, ()>> {
        let newline = memchr::memchr(b'\n', input);
        let Some(p) = newline else {
            // The same limit as below, whether or not the CR LF came yet.
            if self.skipping_line || self.partial.len() + input.len() > MAX_COMMAND_LINE + 2 {
                self.skipping_line = true;
                self.partial.clear();
            } else {
                self.partial.extend_from_slice(input);
            }
            *input = &[];
            return None;
        };
        let (head, rest) = input.split_at(p + 1);
        *input = rest;
        if self.skipping_line || self.partial.len() + head.len() > MAX_COMMAND_LINE + 2 {
            self.skipping_line = false;
            self.partial.clear();
            reply(out, 500, "5.5.2", "Line too long");
            return Some(Err(()));
        }
        let mut line = std::mem::take(&mut self.partial);
        line.extend_from_slice(&head[..head.len() - 1]);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(Ok(line))
    }

    /// Hands what is in memory to the sink once it is over [`SPILL_AT`].
    async fn stow(&self, body: &mut Body) {
        if body.too_big || body.failed {
            body.mem.clear();
            return;
        }
        if body.size > self.cfg.max_message_size {
            body.too_big = true;
            body.mem = Vec::new();
            body.spill = None;
            return;
        }
        if body.mem.len() < SPILL_AT {
            return;
        }
        if body.spill.is_none() {
            match self.sink.begin().await {
                Ok(incoming) => body.spill = Some(incoming),
                Err(e) => {
                    tracing::error!(error = %e, "could not start storing a message");
                    body.failed = true;
                    body.mem = Vec::new();
                    return;
                }
            }
        }
        let chunk = std::mem::replace(&mut body.mem, Vec::with_capacity(SPILL_AT + 64 * 1024));
        if let Some(spill) = body.spill.as_mut()
            && let Err(e) = spill.write(chunk).await
        {
            tracing::error!(error = %e, "could not store a message");
            body.failed = true;
            body.spill = None;
            body.mem = Vec::new();
        }
    }

    fn too_slow(&self, body: &Body) -> bool {
        let elapsed = body.started.elapsed();
        elapsed > self.cfg.rate_grace && (body.wire as f64) < self.cfg.min_data_rate as f64 * elapsed.as_secs_f64()
    }

    fn count_error(&mut self, out: &mut Vec<u8>) -> Flow {
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            reply(out, 421, "4.7.0", "Too many errors, closing connection");
            return Flow::Close;
        }
        Flow::Continue
    }

    fn refused(&mut self, r: Refusal, out: &mut Vec<u8>) -> Flow {
        reply(out, r.code, r.esc, &r.text);
        self.count_error(out)
    }

    async fn command(&mut self, line: &[u8], out: &mut Vec<u8>, mode: &mut Mode) -> Flow {
        let utf8 = self.txn.as_ref().is_some_and(|t| t.utf8);
        let command = match command::parse(line, utf8) {
            Ok(c) => c,
            Err(r) => {
                if r.code >= 500 && (line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"MAIL")) {
                    self.metrics.rejected.fetch_add(1, Relaxed);
                }
                return self.refused(r, out);
            }
        };
        match command {
            Command::Ehlo(host) => {
                self.txn = None;
                self.esmtp = true;
                // The client's name is not echoed: the peer's address says who it is.
                let mut lines = vec![format!("{} Hello [{}]", self.cfg.hostname, self.peer)];
                lines.push("PIPELINING".into());
                lines.push(format!("SIZE {}", self.cfg.max_message_size));
                lines.push("8BITMIME".into());
                lines.push("SMTPUTF8".into());
                lines.push("ENHANCEDSTATUSCODES".into());
                if self.cfg.tls.is_some() && !self.tls {
                    lines.push("STARTTLS".into());
                }
                if self.cfg.tls.is_some() && self.tls && self.login.is_none() {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                let last = lines.len() - 1;
                for (i, line) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    let _ = write!(Out(out), "250{sep}{line}\r\n");
                }
                self.helo = Some(host);
            }
            Command::Helo(host) => {
                self.txn = None;
                self.esmtp = false;
                reply_plain(out, 250, &format!("{} Hello [{}]", self.cfg.hostname, self.peer));
                self.helo = Some(host);
            }
            Command::Mail(mail) => return self.mail(mail, out),
            Command::Rcpt(to) => return self.rcpt(to, out),
            Command::Data => {
                let Some(txn) = &self.txn else {
                    reply(out, 503, "5.5.1", "Error: need MAIL command");
                    return self.count_error(out);
                };
                if txn.rcpts.is_empty() {
                    reply(out, 554, "5.5.1", "Error: no valid recipients");
                    return self.count_error(out);
                }
                reply_plain(out, 354, "End data with <CR><LF>.<CR><LF>");
                let mut mem = Vec::with_capacity(16 * 1024);
                mem.extend_from_slice(self.received_header().as_bytes());
                *mode = Mode::Data(Box::new(Body {
                    reader: DataReader::default(),
                    mem,
                    spill: None,
                    size: 0,
                    too_big: false,
                    failed: false,
                    started: Instant::now(),
                    wire: 0,
                }));
            }
            Command::Rset => {
                self.txn = None;
                reply(out, 250, "2.0.0", "Ok");
            }
            Command::Noop => reply(out, 250, "2.0.0", "Ok"),
            Command::Quit => {
                reply(out, 221, "2.0.0", "Bye");
                return Flow::Close;
            }
            Command::Vrfy => reply(out, 252, "2.5.0", "Cannot VRFY user, but will accept message"),
            Command::Expn => reply(out, 502, "5.5.1", "EXPN not available"),
            Command::Help => reply(out, 214, "2.0.0", "See RFC 5321"),
            Command::StartTls => {
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
            Command::Auth { mechanism, initial } => return self.auth_start(mechanism, initial, out, mode).await,
            Command::NotImplemented => {
                reply(out, 502, "5.5.1", "Command not implemented");
                return self.count_error(out);
            }
        }
        Flow::Continue
    }

    fn mail(&mut self, mail: MailFrom, out: &mut Vec<u8>) -> Flow {
        if self.helo.is_none() {
            reply(out, 503, "5.5.1", "Error: send HELO/EHLO first");
            return self.count_error(out);
        }
        if self.txn.is_some() {
            reply(out, 503, "5.5.1", "Error: nested MAIL command");
            return self.count_error(out);
        }
        let size = mail.size.unwrap_or(0);
        if size > self.cfg.max_message_size as u64 {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 552, "5.3.4", "Message size exceeds fixed maximum message size");
            return Flow::Continue;
        }
        if self.login.is_none() && !self.trusted {
            self.metrics.rejected.fetch_add(1, Relaxed);
            if self.cfg.tls.is_some() {
                reply(out, 530, "5.7.0", "Authentication required");
            } else {
                reply(out, 554, "5.7.1", "Relay access denied: client not in allowed networks");
            }
            return self.count_error(out);
        }
        let from = mail.from;
        if from.is_null() {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 550, "5.7.1", "Null sender not accepted: tomare relays only the organisation's own mail");
            return self.count_error(out);
        }
        if !from.is_internal(&self.cfg.internal_domains) {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 550, "5.7.1", &format!("Sender <{from}> is not in this organisation's domains"));
            return self.count_error(out);
        }
        if let Some(login) = &self.login
            && !login.may_send_as(&from)
        {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 553, "5.7.1", &format!("Sender <{from}> is not owned by the authenticated user"));
            return self.count_error(out);
        }
        if !self.metrics.health.room_for(size) {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 452, "4.3.1", "Insufficient system storage, try again later");
            return Flow::Continue;
        }
        self.txn = Some(Txn { from, utf8: mail.utf8, rcpts: Vec::new() });
        reply(out, 250, "2.1.0", "Ok");
        Flow::Continue
    }

    fn rcpt(&mut self, to: Address, out: &mut Vec<u8>) -> Flow {
        let Some(txn) = &mut self.txn else {
            reply(out, 503, "5.5.1", "Error: need MAIL command");
            return self.count_error(out);
        };
        if txn.rcpts.len() >= self.cfg.max_recipients {
            reply(out, 452, "4.5.3", "Too many recipients");
            return Flow::Continue;
        }
        txn.rcpts.push(to);
        reply(out, 250, "2.1.5", "Ok");
        Flow::Continue
    }

    async fn end_of_data(&mut self, mut body: Body, out: &mut Vec<u8>) -> Flow {
        let started = Instant::now();
        let Some(txn) = self.txn.take() else {
            reply(out, 503, "5.5.1", "Error: need MAIL command");
            return Flow::Continue;
        };
        if body.too_big || body.size > self.cfg.max_message_size {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 552, "5.3.4", "Message size exceeds fixed maximum message size");
            return Flow::Continue;
        }
        if body.failed {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 451, "4.3.0", "Temporary failure storing the message, try again later");
            return Flow::Continue;
        }
        if !self.metrics.health.room_for(body.size as u64) {
            self.metrics.rejected.fetch_add(1, Relaxed);
            reply(out, 452, "4.3.1", "Insufficient system storage, try again later");
            return Flow::Continue;
        }
        let envelope = Envelope {
            mail_from: txn.from,
            rcpt_to: txn.rcpts,
            helo: self.helo.clone().unwrap_or_default(),
            client_ip: self.peer.to_string(),
            auth_user: self.login.as_ref().map(|l| l.user.clone()),
        };
        let result = match body.spill.take() {
            None => self.sink.accept(envelope, body.mem).await,
            Some(mut spill) => match spill.write(std::mem::take(&mut body.mem)).await {
                Ok(()) => spill.finish(envelope).await,
                Err(e) => Err(e),
            },
        };
        match result {
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
        let proto = match (self.esmtp, self.tls, self.login.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        // The HELO name is printable ASCII (the parser refused the rest).
        let helo = self.helo.as_deref().unwrap_or("unknown");
        format!(
            "Received: from {helo} ([{}])\r\n\tby {} (tomare) with {proto};\r\n\t{}\r\n",
            self.peer,
            self.cfg.hostname,
            rfc2822(now_ms())
        )
    }

    async fn auth_start(
        &mut self,
        mechanism: Mechanism,
        initial: Option<String>,
        out: &mut Vec<u8>,
        mode: &mut Mode,
    ) -> Flow {
        if self.cfg.tls.is_none() {
            reply(out, 502, "5.5.1", "AUTH not available");
            return self.count_error(out);
        }
        if !self.tls {
            reply(out, 538, "5.7.11", "Encryption required for requested authentication mechanism");
            return self.count_error(out);
        }
        if self.login.is_some() {
            reply(out, 503, "5.5.1", "Already authenticated");
            return self.count_error(out);
        }
        if self.txn.is_some() {
            reply(out, 503, "5.5.1", "AUTH not allowed during a mail transaction");
            return self.count_error(out);
        }
        match (mechanism, initial) {
            (Mechanism::Plain, Some(initial)) => self.auth_line(AuthStep::Plain, initial.as_bytes(), out, mode).await,
            (Mechanism::Plain, None) => {
                reply_plain(out, 334, "");
                *mode = Mode::Auth(AuthStep::Plain);
                Flow::Continue
            }
            (Mechanism::Login, initial) => match initial {
                Some(user) => match decode(&user) {
                    Some(user) => {
                        reply_plain(out, 334, "UGFzc3dvcmQ6");
                        *mode = Mode::Auth(AuthStep::LoginPassword(user));
                        Flow::Continue
                    }
                    None => {
                        reply(out, 501, "5.5.2", "Invalid base64 data");
                        self.count_error(out)
                    }
                },
                None => {
                    reply_plain(out, 334, "VXNlcm5hbWU6");
                    *mode = Mode::Auth(AuthStep::LoginUser);
                    Flow::Continue
                }
            },
            (Mechanism::Other, _) => {
                reply(out, 504, "5.5.4", "Unrecognized authentication type");
                self.count_error(out)
            }
        }
    }

    async fn auth_line(&mut self, step: AuthStep, line: &[u8], out: &mut Vec<u8>, mode: &mut Mode) -> Flow {
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        if line == "*" {
            reply(out, 501, "5.0.0", "Authentication aborted");
            return self.count_error(out);
        }
        let Some(decoded) = decode(line) else {
            reply(out, 501, "5.5.2", "Invalid base64 data");
            return self.count_error(out);
        };
        let (user, password) = match step {
            AuthStep::LoginUser => {
                reply_plain(out, 334, "UGFzc3dvcmQ6");
                *mode = Mode::Auth(AuthStep::LoginPassword(decoded));
                return Flow::Continue;
            }
            AuthStep::LoginPassword(user) => (user, decoded),
            AuthStep::Plain => {
                let mut parts = decoded.split('\0');
                let (_authzid, user, password) = (parts.next(), parts.next(), parts.next());
                match (user, password) {
                    (Some(u), Some(p)) if parts.next().is_none() => (u.to_string(), p.to_string()),
                    _ => {
                        reply(out, 501, "5.5.2", "Malformed AUTH PLAIN response");
                        return self.count_error(out);
                    }
                }
            }
        };
        let shown = tomare_model::escape_controls(&user).into_owned();
        let Some(attempt) = self.cfg.auth_guard.begin(&user, self.peer) else {
            tracing::warn!(user = %shown, peer = %self.peer, "authentication refused: too many failures");
            reply(out, 454, "4.7.0", "Too many failed authentication attempts, try again later");
            return self.count_error(out);
        };
        let login = self.auth.verify(&user, &password).await;
        attempt.finish(login.is_some());
        match login {
            Some(login) => {
                tracing::info!(user = %shown, peer = %self.peer, "authenticated");
                self.login = Some(login);
                reply(out, 235, "2.7.0", "Authentication successful");
                Flow::Continue
            }
            None => {
                tracing::warn!(user = %shown, peer = %self.peer, "authentication failed");
                tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                reply(out, 535, "5.7.8", "Authentication credentials invalid");
                self.count_error(out)
            }
        }
    }
}

/// Base64 to text; `=` is the empty response.
fn decode(line: &str) -> Option<String> {
    let bytes = if line == "=" { Vec::new() } else { B64.decode(line).ok()? };
    String::from_utf8(bytes).ok()
}

struct Out<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
