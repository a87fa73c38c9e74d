//! The archive: every message kept as evidence, searchable in Japanese.
//!
//! So far: the tokenizer the full-text index will use ([`tokenizer`]), CJK
//! bigrams with real positions so phrase queries are exact, and the search
//! language parsed into a tree ([`query`]), content-addressed compressed
//! blobs ([`blobs`]) and the hash chain with signed checkpoints
//! ([`chain`]). Storing records, the index and the CLI follow (issue 5).

pub mod blobs;
pub mod chain;
pub mod query;
pub mod tokenizer;
