//! The search language users know from Gmail and Mailpit, parsed into a
//! tree the index turns into a query.
//!
//! `words`, `"exact phrases"`, `from:` `to:` (any recipient, Bcc included)
//! `cc:` `subject:` `filename:`, `has:attachment`, `has:truncated` (more
//! text than the index takes), `is:notice` (tomare's own notices and DSNs,
//! left out unless asked for), `before:` / `after:`
//! (YYYY-MM-DD or YYYY/MM/DD, a day in Japan time), `larger:` / `smaller:`
//! (`1M`, `500K`, bytes), `state:` (held, delivered…), `rule:`, `-` to
//! negate, `OR` between terms, parentheses to group. Terms side by side must
//! all match. An unknown `word:` is searched as text, as Gmail does.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Anywhere: subject, body, attachment names and text, addresses.
    Any,
    From,
    /// Every recipient: envelope (Bcc included) and To/Cc headers.
    To,
    Cc,
    Subject,
    Filename,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
    Text {
        field: Field,
        text: String,
        phrase: bool,
    },
    HasAttachment,
    /// More text than the index takes (see `index::TEXT_INDEXED`).
    HasTruncated,
    /// tomare's own mail (notices, approval requests, DSNs): left out of
    /// results unless a query asks for it.
    IsNotice,
    /// Received before / at or after this moment (ms since the epoch).
    Before(i64),
    After(i64),
    Larger(u64),
    Smaller(u64),
    State(String),
    Rule(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// Character position in the query.
    pub at: usize,
    pub message: String,
}

impl std::error::Error for QueryError {}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at character {}: {}", self.at + 1, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Phrase(String),
    Open,
    Close,
    Minus,
}

fn lex(q: &str) -> Result<Vec<(usize, Tok)>, QueryError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() || c == '\u{3000}' => i += 1,
            '(' => {
                out.push((i, Tok::Open));
                i += 1;
            }
            ')' => {
                out.push((i, Tok::Close));
                i += 1;
            }
            // At the start of a term only: inside a word (co-op) it is part of it.
            '-' if chars.get(i + 1).is_some_and(|n| !n.is_whitespace()) => {
                out.push((i, Tok::Minus));
                i += 1;
            }
            '"' | '“' | '”' => {
                let start = i;
                i += 1;
                let text_start = i;
                while i < chars.len() && !matches!(chars[i], '"' | '“' | '”') {
                    i += 1;
                }
                if i == chars.len() {
                    return Err(QueryError { at: start, message: "a quote is not closed".into() });
                }
                out.push((start, Tok::Phrase(chars[text_start..i].iter().collect())));
                i += 1;
            }
            _ => {
                let start = i;
                // field:"a phrase" stays one token.
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && chars[i] != '\u{3000}'
                    && chars[i] != '('
                    && chars[i] != ')'
                {
                    if chars[i] == '"' && i > start && chars[i - 1] == ':' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                        if i == chars.len() {
                            return Err(QueryError { at: start, message: "a quote is not closed".into() });
                        }
                    }
                    i += 1;
                }
                out.push((start, Tok::Word(chars[start..i].iter().collect())));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

/// An empty query matches every message (`And` of nothing).
impl Query {
    /// Whether the query asks for something anywhere in it.
    pub fn mentions(&self, wanted: &Query) -> bool {
        match self {
            Query::And(parts) | Query::Or(parts) => parts.iter().any(|p| p.mentions(wanted)),
            Query::Not(inner) => inner.mentions(wanted),
            q => q == wanted,
        }
    }
}

pub fn parse(q: &str) -> Result<Query, QueryError> {
    let toks = lex(q)?;
    if toks.is_empty() {
        return Ok(Query::And(Vec::new()));
    }
    let mut p = Parser { toks, pos: 0, end: q.chars().count() };
    let query = p.or()?;
    if let Some((at, _)) = p.toks.get(p.pos) {
        return Err(QueryError { at: *at, message: "unexpected \")\"".into() });
    }
    Ok(query)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(a, _)| *a).unwrap_or(self.end)
    }

    fn or(&mut self) -> Result<Query, QueryError> {
        let mut alternatives = vec![self.and()?];
        while matches!(self.peek(), Some(Tok::Word(w)) if w == "OR") {
            self.pos += 1;
            alternatives.push(self.and()?);
        }
        Ok(if alternatives.len() == 1 { alternatives.remove(0) } else { Query::Or(alternatives) })
    }

    fn and(&mut self) -> Result<Query, QueryError> {
        let mut terms = Vec::new();
        loop {
            match self.peek() {
                None | Some(Tok::Close) => break,
                Some(Tok::Word(w)) if w == "OR" => break,
                _ => terms.push(self.unary()?),
            }
        }
        match terms.len() {
            0 => Err(QueryError { at: self.at(), message: "a search term is missing".into() }),
            1 => Ok(terms.remove(0)),
            _ => Ok(Query::And(terms)),
        }
    }

    fn unary(&mut self) -> Result<Query, QueryError> {
        if self.peek() == Some(&Tok::Minus) {
            self.pos += 1;
            return Ok(Query::Not(Box::new(self.unary()?)));
        }
        let (at, tok) = self.toks[self.pos].clone();
        self.pos += 1;
        match tok {
            Tok::Open => {
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(QueryError { at, message: "a parenthesis is not closed".into() });
                }
                self.pos += 1;
                Ok(inner)
            }
            Tok::Phrase(text) => Ok(Query::Text { field: Field::Any, text, phrase: true }),
            Tok::Word(word) => term(&word, at),
            Tok::Close | Tok::Minus => Err(QueryError { at, message: "unexpected character".into() }),
        }
    }
}

