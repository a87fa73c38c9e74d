//! The full-text index (tantivy) over archived messages: one document per
//! message, replaced when its state changes. Text fields use the
//! [`CjkBigram`] tokenizer; every text field is also stored (zstd), so a
//! document can be rebuilt with a new state without reading the message
//! again, and results can carry highlights.

use crate::query::{self, Field as QField, Query};
use crate::tokenizer::{CjkBigram, tokenize};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};
use tantivy::collector::TopDocs;
use tantivy::directory::error::LockError;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query as TQuery, RangeQuery, RegexQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{IndexReader, IndexSettings, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};
use tomare_model::Facts;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("the index is being written by another tomare process (is `tomare archive import` or `reindex` running?)")]
    Busy,
    #[error("query {0}")]
    Query(#[from] query::QueryError),
}

pub type Result<T> = std::result::Result<T, IndexError>;

const TOKENIZER: &str = "cjk";
/// Results that carry highlights (a first page).
const HIGHLIGHTED_HITS: usize = 20;
/// Highlights look at the first this many bytes of a field.
const HIGHLIGHT_TEXT: usize = 32 * 1024;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    date: Field,
    size: Field,
    from: Field,
    to: Field,
    cc: Field,
    subject: Field,
    body: Field,
    filename: Field,
    attachment: Field,
    state: Field,
    rule: Field,
    flag: Field,
    show_from: Field,
    show_to: Field,
    message_id: Field,
    /// Every text field in one, indexed only: a bare word is one query.
    all: Field,
}

/// Text of one message (body and attachments, in that order) that the
/// index takes; `has:truncated` finds the messages that had more.
pub const TEXT_INDEXED: usize = 4 << 20;

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    // Fields with an operator of their own are indexed on their own; body
    // and attachment text are only stored (for highlights and restating):
    // bare words search `all`, which holds every text.
    let text = TextOptions::default().set_indexing_options(indexing.clone()) | STORED;
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        date: b.add_i64_field("date", INDEXED | FAST | STORED),
        size: b.add_u64_field("size", INDEXED | FAST | STORED),
        from: b.add_text_field("from", text.clone()),
        to: b.add_text_field("to", text.clone()),
        cc: b.add_text_field("cc", text.clone()),
        subject: b.add_text_field("subject", text.clone()),
        body: b.add_text_field("body", STORED),
        filename: b.add_text_field("filename", text.clone()),
        attachment: b.add_text_field("attachment", STORED),
        state: b.add_text_field("state", STRING | STORED),
        rule: b.add_text_field("rule", STRING | STORED),
        flag: b.add_text_field("flag", STRING | STORED),
        show_from: b.add_text_field("show_from", STORED),
        show_to: b.add_text_field("show_to", STORED),
        message_id: b.add_text_field("message_id", STORED),
        all: b.add_text_field("all", TextOptions::default().set_indexing_options(indexing)),
    };
    (b.build(), fields)
}

/// What the index knows about one message.
#[derive(Debug, Clone, Default)]
pub struct DocInput {
    pub id: String,
    /// Received (imported: its Date), ms since the epoch.
    pub date: i64,
    pub size: u64,
    pub envelope_from: String,
    /// Every envelope recipient: Bcc'd ones are only here.
    pub envelope_to: Vec<String>,
    pub state: String,
    /// Names of the rules that fired.
    pub rules: Vec<String>,
    /// `imported` for mail brought in by `archive import`.
    pub flags: Vec<String>,
    /// Names and addresses of the From header, and of To/Cc/Bcc
    /// ([`headers`]): 田中 finds 田中 <tanaka@…>.
    pub names_from: String,
    pub names_to: String,
}

/// What the index reads from a message's headers beyond its Facts.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// Display names and addresses of From, decoded.
    pub from: String,
    /// … of To, Cc and Bcc.
    pub to: String,
    /// The Date header, ms since the epoch.
    pub date: Option<i64>,
}

pub fn headers(raw: &[u8]) -> Headers {
    let Some(m) = mail_parser::MessageParser::new().parse_headers(raw) else { return Headers::default() };
    let list = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .map(|x| format!("{} {}", x.name().unwrap_or(""), x.address().unwrap_or("")).trim().to_string())
                .collect()
        })
        .unwrap_or_default()
    };
    let mut to = list(m.to());
    to.extend(list(m.cc()));
    to.extend(list(m.bcc()));
    Headers { from: list(m.from()).join(", "), to: to.join(", "), date: m.date().map(|d| d.to_timestamp() * 1000) }
}

/// One search result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    pub id: String,
    /// RFC 3339, UTC.
    pub date: String,
    pub date_ms: i64,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub state: String,
    pub size: u64,
    /// The Message-ID header.
    pub message_id: String,
    /// Matching passages, the matches as `<b>…</b>` (HTML-escaped text).
    pub highlights: Vec<String>,
}

