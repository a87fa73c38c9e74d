//! The database behind one interface. [`Store`] is what the rest of tomare
//! sees; [`SqliteStore`] is the embedded implementation (WAL, one writer
//! connection so commits queue instead of spinning on SQLite's busy lock).
//! A PostgreSQL implementation will sit beside it for multi-node scale-out:
//! every state change is a conditional update, so two nodes (or the CLI and
//! the server) can never both move the same message.
//!
//! The store never touches message bytes: those live in the spool (queue).

mod archive;
mod migrate;
mod people;
mod protect;
mod queue;
mod sqlite;
mod web;

pub use archive::*;
pub use migrate::{Database, MigrationStatus};
pub use people::*;
pub use protect::*;
pub use queue::*;

pub use sqlite::SqliteStore;
pub use web::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("corrupt row for {id}: {what}")]
    Corrupt { id: String, what: String },
    /// Opened without migrating ([`SqliteStore::open_current`]), and this
    /// many migrations are pending.
    #[error("{0} schema migration(s) pending")]
    MigrationsPending(usize),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The whole store, by concern: the queue ([`QueueStore`]), people
/// ([`PeopleStore`]), the archive ([`ArchiveStore`]), the web's sessions
/// and audit log ([`WebStore`]) and protected attachments
/// ([`ProtectStore`]). A backend implements the five; `dyn Store` is what
/// the stages hold.
pub trait Store: QueueStore + PeopleStore + ArchiveStore + WebStore + ProtectStore {}
impl<T: QueueStore + PeopleStore + ArchiveStore + WebStore + ProtectStore> Store for T {}
