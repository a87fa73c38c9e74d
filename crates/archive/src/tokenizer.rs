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
    type TokenStream<'a> = CjkBigramStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CjkBigramStream {
        CjkBigramStream { chars: normalized(text), i: 0, k: None, token: Token::default(), started: false }
    }
}

/// Tokens made one at a time into one reused buffer: no allocation per
/// token.
pub struct CjkBigramStream {
    chars: Vec<(char, usize, usize)>,
    /// Start of the next run.
    i: usize,
    /// Inside a CJK run: the next bigram's start and the run's end.
    k: Option<(usize, usize)>,
    token: Token,
    started: bool,
}

fn emit(t: &mut Token, started: &mut bool, from: usize, to: usize, text: impl Iterator<Item = char>) {
    if *started {
        t.position += 1;
    } else {
        t.position = 0;
        *started = true;
    }
    t.text.clear();
    t.text.extend(text);
    t.offset_from = from;
    t.offset_to = to;
    t.position_length = 1;
}

impl TokenStream for CjkBigramStream {
    fn advance(&mut self) -> bool {
        if let Some((k, end)) = self.k {
            if k + 1 < end {
                let (a, b) = (self.chars[k], self.chars[k + 1]);
                self.k = Some((k + 1, end));
                emit(&mut self.token, &mut self.started, a.1, b.2, [a.0, b.0].into_iter());
                return true;
            }
            self.k = None;
        }
        while self.i < self.chars.len() {
            let i = self.i;
            let kind = class(self.chars[i].0);
            let end =
                self.chars[i..].iter().position(|(c, _, _)| class(*c) != kind).map_or(self.chars.len(), |n| i + n);
            self.i = end;
            match kind {
                Class::Other => continue,
                Class::Word => {
                    let (from, to) = (self.chars[i].1, self.chars[end - 1].2);
                    emit(&mut self.token, &mut self.started, from, to, self.chars[i..end].iter().map(|c| c.0));
                }
                Class::Cjk if end - i == 1 => {
                    let c = self.chars[i];
                    emit(&mut self.token, &mut self.started, c.1, c.2, std::iter::once(c.0));
                }
                Class::Cjk => {
                    let (a, b) = (self.chars[i], self.chars[i + 1]);
                    self.k = Some((i + 1, end));
                    emit(&mut self.token, &mut self.started, a.1, b.2, [a.0, b.0].into_iter());
                }
            }
            return true;
        }
        false
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

/// Normalised characters, each with the byte range of the original text it
/// came from. Most characters are already in NFKC and lower case (ASCII,
/// kanji, kana): they are copied; only the rest go through NFKC.
fn normalized(text: &str) -> Vec<(char, usize, usize)> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut cluster = String::new();
    while let Some((start, c)) = chars.next() {
        let mut end = start + c.len_utf8();
        let marked = chars.peek().is_some_and(|&(_, next)| combines(next));
        if !marked {
            if c.is_ascii() {
                out.push((c.to_ascii_lowercase(), start, end));
                continue;
            }
            if is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes {
                out.extend(c.to_lowercase().map(|l| (l, start, end)));
                continue;
            }
        }
        cluster.clear();
        cluster.push(c);
        while let Some(&(i, next)) = chars.peek() {
            if !combines(next) {
                break;
            }
            cluster.push(next);
            end = i + next.len_utf8();
            chars.next();
        }
        out.extend(cluster.nfkc().flat_map(char::to_lowercase).map(|c| (c, start, end)));
    }
    out
}

/// Every token of `text` (queries, tests; the index uses the stream).
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut stream = CjkBigram.token_stream(text);
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
