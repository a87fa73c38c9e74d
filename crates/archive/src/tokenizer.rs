//! Tokens for Japanese and Latin text in one stream.
//!
//! - Text is compared in NFKC and lower case: full- and half-width forms,
//!   and case, are the same (ＡＢＣ = abc, ｶﾞ = ガ).
//! - Runs of Han, Hiragana and Katakana become overlapping **bigrams with
//!   consecutive positions** (社外秘 → 社外@0, 外秘@1). A phrase query for
//!   社外秘 asks for 社外 then 外秘 at the next position, so 社外…外秘 apart
//!   does not match — tantivy's n-gram tokenizer puts every gram at position
//!   0 and gets this wrong. A lone CJK character is a token of its own.
//! - Other letters and digits form words; anything else separates.
//!
//! Offsets point into the original text, for highlighting.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

#[derive(Clone, Default)]
pub struct CjkBigram;

impl Tokenizer for CjkBigram {
    type TokenStream<'a> = CjkBigramStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CjkBigramStream<'a> {
        CjkBigramStream {
            chars: Normalized::new(text),
            pending: None,
            run: None,
            token: Token::default(),
            started: false,
        }
    }
}

/// A normalised character and the byte range of the original text it came
/// from.
type Char = (char, usize, usize);

/// Tokens made one at a time into one reused buffer, from characters
/// normalised one at a time: memory does not grow with the text (a
/// vector of every character cost 24 bytes per byte of text — 100 MB
/// for a 4 MB attachment).
pub struct CjkBigramStream<'a> {
    chars: Normalized<'a>,
    /// A character read past the end of a token, to start the next one.
    pending: Option<Char>,
    /// Inside a CJK run: its last character, and whether a bigram of the
    /// run was emitted yet (a lone character is a token of its own).
    run: Option<(Char, bool)>,
    token: Token,
    started: bool,
}

impl CjkBigramStream<'_> {
    fn next_char(&mut self) -> Option<Char> {
        self.pending.take().or_else(|| self.chars.next())
    }

    fn start(&mut self, from: usize) {
        if self.started {
            self.token.position += 1;
        } else {
            self.token.position = 0;
            self.started = true;
        }
        self.token.text.clear();
        self.token.offset_from = from;
        self.token.position_length = 1;
    }
}

impl TokenStream for CjkBigramStream<'_> {
    fn advance(&mut self) -> bool {
        loop {
            let c = self.next_char();
            if let Some((prev, emitted)) = self.run {
                match c {
                    Some(c) if class(c.0) == Class::Cjk => {
                        self.run = Some((c, true));
                        self.start(prev.1);
                        self.token.text.push(prev.0);
                        self.token.text.push(c.0);
                        self.token.offset_to = c.2;
                        return true;
                    }
                    other => {
                        self.run = None;
                        self.pending = other;
                        if !emitted {
                            self.start(prev.1);
                            self.token.text.push(prev.0);
                            self.token.offset_to = prev.2;
                            return true;
                        }
                        continue;
                    }
                }
            }
            let Some(c) = c else { return false };
            match class(c.0) {
                Class::Other => {}
                Class::Cjk => self.run = Some((c, false)),
                Class::Word => {
                    self.start(c.1);
                    self.token.text.push(c.0);
                    self.token.offset_to = c.2;
                    // Most of a message is ASCII words: taken a run at a time.
                    if self.pending.is_none()
                        && let Some(end) = self.chars.ascii_word(&mut self.token.text)
                    {
                        self.token.offset_to = end;
                    }
                    for n in self.chars.by_ref() {
                        if class(n.0) != Class::Word {
                            self.pending = Some(n);
                            break;
                        }
                        self.token.text.push(n.0);
                        self.token.offset_to = n.2;
                    }
                    return true;
                }
            }
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Cjk,
    Word,
    Other,
}

fn class(c: char) -> Class {
    match c {
        '\u{3041}'..='\u{3096}' | '\u{309D}'..='\u{309F}' // hiragana
        | '\u{30A1}'..='\u{30FA}' | '\u{30FC}'..='\u{30FF}' // katakana, ー
        | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' // kanji
        | '\u{20000}'..='\u{2FFFF}' | '\u{3005}' | '\u{3006}' | '\u{303B}' => Class::Cjk, // 々 〆 〻
        c if c.is_alphanumeric() => Class::Word,
        _ => Class::Other,
    }
}

/// Han, kana and the iteration marks: what becomes bigrams.
pub fn is_cjk(c: char) -> bool {
    class(c) == Class::Cjk
}

/// Marks that belong to the character before them (so ｶﾞ normalises to ガ).
fn combines(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{3099}' | '\u{309A}' | '\u{FF9E}' | '\u{FF9F}')
}

/// Normalised characters, one at a time, each with the byte range of the
/// original text it came from. Most characters are already in NFKC and
/// lower case (ASCII, kanji, kana): they pass as they are; only the rest go
/// through NFKC (with the marks that combine with them).
struct Normalized<'a> {
    /// Peeked by cloning (cheap), so the rest of the text stays at hand
    /// for [`Normalized::ascii_word`].
    chars: std::str::CharIndices<'a>,
    /// Characters one original character (or cluster) became, still to give.
    out: std::collections::VecDeque<Char>,
    cluster: String,
}

