//! Policy: ordered rules over a message's Facts and envelope → a Verdict
//! (deliver, hold, approval or reject, plus the rewrites to apply), with the
//! reason for each rule that fired. Pure: the caller supplies the directory
//! and the recipient history; nothing here does I/O.
//!
//! The strictest outcome wins (reject > approval > the longest hold); every
//! rewrite of every rule that fired is combined.

mod builtin;
mod eval;
pub mod lookalike;

pub use builtin::{builtin_rules, builtin_toml};
pub use eval::{Context, Directory, Engine, History, RuleError};
pub use tomare_model::{ApprovalPlan, Fired, OnTimeout, Outcome, Verdict};
