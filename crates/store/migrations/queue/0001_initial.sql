-- The queue database (tomare.db) as it was before migrations were versioned:
-- orgs, the queue (messages, recipients, events, facts, approvals, notices),
-- the recipient history (contacts), the directory and SMTP AUTH users.
CREATE TABLE orgs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    state TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    helo TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    auth_user TEXT,
    subject TEXT NOT NULL,
    header_from TEXT NOT NULL,
    message_id_header TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    release_at INTEGER,
    next_attempt_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    is_dsn INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
CREATE INDEX messages_state_release ON messages(state, release_at);
CREATE INDEX messages_state_next ON messages(state, next_attempt_at);
CREATE TABLE recipients (
    message_id TEXT NOT NULL REFERENCES messages(id),
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    reply TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    message_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_message ON events(message_id, id);
CREATE TABLE facts (
    message_id TEXT PRIMARY KEY REFERENCES messages(id),
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    json TEXT NOT NULL,
    verdict TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
CREATE TABLE approvals (
    message_id TEXT PRIMARY KEY REFERENCES messages(id),
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    approver TEXT NOT NULL,
    deputy TEXT,
    on_timeout TEXT NOT NULL,
    timeout_ms INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    decision TEXT,
    decided_by TEXT,
    reason TEXT,
    decided_at INTEGER
);
CREATE TABLE notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES messages(id),
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    recipient TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE TABLE contacts (
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    domain TEXT NOT NULL,
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    messages INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, domain)
);
CREATE TABLE directory (
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    supervisor TEXT,
    groups TEXT NOT NULL,
    PRIMARY KEY (org_id, email)
);
CREATE TABLE users (
    email TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