impl<'a> Normalized<'a> {
    fn new(text: &'a str) -> Normalized<'a> {
        Normalized { chars: text.char_indices(), out: Default::default(), cluster: String::new() }
    }

    fn peek(&self) -> Option<(usize, char)> {
        self.chars.clone().next()
    }

    /// With nothing buffered: the ASCII letters and digits that come next,
    /// lower-cased onto `into`, and the byte offset after them; None when
    /// there are none. (Already NFKC; the last one is left when a non-ASCII
    /// character follows, which might be a mark that combines with it.)
    fn ascii_word(&mut self, into: &mut String) -> Option<usize> {
        if !self.out.is_empty() {
            return None;
        }
        let rest = self.chars.as_str();
        let bytes = rest.as_bytes();
        let mut n = bytes.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        if n < bytes.len() && !bytes[n].is_ascii() {
            n = n.saturating_sub(1);
        }
        if n == 0 {
            return None;
        }
        let from = into.len();
        into.push_str(&rest[..n]);
        into[from..].make_ascii_lowercase();
        for _ in 0..n {
            self.chars.next();
        }
        Some(self.chars.offset())
    }
}

impl Iterator for Normalized<'_> {
    type Item = Char;

    fn next(&mut self) -> Option<Char> {
        if let Some(c) = self.out.pop_front() {
            return Some(c);
        }
        let (start, c) = self.chars.next()?;
        let mut end = start + c.len_utf8();
        let marked = self.peek().is_some_and(|(_, next)| combines(next));
        if !marked {
            if c.is_ascii() {
                return Some((c.to_ascii_lowercase(), start, end));
            }
            if is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes {
                self.out.extend(c.to_lowercase().map(|l| (l, start, end)));
                return self.out.pop_front();
            }
        }
        self.cluster.clear();
        self.cluster.push(c);
        while let Some((i, next)) = self.peek() {
            if !combines(next) {
                break;
            }
            self.cluster.push(next);
            end = i + next.len_utf8();
            self.chars.next();
        }
        let cluster = std::mem::take(&mut self.cluster);
        self.out.extend(cluster.nfkc().flat_map(char::to_lowercase).map(|c| (c, start, end)));
        self.cluster = cluster;
        // NFKC of a cluster is never empty, but an empty one just moves on.
        self.out.pop_front().or_else(|| self.next())
    }
}

/// Every token of `text` (queries, tests; the index uses the stream).
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut tokenizer = CjkBigram;
    let mut stream = tokenizer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::Count;
    use tantivy::query::QueryParser;
    use tantivy::schema::{IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions};
    use tantivy::{Index, doc};

    fn texts(s: &str) -> Vec<(String, usize)> {
        tokenize(s).into_iter().map(|t| (t.text, t.position)).collect()
    }

    #[test]
    fn bigrams_with_positions_words_and_widths() {
        assert_eq!(texts("社外秘"), [("社外".into(), 0), ("外秘".into(), 1)]);
        assert_eq!(
            texts("ＣＯＮＦＩＤＥＮＴＩＡＬ資料 v2"),
            [("confidential".into(), 0), ("資料".into(), 1), ("v2".into(), 2)]
        );
        assert_eq!(texts("ｶﾞｲﾄﾞ"), texts("ガイド"), "half-width kana with voicing marks");
        assert_eq!(texts("秘"), [("秘".into(), 0)]);
        let t = tokenize("見積：社外秘");
        assert_eq!((t[1].offset_from, t[1].offset_to), ("見積：".len(), "見積：社外".len()), "offsets in the original");
        // A lone character between words; runs at the very start and end.
        assert_eq!(
            texts("a秘b 社外秘"),
            [("a".into(), 0), ("秘".into(), 1), ("b".into(), 2), ("社外".into(), 3), ("外秘".into(), 4)]
        );
        assert_eq!(texts("㈱トマレ"), texts("(株)トマレ"), "NFKC that makes several characters");
        assert!(texts("").is_empty() && texts("、。！").is_empty());
        // ASCII words a run at a time: the same tokens and offsets, and a
        // combining mark still joins the letter before it.
        assert_eq!(texts("Quote ABC123def, x"), [("quote".into(), 0), ("abc123def".into(), 1), ("x".into(), 2)]);
        assert_eq!(texts("Cafe\u{301} ok"), [("café".into(), 0), ("ok".into(), 1)]);
        assert_eq!(texts("ab社外 Ｘyz"), [("ab".into(), 0), ("社外".into(), 1), ("xyz".into(), 2)]);
        let t = tokenize("  Hello  wörld");
        assert_eq!((t[0].offset_from, t[0].offset_to, t[1].offset_to), (2, 7, "  Hello  wörld".len()));
        assert_eq!(t[1].text, "wörld");
    }

    /// The trap the issue names, in a real tantivy index.
    #[test]
    fn phrase_query_is_exact_in_an_index() {
        let mut schema = Schema::builder();
        let indexing =
            TextFieldIndexing::default().set_tokenizer("ja").set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let body = schema.add_text_field("body", TextOptions::default().set_indexing_options(indexing) | STORED);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register("ja", CjkBigram);
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        writer.add_document(doc!(body => "この資料は社外秘です")).unwrap();
        writer.add_document(doc!(body => "社外の方へ。外秘ではありません")).unwrap();
        writer.add_document(doc!(body => "ｼｬｶﾞｲﾋ? いいえ、ＩＮＴＥＲＮＡＬ ONLY")).unwrap();
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let parser = QueryParser::for_index(&index, vec![body]);
        let count = |q: &str| searcher.search(&parser.parse_query(q).unwrap(), &Count).unwrap();
        assert_eq!(count("\"社外秘\""), 1, "only the document where it is contiguous");
        assert_eq!(count("\"外秘\""), 2);
        assert_eq!(count("\"internal only\""), 1, "full-width and case folded");
        assert_eq!(count("\"ＩＮＴＥＲＮＡＬ　ＯＮＬＹ\""), 1, "the query is normalised the same way");
    }
}
