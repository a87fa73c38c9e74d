//! Envelope addresses as RFC 5321 §4.1.2 defines them: a local part and a
//! domain kept apart, so that nothing downstream ever has to guess where one
//! ends and the other begins.
//!
//! The local part is stored as its content (quotes and backslashes taken
//! off); [`Address`]'s `Display` writes the canonical form, quoted whenever
//! the content is not a dot-string. So `"ceo@rival.example> X"@example.com`
//! can never be read back as two addresses, and classification reads
//! [`Address::domain`], never "whatever follows the last `@`".
//!
//! Stricter than the RFC where leniency would leak: NUL, CR, LF, every other
//! control character, `<` and `>` are refused even inside quotes; address
//! literals (`user@[192.0.2.1]`) are refused; non-ASCII needs `SMTPUTF8`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Longest local part accepted, in bytes. RFC 5321 says 64 but asks for
/// leniency; real reply-to and bounce addresses run past 64.
pub const MAX_LOCAL: usize = 128;
/// Longest domain, in bytes (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;

/// An envelope mailbox. The null reverse-path `<>` is the one address with
/// an empty local part and domain ([`Address::null`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: String,
    /// Lower case (ASCII); U-labels as given.
    domain: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    Empty,
    /// No `@`, or nothing before or after it.
    MissingDomain,
    /// A character that may not appear where it does (the reason says which).
    BadLocalPart(&'static str),
    BadDomain(&'static str),
    /// `user@[192.0.2.1]`: tomare delivers only to domains.
    AddressLiteral,
    TooLong,
    /// Non-ASCII without `SMTPUTF8`.
    NeedsUtf8,
}

impl AddressError {
    /// In plain words, for an SMTP reply or a config error.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressError::Empty => "empty address",
            AddressError::MissingDomain => "an address needs a local part, @ and a domain",
            AddressError::BadLocalPart(why) | AddressError::BadDomain(why) => why,
            AddressError::AddressLiteral => "address literals are not accepted",
            AddressError::TooLong => "address too long",
            AddressError::NeedsUtf8 => "non-ASCII address without SMTPUTF8",
        }
    }
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for AddressError {}

/// RFC 5322 `atext`, plus (with SMTPUTF8) any non-ASCII character.
fn is_atext(c: char, utf8: bool) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (utf8 && !c.is_ascii() && !c.is_control())
}

fn is_dot_string(s: &str, utf8: bool) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(|c| is_atext(c, utf8)))
}

impl Address {
    /// The null reverse-path `<>`.
    pub fn null() -> Address {
        Address { local: String::new(), domain: String::new() }
    }

    pub fn is_null(&self) -> bool {
        self.local.is_empty() && self.domain.is_empty()
    }

    /// Parses a mailbox (`local@domain`, no angle brackets). `utf8`: the
    /// transaction carried `SMTPUTF8`, so non-ASCII is allowed.
    pub fn parse(s: &str, utf8: bool) -> Result<Address, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if !utf8 && !s.is_ascii() {
            return Err(AddressError::NeedsUtf8);
        }
        let (local, rest) = if let Some(quoted) = s.strip_prefix('"') {
            let (content, len) = unquote(quoted)?;
            (content, &quoted[len..])
        } else {
            let end = s.find('@').ok_or(AddressError::MissingDomain)?;
            let local = &s[..end];
            if local.is_empty() {
                return Err(AddressError::MissingDomain);
            }
            if let Some(c) = local.chars().find(|&c| c.is_control() || c == '<' || c == '>') {
                return Err(AddressError::BadLocalPart(if c == '\0' {
                    "NUL in the local part"
                } else if c == '<' || c == '>' {
                    "< or > in the local part"
                } else {
                    "control character in the local part"
                }));
            }
            if !is_dot_string(local, utf8) {
                return Err(AddressError::BadLocalPart("special characters in an unquoted local part"));
            }
            (local.to_string(), &s[end..])
        };
        let domain = rest.strip_prefix('@').ok_or(AddressError::BadLocalPart("text after the quoted local part"))?;
        if local.len() > MAX_LOCAL || domain.len() > MAX_DOMAIN {
            return Err(AddressError::TooLong);
        }
        let domain = parse_domain(domain, utf8)?;
        Ok(Address { local, domain })
    }

    /// An address as an older, laxer parser may have stored it (quotes
    /// dropped: `john doe@example.com`): strict first, else the text before
    /// the last `@` taken as a quoted local part — what that parser meant.
    /// `None` when even that is not an address (a NUL, `<`, a bad domain).
    pub fn parse_lenient(s: &str) -> Option<Address> {
        if let Ok(a) = Address::parse(s, true) {
            return Some(a);
        }
        let (local, domain) = s.rsplit_once('@')?;
        let quoted: String =
            local.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).collect();
        Address::parse(&format!("\"{quoted}\"@{domain}"), true).ok()
    }

    /// The local part's content, unquoted.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain, lower case; empty only for the null sender.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether either part is non-ASCII (so `SMTPUTF8` is needed to send it).
    pub fn needs_utf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }

    /// Whether the domain is one of `internal` or below one of them.
    pub fn is_internal(&self, internal: &[String]) -> bool {
        !self.is_null() && crate::is_internal_domain(&self.domain, internal)
    }

    /// The same mailbox whatever the case: for comparing with addresses
    /// people typed (`[[user]]`, `--send-as`). Mail systems treat local parts
    /// case-insensitively in practice.
    pub fn eq_ignore_case(&self, other: &Address) -> bool {
        self.domain == other.domain && self.local.to_lowercase() == other.local.to_lowercase()
    }
}

