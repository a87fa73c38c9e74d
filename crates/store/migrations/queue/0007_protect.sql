-- Protected attachments (issue 12). One download link per message: the
-- recipients outside the org reach its files through it. The token is
-- kept by its SHA-256 only; the files themselves are encrypted in
-- data_dir/protect, never here.
CREATE TABLE protect_links (
    message_id TEXT PRIMARY KEY REFERENCES messages(id),
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    token_hash TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    -- JSON list of the addresses the mail went to outside: who may ask for a code.
    recipients TEXT NOT NULL,
    access TEXT NOT NULL,
    password_hash TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    max_downloads INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_by TEXT,
    purged_at INTEGER
);
CREATE INDEX protect_links_expiry ON protect_links(purged_at, expires_at);
CREATE TABLE protect_files (
    message_id TEXT NOT NULL REFERENCES protect_links(message_id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    downloads INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, idx)
);
CREATE TABLE protect_downloads (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    at INTEGER NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    -- The address a one-time code proved, when the link asks for one.
    who TEXT NOT NULL
);
CREATE INDEX protect_downloads_message ON protect_downloads(message_id, at);
-- One-time codes mailed to a recipient: by hash, short-lived, few tries.
CREATE TABLE protect_codes (
    message_id TEXT NOT NULL,
    email TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, email)
);
-- A password that follows the message in a mail of its own (a zip's, or a
-- password link's), sealed with the vault key until it is sent, then gone.
CREATE TABLE protect_secrets (
    message_id TEXT NOT NULL REFERENCES messages(id),
    org_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sealed BLOB,
    -- JSON list of addresses the password mail goes to.
    send_to TEXT NOT NULL,
    due_at INTEGER,
    sent_at INTEGER,
    PRIMARY KEY (message_id, kind)
);
