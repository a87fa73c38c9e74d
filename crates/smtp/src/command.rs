//! Command lines → commands (pure). One complete line in, one [`Command`]
//! or the reply that refuses it out; the session does the rest.
//!
//! Strict where leniency leaks: a line with a control character or invalid
//! UTF-8 is refused whole, paths need their angle brackets, the mailbox
//! inside them is an [`Address`] (local part and domain apart, quoted form
//! kept), unknown parameters are refused rather than ignored.

use tomare_model::{Address, AddressError};

/// A refusal: the reply code, enhanced status code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub esc: &'static str,
    pub text: String,
}

fn refuse(code: u16, esc: &'static str, text: impl Into<String>) -> Refusal {
    Refusal { code, esc, text: text.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    Mail(MailFrom),
    Rcpt(Address),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth {
        mechanism: Mechanism,
        initial: Option<String>,
    },
    /// BDAT, ETRN, ATRN, BURL, TURN: known, not offered.
    NotImplemented,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// [`Address::null`] for `<>`.
    pub from: Address,
    /// `SIZE=`, when given.
    pub size: Option<u64>,
    /// `SMTPUTF8`: addresses and headers may carry UTF-8.
    pub utf8: bool,
}

/// Parses one command line, its line ending (`\r\n` or `\n`) already taken
/// off. `utf8`: the current transaction's `SMTPUTF8` (for RCPT).
pub fn parse(line: &[u8], utf8: bool) -> Result<Command, Refusal> {
    if let Some(&b) = line.iter().find(|&&b| b < 0x20 || b == 0x7f) {
        let what = match b {
            0 => "NUL",
            b'\r' => "bare CR",
            _ => "control character",
        };
        return Err(refuse(501, "5.5.2", format!("Syntax error: {what} in command line")));
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(refuse(501, "5.5.2", "Syntax error: invalid UTF-8 in command line"));
    };
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |c: Command| {
        if rest.trim().is_empty() { Ok(c) } else { Err(refuse(501, "5.5.4", "Syntax error: no arguments allowed")) }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let host = rest.trim();
            if host.is_empty() || host.contains(' ') {
                return Err(refuse(501, "5.5.4", format!("Syntax: {verb} hostname")));
            }
            // It goes into Received headers and the queue: printable ASCII
            // only (no C1 controls, no bidi marks).
            if !host.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(refuse(501, "5.5.2", "Syntax error: host name must be printable ASCII"));
            }
            if host.len() > 255 {
                return Err(refuse(501, "5.5.4", "Syntax error: host name too long"));
            }
            Ok(if verb == "EHLO" { Command::Ehlo(host.into()) } else { Command::Helo(host.into()) })
        }
        "MAIL" => mail(rest).map(Command::Mail),
        "RCPT" => rcpt(rest, utf8).map(Command::Rcpt),
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => {
            let mut words = rest.split(' ').filter(|w| !w.is_empty());
            let mechanism = match words.next().map(str::to_ascii_uppercase).as_deref() {
                Some("PLAIN") => Mechanism::Plain,
                Some("LOGIN") => Mechanism::Login,
                Some(_) => Mechanism::Other,
                None => return Err(refuse(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")),
            };
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(refuse(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        "BDAT" | "ETRN" | "ATRN" | "BURL" | "TURN" => Ok(Command::NotImplemented),
        _ => Err(refuse(500, "5.5.1", "Command unrecognized")),
    }
}

/// `FROM:<reverse-path> [SP params]`.
fn mail(rest: &str) -> Result<MailFrom, Refusal> {
    const SYNTAX: &str = "Syntax: MAIL FROM:<address> [parameters]";
    let Some(arg) = strip_keyword(rest, "FROM:") else {
        return Err(refuse(501, "5.5.4", SYNTAX));
    };
    let (path, params) = split_path(arg).ok_or_else(|| refuse(501, "5.5.4", SYNTAX))?;
    let mut mail = MailFrom { from: Address::null(), size: None, utf8: false };
    let mut seen = Vec::new();
    for (key, value) in parse_params(params)? {
        if seen.contains(&key) {
            return Err(refuse(501, "5.5.4", format!("Parameter {key} given twice")));
        }
        match (key.as_str(), value) {
            ("SIZE", Some(v)) if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => {
                mail.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
            ("SMTPUTF8", None) => mail.utf8 = true,
            // RFC 4954: the identity the message was submitted under;
            // ignored, but legal once AUTH is offered.
            ("AUTH", Some(_)) => {}
            ("SIZE" | "BODY" | "SMTPUTF8" | "AUTH", _) => {
                return Err(refuse(501, "5.5.4", format!("Invalid value for parameter {key}")));
            }
            _ => return Err(refuse(555, "5.5.4", format!("Unsupported parameter {key}"))),
        }
        seen.push(key);
    }
    if !path.is_empty() {
        mail.from = mailbox(path, mail.utf8, "5.1.7")?;
    }
    Ok(mail)
}

/// `TO:<forward-path>`; no parameters are offered for RCPT.
fn rcpt(rest: &str, utf8: bool) -> Result<Address, Refusal> {
    const SYNTAX: &str = "Syntax: RCPT TO:<address>";
    let Some(arg) = strip_keyword(rest, "TO:") else {
        return Err(refuse(501, "5.5.4", SYNTAX));
    };
    let (path, params) = split_path(arg).ok_or_else(|| refuse(501, "5.5.4", SYNTAX))?;
    if let Some((key, _)) = parse_params(params)?.into_iter().next() {
        return Err(refuse(555, "5.5.4", format!("Unsupported parameter {key}")));
    }
    if path.is_empty() {
        return Err(refuse(501, "5.1.3", "Bad recipient address syntax: empty"));
    }
    if path.eq_ignore_ascii_case("postmaster") {
        return Err(refuse(550, "5.1.1", "Postmaster of this gateway does not receive mail"));
    }
    mailbox(path, utf8, "5.1.3")
}

/// `FROM:` / `TO:` case-insensitively, allowing the spaces many clients
/// put around the colon.
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let rest = rest.trim_start();
    let word = keyword.trim_end_matches(':');
    let head = rest.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    rest[word.len()..].trim_start().strip_prefix(':').map(str::trim_start)
}

/// Splits `<path> params` at the closing bracket that ends the path: the
/// first `>` outside a quoted string. `None` without brackets.
fn split_path(arg: &str) -> Option<(&str, &str)> {
    let inner = arg.strip_prefix('<')?;
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let params = &inner[i + 1..];
                if !params.is_empty() && !params.starts_with(' ') {
                    return None;
                }
                return Some((&inner[..i], params));
            }
            _ => {}
        }
    }
    None
}

/// `KEYWORD[=value]` separated by spaces. Keywords upper-cased.
fn parse_params(s: &str) -> Result<Vec<(String, Option<&str>)>, Refusal> {
    let mut out = Vec::new();
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'='));
        if !key_ok || !value_ok {
            return Err(refuse(501, "5.5.4", "Syntax error in parameters"));
        }
        out.push((key.to_ascii_uppercase(), value));
    }
    Ok(out)
}