pub struct SearchIndex {
    index: tantivy::Index,
    fields: Fields,
    reader: std::sync::OnceLock<IndexReader>,
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        std::fs::create_dir_all(dir).map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
        let (schema, fields) = schema();
        let existing = if dir.join("meta.json").exists() {
            let index = tantivy::Index::open_in_dir(dir)?;
            if index.schema() == schema {
                Some(index)
            } else {
                // Made by another version: the index is derived data, so it
                // starts over (`tomare archive reindex` refills it).
                tracing::warn!(dir = %dir.display(), "the search index has an older layout: starting a new one; run `tomare archive reindex`");
                drop(index);
                std::fs::remove_dir_all(dir).map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
                std::fs::create_dir_all(dir).map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
                None
            }
        } else {
            None
        };
        let index = if let Some(index) = existing {
            index
        } else {
            let settings = IndexSettings {
                // Level 1: the store holds texts derived from the messages
                // (for highlights and restating). At the default level 3,
                // clearing zstd's tables for each 16 KB block cost the
                // relay bench more CPU than the compression itself.
                docstore_compression: Compressor::Zstd(ZstdCompressor { compression_level: Some(1) }),
                ..IndexSettings::default()
            };
            tantivy::Index::builder().schema(schema).settings(settings).create_in_dir(dir)?
        };
        index.tokenizers().register(TOKENIZER, CjkBigram);
        Ok(SearchIndex { index, fields, reader: std::sync::OnceLock::new() })
    }

    /// The index writer, waiting up to `wait` while another process holds it.
    pub fn writer(&self, threads: usize, heap: usize, wait: Duration) -> Result<IndexWriter> {
        let start = Instant::now();
        loop {
            match self.index.writer_with_num_threads(threads, heap) {
                Ok(w) => return Ok(w),
                Err(tantivy::TantivyError::LockFailure(LockError::LockBusy, _)) => {
                    if start.elapsed() >= wait {
                        return Err(IndexError::Busy);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The document for a message, from its Facts (with their texts).
    pub fn document(&self, d: &DocInput, facts: &Facts) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, &d.id);
        doc.add_i64(f.date, d.date);
        doc.add_u64(f.size, d.size);
        let header_from = facts.from.join(", ");
        doc.add_text(f.from, format!("{} {header_from} {}", d.envelope_from, d.names_from));
        let mut to: Vec<&str> = d.envelope_to.iter().map(String::as_str).collect();
        to.extend(facts.to.iter().chain(&facts.cc).chain(&facts.bcc).map(String::as_str));
        to.push(&d.names_to);
        doc.add_text(f.to, to.join(" "));
        doc.add_text(f.cc, facts.cc.join(" "));
        doc.add_text(f.subject, &facts.subject);
        // Text beyond TEXT_INDEXED is not indexed: tantivy checks its memory
        // budget between documents, and one document with 20 MB of text cost
        // about 300 MB while it was indexed (bench/bigmail.py).
        let mut left = TEXT_INDEXED;
        let mut cut = false;
        let mut take = |text: &str| {
            let mut end = text.len().min(left);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            cut |= end < text.len();
            left -= end;
            text[..end].to_string()
        };
        doc.add_text(f.body, take(&facts.body_text));
        for a in &facts.attachments {
            doc.add_text(f.filename, &a.path);
            if !a.text.is_empty() {
                let text = take(&a.text);
                if !text.is_empty() {
                    doc.add_text(f.attachment, text);
                }
            }
        }
        if !facts.attachments.is_empty() {
            doc.add_text(f.flag, "attachment");
        }
        if cut {
            doc.add_text(f.flag, "truncated");
        }
        for flag in &d.flags {
            doc.add_text(f.flag, flag);
        }
        doc.add_text(f.state, &d.state);
        for r in &d.rules {
            doc.add_text(f.rule, normalize_name(r));
        }
        let show_from = if header_from.is_empty() { d.envelope_from.clone() } else { header_from };
        doc.add_text(f.show_from, show_from);
        let show_to = if facts.to.is_empty() { d.envelope_to.join(", ") } else { facts.to.join(", ") };
        doc.add_text(f.show_to, show_to);
        doc.add_text(f.message_id, &facts.message_id);
        self.fill_all(&mut doc);
        doc
    }

    /// The catch-all field from the stored text fields.
    fn fill_all(&self, doc: &mut TantivyDocument) {
        let f = &self.fields;
        let sources = [f.subject, f.from, f.to, f.filename, f.body, f.attachment];
        let texts: Vec<String> = sources
            .iter()
            .flat_map(|field| doc.get_all(*field).filter_map(|v| v.as_str().map(str::to_string)).collect::<Vec<_>>())
            .collect();
        for t in texts {
            doc.add_text(f.all, t);
        }
    }

    pub fn delete_term(&self, id: &str) -> Term {
        Term::from_field_text(self.fields.id, id)
    }

    fn reader(&self) -> Result<&IndexReader> {
        if let Some(r) = self.reader.get() {
            r.reload()?;
            return Ok(r);
        }
        let r = self.index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(self.reader.get_or_init(|| r))
    }

    /// The stored document of a message with its state (and rules) changed,
    /// or None when the message is not indexed.
    pub fn restate(&self, id: &str, state: &str) -> Result<Option<TantivyDocument>> {
        let searcher = self.reader()?.searcher();
        let q = TermQuery::new(self.delete_term(id), IndexRecordOption::Basic);
        let top = searcher.search(&q, &TopDocs::with_limit(1).order_by_score())?;
        let Some((_, addr)) = top.first() else { return Ok(None) };
        let old: TantivyDocument = searcher.doc(*addr)?;
        Ok(Some(self.restated(&old, state)))
    }

    /// A copy of a document with another state.
    fn restated(&self, old: &TantivyDocument, state: &str) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        for (field, value) in old.field_values() {
            if field == self.fields.state || field == self.fields.all {
                continue;
            }
            doc.add_field_value(field, value);
        }
        doc.add_text(self.fields.state, state);
        self.fill_all(&mut doc);
        doc
    }

    pub fn num_docs(&self) -> Result<u64> {
        Ok(self.reader()?.searcher().num_docs())
    }

    /// Ids of every indexed message matching `q` (exports, replays).
    pub fn ids(&self, q: &str, limit: usize) -> Result<Vec<String>> {
        Ok(self.search_with(q, limit, false)?.into_iter().map(|h| h.id).collect())
    }

    /// Messages matching `q`, newest first.
    pub fn search(&self, q: &str, limit: usize) -> Result<Vec<Hit>> {
        self.search_with(q, limit, true)
    }

    fn search_with(&self, q: &str, limit: usize, highlight: bool) -> Result<Vec<Hit>> {
        let mut parsed = query::parse(q)?;
        if !parsed.mentions(&Query::IsNotice) {
            parsed = Query::And(vec![parsed, Query::Not(Box::new(Query::IsNotice))]);
        }
        // Searched on the catch-all field; highlighted in the stored ones.
        let tq = self.translate(&[self.fields.all], &parsed);
        let searcher = self.reader()?.searcher();
        // "Every match" (exports) asks for a huge limit: the collector
        // sizes itself by it, so never more than there are documents.
        let limit = limit.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX)).max(1);
        let top = searcher.search(&tq, &TopDocs::with_limit(limit).order_by_fast_field::<i64>("date", Order::Desc))?;
        let snippets: Vec<(Field, SnippetGenerator)> = if highlight {
            let mut terms: BTreeMap<String, f32> = BTreeMap::new();
            let mut wanted = Vec::new();
            tq.query_terms(&mut |term, _| {
                if term.field() == self.fields.all
                    && let Some(text) = term.value().as_str()
                {
                    wanted.push((term.clone(), text.to_string()));
                }
            });
            for (term, text) in wanted {
                let freq = searcher.doc_freq(&term)?;
                terms.insert(text, 1.0 / (1.0 + freq as f32));
            }
            [self.fields.subject, self.fields.body, self.fields.attachment]
                .into_iter()
                .map(|field| (field, SnippetGenerator::new(terms.clone(), TextAnalyzer::from(CjkBigram), field, 160)))
                .collect()
        } else {
            Vec::new()
        };
        let mut hits = Vec::with_capacity(top.len());
        for (n, (_, addr)) in top.into_iter().enumerate() {
            // Highlights for the first page; later rows without them.
            let snippets = if n < HIGHLIGHTED_HITS { &snippets[..] } else { &[] };
            hits.push(self.hit(&searcher.doc(addr)?, snippets));
        }
        Ok(hits)
    }

    fn hit(&self, doc: &TantivyDocument, snippets: &[(Field, SnippetGenerator)]) -> Hit {
        let f = &self.fields;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let date_ms = doc.get_first(f.date).and_then(|v| v.as_i64()).unwrap_or(0);
        let highlights = snippets
            .iter()
            .map(|(field, g)| {
                let mut text = String::new();
                for v in doc.get_all(*field).filter_map(|v| v.as_str()) {
                    if text.len() >= HIGHLIGHT_TEXT {
                        break;
                    }
                    text.push_str(v);
                    text.push('\n');
                }
                let mut cut = HIGHLIGHT_TEXT.min(text.len());
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                g.snippet(&text[..cut])
            })
            .filter(|s| !s.highlighted().is_empty())
            .map(|s| s.to_html())
            .collect();
        Hit {
            id: text(f.id),
            date: tomare_model::rfc3339(date_ms),
            date_ms,
            from: text(f.show_from),
            to: text(f.show_to),
            subject: text(f.subject),
            state: text(f.state),
            size: doc.get_first(f.size).and_then(|v| v.as_u64()).unwrap_or(0),
            message_id: text(f.message_id),
            highlights,
        }
    }

    fn text_fields(&self, any: &[Field], field: &QField) -> Vec<Field> {
        let f = &self.fields;
        match field {
            QField::Any => any.to_vec(),
            QField::From => vec![f.from],
            QField::To => vec![f.to],
            QField::Cc => vec![f.cc],
            QField::Subject => vec![f.subject],
            QField::Filename => vec![f.filename],
        }
    }

    fn translate(&self, any: &[Field], q: &Query) -> Box<dyn TQuery> {
        let f = &self.fields;
        match q {
            Query::And(parts) => self.boolean(any, parts, Occur::Must),
            Query::Or(parts) => self.boolean(any, parts, Occur::Should),
            Query::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn TQuery>),
                (Occur::MustNot, self.translate(any, inner)),
            ])),
            Query::Text { field, text, .. } => {
                let tokens: Vec<String> = tokenize(text).into_iter().map(|t| t.text).collect();
                if tokens.is_empty() {
                    // Nothing searchable (punctuation only): no constraint.
                    return Box::new(AllQuery);
                }
                let per_field: Vec<(Occur, Box<dyn TQuery>)> = self
                    .text_fields(any, field)
                    .into_iter()
                    .map(|field| (Occur::Should, text_query(field, &tokens)))
                    .collect();
                Box::new(BooleanQuery::new(per_field))
            }
            Query::HasAttachment => term(f.flag, "attachment"),
            Query::HasTruncated => term(f.flag, "truncated"),
            Query::IsNotice => term(f.flag, "notice"),
            Query::Before(ms) => {
                Box::new(RangeQuery::new(Bound::Unbounded, Bound::Excluded(Term::from_field_i64(f.date, *ms))))
            }
            Query::After(ms) => {
                Box::new(RangeQuery::new(Bound::Included(Term::from_field_i64(f.date, *ms)), Bound::Unbounded))
            }
            Query::Larger(n) => {
                Box::new(RangeQuery::new(Bound::Excluded(Term::from_field_u64(f.size, *n)), Bound::Unbounded))
            }
            Query::Smaller(n) => {
                Box::new(RangeQuery::new(Bound::Unbounded, Bound::Excluded(Term::from_field_u64(f.size, *n))))
            }
            Query::State(s) => term(f.state, &s.to_lowercase()),
            Query::Rule(r) => term(f.rule, &normalize_name(r)),
        }
    }

    /// Parts joined by `occur`; negated parts of an AND become MUST_NOT.
    fn boolean(&self, any: &[Field], parts: &[Query], occur: Occur) -> Box<dyn TQuery> {
        let mut clauses: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
        for p in parts {
            match (occur, p) {
                (Occur::Must, Query::Not(inner)) => clauses.push((Occur::MustNot, self.translate(any, inner))),
                _ => clauses.push((occur, self.translate(any, p))),
            }
        }
        if !clauses.iter().any(|(o, _)| *o != Occur::MustNot) {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        Box::new(BooleanQuery::new(clauses))
    }
}