/// The content of a quoted local part starting after its opening quote;
/// returns the content and how many bytes the quoted string took (closing
/// quote included).
fn unquote(s: &str) -> Result<(String, usize), AddressError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        let c = match c {
            '"' => {
                if out.is_empty() {
                    return Err(AddressError::BadLocalPart("empty quoted local part"));
                }
                return Ok((out, i + 1));
            }
            '\\' => match chars.next() {
                Some((_, e)) => e,
                None => break,
            },
            c => c,
        };
        match c {
            '\0' => return Err(AddressError::BadLocalPart("NUL in the local part")),
            '<' | '>' => return Err(AddressError::BadLocalPart("< or > in the local part")),
            c if c.is_control() => return Err(AddressError::BadLocalPart("control character in the local part")),
            c => out.push(c),
        }
    }
    Err(AddressError::BadLocalPart("unterminated quoted local part"))
}

fn parse_domain(d: &str, utf8: bool) -> Result<String, AddressError> {
    if d.is_empty() {
        return Err(AddressError::MissingDomain);
    }
    if d.starts_with('[') {
        return Err(AddressError::AddressLiteral);
    }
    for label in d.split('.') {
        if label.is_empty() {
            return Err(AddressError::BadDomain("empty label in the domain"));
        }
        if label.len() > 63 {
            return Err(AddressError::BadDomain("domain label longer than 63 bytes"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::BadDomain("domain label starts or ends with -"));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || (utf8 && !c.is_ascii() && c.is_alphanumeric());
        if !label.chars().all(ok) {
            return Err(AddressError::BadDomain("character not allowed in a domain"));
        }
    }
    Ok(d.to_ascii_lowercase())
}

impl fmt::Display for Address {
    /// The canonical form: `local@domain`, the local part quoted (with `"`
    /// and `\` escaped) unless it is a dot-string. Empty for `<>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            return Ok(());
        }
        if is_dot_string(&self.local, true) {
            f.write_str(&self.local)?;
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        write!(f, "@{}", self.domain)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{self}>")
    }
}

/// A sender an authenticated user may use besides their own address
/// (`tomare user add … --send-as`): one address, or every address of a
/// domain (`@example.com`, for an application's relay account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendAs {
    Address(Address),
    Domain(String),
}

impl SendAs {
    pub fn permits(&self, from: &Address) -> bool {
        match self {
            SendAs::Address(a) => a.eq_ignore_case(from),
            SendAs::Domain(d) => from.domain() == d,
        }
    }

    /// The domain the grant lies in.
    pub fn domain(&self) -> &str {
        match self {
            SendAs::Address(a) => a.domain(),
            SendAs::Domain(d) => d,
        }
    }
}

impl std::str::FromStr for SendAs {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<SendAs, AddressError> {
        match s.strip_prefix('@') {
            Some(domain) => Ok(SendAs::Domain(parse_domain(domain, true)?)),
            None => Address::parse(s, true).map(SendAs::Address),
        }
    }
}

impl fmt::Display for SendAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendAs::Address(a) => write!(f, "{a}"),
            SendAs::Domain(d) => write!(f, "@{d}"),
        }
    }
}

/// `addr == "taro@example.com"`: the same mailbox as that text parses to.
impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        other.parse::<Address>().is_ok_and(|o| o == *self)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    /// The canonical form (or any valid mailbox, UTF-8 allowed); "" is `<>`.
    fn from_str(s: &str) -> Result<Address, AddressError> {
        if s.is_empty() { Ok(Address::null()) } else { Address::parse(s, true) }
    }
}