/// The mailbox inside the brackets; a source route (`@a,@b:`) is dropped,
/// as RFC 5321 §C asks.
fn mailbox(path: &str, utf8: bool, esc: &'static str) -> Result<Address, Refusal> {
    let path = match path.strip_prefix('@') {
        Some(route) => match route.split_once(':') {
            Some((hops, rest)) if hops.split(',').all(|h| h.trim_start_matches('@').contains('.')) => rest,
            _ => return Err(refuse(501, esc, "Bad address syntax: source route")),
        },
        None => path,
    };
    Address::parse(path, utf8).map_err(|e| match e {
        AddressError::NeedsUtf8 => refuse(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"),
        AddressError::TooLong => refuse(553, esc, "Address too long"),
        e => refuse(553, esc, format!("Bad address syntax: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line.as_bytes(), false).unwrap_or_else(|r| panic!("{line:?}: {r:?}"))
    }

    fn code(line: &[u8]) -> u16 {
        parse(line, false)
            .map(|c| panic!("{:?} was accepted as {c:?}", String::from_utf8_lossy(line)))
            .unwrap_err()
            .code
    }

    #[test]
    fn mail_and_rcpt_keep_quoted_local_parts_apart_from_the_domain() {
        let Command::Mail(m) = ok("MAIL FROM:<taro@example.com> SIZE=1000 BODY=8BITMIME") else { panic!() };
        assert_eq!((m.from.to_string().as_str(), m.size, m.utf8), ("taro@example.com", Some(1000), false));
        let Command::Rcpt(a) = ok(r#"RCPT TO:<"ceo@competitor.com ORCPT=rfc822;"@example.com>"#) else { panic!() };
        assert_eq!(a.domain(), "example.com");
        assert_eq!(a.local(), "ceo@competitor.com ORCPT=rfc822;");
        assert_eq!(a.to_string(), r#""ceo@competitor.com ORCPT=rfc822;"@example.com"#);
        // A quoted '>' would end the path for a lax parser; here it is refused.
        assert_eq!(code(br#"RCPT TO:<"ceo@competitor.com> ORCPT=rfc822;"@example.com>"#), 553);
        assert_eq!(code(br#"MAIL FROM:<"spoof@evil.net> ENVID="@example.com>"#), 553);
        let Command::Mail(m) = ok("mail from: <>") else { panic!() };
        assert!(m.from.is_null());
        let Command::Rcpt(a) = ok("RCPT TO:<@relay.example.net,@b.example.org:taro@example.com>") else { panic!() };
        assert_eq!(a.to_string(), "taro@example.com");
    }

    #[test]
    fn malformed_paths_and_parameters_are_refused() {
        for (line, want) in [
            (&b"MAIL FROM:taro@example.com"[..], 501),
            (b"MAIL FROM:<taro@example.com", 501),
            (b"MAIL FROM:<taro@example.com>SIZE=1", 501),
            (b"MAIL FROM:<a b@example.com>", 553),
            (b"MAIL FROM:<taro@example.com> ENVID=x", 555),
            (b"MAIL FROM:<taro@example.com> SIZE=x", 501),
            (b"MAIL FROM:<taro@example.com> SIZE=1 SIZE=2", 501),
            (b"MAIL FROM:<taro@example.com> BODY=BINARYMIME", 501),
            (b"RCPT TO:<x@example.com> NOTIFY=NEVER", 555),
            (b"RCPT TO:<>", 501),
            (b"RCPT TO:<postmaster>", 550),
            (b"RCPT TO:<x@[127.0.0.1]>", 553),
            (b"RCPT TO:<x@example.com>>", 501),
            (b"RCPT TO:<x\x00y@example.com>", 501),
            (b"RCPT TO:<x@example.com>\rRCPT TO:<y@evil.net>", 501),
            (b"RCPT TO:<\xff@example.com>", 501),
            (b"EHLO bad\x1b]0;owned\x07", 501),
            ("EHLO bad\u{9b}2J".as_bytes(), 501),
            ("HELO \u{202e}exe.example".as_bytes(), 501),
            (b"EHLO", 501),
            (b"HELO a b", 501),
            (b"DATA now", 501),
            (b"FROB", 500),
        ] {
            assert_eq!(code(line), want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn utf8_addresses_need_smtputf8() {
        assert_eq!(parse("MAIL FROM:<山田@example.com>".as_bytes(), false).unwrap_err().esc, "5.6.7");
        let Command::Mail(m) = ok("MAIL FROM:<山田@example.com> SMTPUTF8") else { panic!() };
        assert!(m.utf8);
        assert_eq!(parse("RCPT TO:<花子@example.jp>".as_bytes(), false).unwrap_err().code, 553);
        assert!(matches!(parse("RCPT TO:<花子@example.jp>".as_bytes(), true), Ok(Command::Rcpt(_))));
    }

    #[test]
    fn other_commands() {
        assert_eq!(ok("ehlo client.example.net"), Command::Ehlo("client.example.net".into()));
        assert_eq!(
            ok("AUTH PLAIN AGEAYg=="),
            Command::Auth { mechanism: Mechanism::Plain, initial: Some("AGEAYg==".into()) }
        );
        assert_eq!(ok("auth login"), Command::Auth { mechanism: Mechanism::Login, initial: None });
        assert_eq!(ok("BDAT 100 LAST"), Command::NotImplemented);
        assert_eq!(ok("NOOP anything"), Command::Noop);
    }
}