fn term(field: Field, value: &str) -> Box<dyn TQuery> {
    Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
}

/// One word: its term; several tokens (a Japanese word's bigrams, an
/// address's parts): a phrase, so 社外秘 never matches 社外…外秘.
fn text_query(field: Field, tokens: &[String]) -> Box<dyn TQuery> {
    if let [one] = tokens {
        let mut chars = one.chars();
        if let (Some(c), None) = (chars.next(), chars.next())
            && crate::tokenizer::is_cjk(c)
        {
            // A lone kanji is indexed only inside bigrams.
            let c = regex_escape(c);
            return match RegexQuery::from_pattern(&format!("{c}.?|.{c}"), field) {
                Ok(q) => Box::new(q),
                Err(_) => Box::new(EmptyQuery),
            };
        }
        return Box::new(TermQuery::new(Term::from_field_text(field, one), IndexRecordOption::WithFreqs));
    }
    Box::new(PhraseQuery::new(tokens.iter().map(|t| Term::from_field_text(field, t)).collect()))
}

fn regex_escape(c: char) -> String {
    if c.is_alphanumeric() { c.to_string() } else { format!("\\{c}") }
}

/// Rule names compare case- and width-insensitively.
pub fn normalize_name(name: &str) -> String {
    tokenize(name).into_iter().map(|t| t.text).collect::<Vec<_>>().join("-")
}