/// Stored and sent as its canonical text ("" for `<>`), so records written
/// before addresses were a type read the same.
impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Address {
        Address::parse(s, false).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn plain_and_quoted_local_parts_keep_the_domain_apart() {
        let a = ok("Taro.Yamada+jp@Example.COM");
        assert_eq!((a.local(), a.domain()), ("Taro.Yamada+jp", "example.com"));
        assert_eq!(a.to_string(), "Taro.Yamada+jp@example.com");
        // The attack of issue 9: the quoted text is the local part, and the
        // domain is what follows the closing quote.
        let q = ok(r#""ceo@competitor.com ORCPT=rfc822;"@example.com"#);
        assert_eq!(q.local(), "ceo@competitor.com ORCPT=rfc822;");
        assert_eq!(q.domain(), "example.com");
        assert_eq!(q.to_string(), r#""ceo@competitor.com ORCPT=rfc822;"@example.com"#);
        // Quoting that is not needed is taken off; escapes survive.
        assert_eq!(ok(r#""taro"@example.com"#).to_string(), "taro@example.com");
        let e = ok(r#""a\"b\\c"@example.com"#);
        assert_eq!(e.local(), r#"a"b\c"#);
        assert_eq!(e.to_string(), r#""a\"b\\c"@example.com"#);
        assert_eq!(ok(r#""john doe"@example.com"#).to_string(), r#""john doe"@example.com"#);
    }

    #[test]
    fn dangerous_characters_are_refused_even_quoted() {
        for bad in [
            "\"ceo@competitor.com> ORCPT=rfc822;\"@example.com",
            "\"a<b\"@example.com",
            "\"a\0b\"@example.com",
            "\"a\rb\"@example.com",
            "\"a\nb\"@example.com",
            "\"a\\\nb\"@example.com",
            "a\x1bb@example.com",
            "a b@example.com",
            "a,b@example.com",
            "a(b)@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "\"\"@example.com",
            "\"unterminated@example.com",
            "\"x\"y@example.com",
            "@example.com",
            "nodomain",
            "a@",
            "a@b@c.com",
            "a@[192.0.2.1]",
            "a@exa mple.com",
            "a@-example.com",
            "a@example..com",
            "a@example.com.",
            "a@exam>ple.com",
        ] {
            assert!(Address::parse(bad, true).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Address::parse(&format!("{}@x.com", "a".repeat(129)), false), Err(AddressError::TooLong));
    }

    #[test]
    fn non_ascii_needs_smtputf8() {
        assert_eq!(Address::parse("山田@example.jp", false), Err(AddressError::NeedsUtf8));
        assert_eq!(Address::parse("taro@例え.jp", false), Err(AddressError::NeedsUtf8));
        let a = Address::parse("山田@例え.jp", true).unwrap();
        assert!(a.needs_utf8());
        assert_eq!(a.to_string(), "山田@例え.jp");
        assert!(!ok("taro@example.jp").needs_utf8());
    }

    #[test]
    fn canonical_form_reads_back_the_same() {
        for s in ["a@b.c", r#""a b"@c.d"#, r#""a\"@evil.net"@example.com"#, r#""\\"@x.y"#, "山@例.jp"] {
            let a = Address::parse(s, true).unwrap();
            let back: Address = a.to_string().parse().unwrap();
            assert_eq!(a, back, "{s}");
        }
        let null: Address = "".parse().unwrap();
        assert!(null.is_null());
        assert_eq!(null.to_string(), "");
        let json = serde_json::to_string(&ok(r#""x y"@example.com"#)).unwrap();
        assert_eq!(json, r#""\"x y\"@example.com""#);
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), ok(r#""x y"@example.com"#));
    }

    #[test]
    fn lenient_reading_of_what_a_laxer_parser_stored() {
        assert_eq!(Address::parse_lenient("john doe@Example.com").unwrap().to_string(), r#""john doe"@example.com"#);
        assert_eq!(Address::parse_lenient("a@b@c.test").unwrap().local(), "a@b");
        assert_eq!(Address::parse_lenient("Taro@Example.COM").unwrap().to_string(), "Taro@example.com");
        assert!(Address::parse_lenient("x<y@z.test").is_none());
        assert!(Address::parse_lenient("nodomain").is_none());
    }

    #[test]
    fn grants_name_an_address_or_a_domain() {
        let one: SendAs = "Team@Example.com".parse().unwrap();
        let all: SendAs = "@Example.com".parse().unwrap();
        assert!(one.permits(&ok("team@example.com")) && !one.permits(&ok("boss@example.com")));
        assert!(all.permits(&ok("boss@example.com")) && !all.permits(&ok("boss@sub.example.com")));
        assert_eq!(all.to_string(), "@example.com");
        assert!("@".parse::<SendAs>().is_err() && "@[1.2.3.4]".parse::<SendAs>().is_err());
    }

    #[test]
    fn internal_is_decided_by_the_domain_field() {
        let internal = vec!["example.com".to_string()];
        assert!(ok(r#""boss@rival.net"@example.com"#).is_internal(&internal));
        assert!(!ok(r#""x@example.com"@rival.net"#).is_internal(&internal));
        assert!(!Address::null().is_internal(&internal));
    }
}