fn term(word: &str, at: usize) -> Result<Query, QueryError> {
    let bad = |message: String| QueryError { at, message };
    let Some((op, value)) = word.split_once(':').filter(|(op, v)| !op.is_empty() && !v.is_empty()) else {
        return Ok(Query::Text { field: Field::Any, text: word.to_string(), phrase: false });
    };
    let (value, phrase) = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(v) => (v.to_string(), true),
        None => (value.to_string(), false),
    };
    let text = |field| Ok(Query::Text { field, text: value.clone(), phrase });
    match op.to_ascii_lowercase().as_str() {
        "from" => text(Field::From),
        "to" | "bcc" => text(Field::To),
        "cc" => text(Field::Cc),
        "subject" => text(Field::Subject),
        "filename" => text(Field::Filename),
        "has" if value.eq_ignore_ascii_case("attachment") => Ok(Query::HasAttachment),
        "has" if value.eq_ignore_ascii_case("truncated") => Ok(Query::HasTruncated),
        "has" => Err(bad(format!("has:{value} is not known (has:attachment and has:truncated are)"))),
        "is" if value.eq_ignore_ascii_case("notice") => Ok(Query::IsNotice),
        "is" => Err(bad(format!("is:{value} is not known (is:notice is)"))),
        "before" => day(&value).map(Query::Before).ok_or_else(|| bad(format!("{value:?} is not a date (2026-11-03)"))),
        "after" => day(&value).map(Query::After).ok_or_else(|| bad(format!("{value:?} is not a date (2026-11-03)"))),
        "larger" => size(&value).map(Query::Larger).ok_or_else(|| bad(format!("{value:?} is not a size (1M, 500K)"))),
        "smaller" => size(&value).map(Query::Smaller).ok_or_else(|| bad(format!("{value:?} is not a size (1M, 500K)"))),
        "state" => Ok(Query::State(value.to_ascii_lowercase())),
        "rule" => Ok(Query::Rule(value)),
        // Not an operator: a word with a colon, searched as text.
        _ => Ok(Query::Text { field: Field::Any, text: word.to_string(), phrase: false }),
    }
}

/// The start of a day in Japan time (+09:00), in ms since the epoch.
fn day(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split(['-', '/']).collect();
    let [y, m, d] = parts[..] else { return None };
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 - 9 * 3_600_000)
}

fn size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_uppercase();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let mult = match s[digits..].trim_end_matches('B') {
        "" => 1,
        "K" => 1024,
        "M" => 1024 * 1024,
        "G" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(field: Field, t: &str, phrase: bool) -> Query {
        Query::Text { field, text: t.into(), phrase }
    }

    #[test]
    fn words_phrases_and_operators() {
        assert_eq!(
            parse(r#"見積 "社外秘 資料" from:taro@example.com -has:attachment"#).unwrap(),
            Query::And(vec![
                text(Field::Any, "見積", false),
                text(Field::Any, "社外秘 資料", true),
                text(Field::From, "taro@example.com", false),
                Query::Not(Box::new(Query::HasAttachment)),
            ])
        );
        assert_eq!(parse(r#"subject:"四半期 報告""#).unwrap(), text(Field::Subject, "四半期 報告", true));
        assert_eq!(parse("bcc:boss@example.com").unwrap(), text(Field::To, "boss@example.com", false));
        assert_eq!(parse("filename:見積書.xlsx").unwrap(), text(Field::Filename, "見積書.xlsx", false));
        assert_eq!(
            parse("state:HELD rule:lookalike-domain").unwrap(),
            Query::And(vec![Query::State("held".into()), Query::Rule("lookalike-domain".into())])
        );
        assert_eq!(
            parse("larger:1M smaller:500K").unwrap(),
            Query::And(vec![Query::Larger(1 << 20), Query::Smaller(500 << 10)])
        );
        assert_eq!(parse("note:taken").unwrap(), text(Field::Any, "note:taken", false), "not an operator");
        assert_eq!(parse("co-op").unwrap(), text(Field::Any, "co-op", false), "a hyphen inside a word");
    }

    #[test]
    fn or_binds_looser_than_and_and_parentheses_group() {
        assert_eq!(
            parse("a b OR c").unwrap(),
            Query::Or(vec![
                Query::And(vec![text(Field::Any, "a", false), text(Field::Any, "b", false)]),
                text(Field::Any, "c", false)
            ])
        );
        assert_eq!(
            parse("-(from:a OR from:b) x").unwrap(),
            Query::And(vec![
                Query::Not(Box::new(Query::Or(vec![text(Field::From, "a", false), text(Field::From, "b", false)]))),
                text(Field::Any, "x", false),
            ])
        );
    }

    #[test]
    fn dates_are_days_in_japan() {
        // 2026-11-03 00:00 JST is 2026-11-02 15:00 UTC.
        assert_eq!(parse("after:2026-11-03").unwrap(), Query::After(1_793_631_600_000));
        assert_eq!(parse("before:2026/11/03").unwrap(), Query::Before(1_793_631_600_000));
        assert_eq!(tomare_model::rfc3339(1_793_631_600_000), "2026-11-02T15:00:00Z");
    }

    #[test]
    fn errors_say_where() {
        let e = parse(r#"from:a "open"#).unwrap_err();
        assert_eq!(e.at, 7);
        assert!(parse("after:yesterday").unwrap_err().message.contains("not a date"));
        assert!(parse("(a b").unwrap_err().message.contains("not closed"));
        assert!(parse("a )").is_err());
        assert_eq!(parse(" 　").unwrap(), Query::And(Vec::new()), "empty: everything");
        assert!(parse("larger:huge").is_err());
        assert!(parse("has:pdf").unwrap_err().message.contains("has:attachment"));
    }
}
