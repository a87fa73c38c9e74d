//! The archive: every message kept as evidence, searchable in Japanese.
//!
//! So far: the tokenizer the full-text index will use ([`tokenizer`]), CJK
//! bigrams with real positions so phrase queries are exact. The blob store,
//! index, query language and tamper evidence follow (issue 5).

pub mod tokenizer;
