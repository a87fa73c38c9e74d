//! The archive: every message kept as evidence, searchable in Japanese.
//!
//! So far: the tokenizer the full-text index will use ([`tokenizer`]), CJK
//! bigrams with real positions so phrase queries are exact, and the search
//! language parsed into a tree ([`query`]). The blob store, the index and
//! tamper evidence follow (issue 5).

pub mod query;
pub mod tokenizer;
