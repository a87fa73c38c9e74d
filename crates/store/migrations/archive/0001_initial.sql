-- The archive database (archive.db): the hash chain of records, signed
-- checkpoints, where each blob lives in the packs, and legal holds.
CREATE TABLE archive (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    org_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    blob TEXT NOT NULL,
    meta TEXT,
    meta_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    purged_at INTEGER
);
CREATE INDEX archive_message ON archive(message_id);
CREATE INDEX archive_blob ON archive(blob);
CREATE INDEX archive_at ON archive(org_id, at) WHERE purged_at IS NULL;
CREATE TABLE archive_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,
    pack TEXT NOT NULL,
    offset INTEGER NOT NULL,
    len INTEGER NOT NULL
);
CREATE INDEX blobs_pack ON blobs(pack);
CREATE TABLE legal_holds (
    message_id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
