-- People and accounts are one list. A person given a role, name or
-- supervisor with `tomare user add` is a directory row of source 'cli',
-- which `tomare users import` (source 'import') leaves alone.
ALTER TABLE directory ADD COLUMN source TEXT NOT NULL DEFAULT 'import';
-- The language a person chose for the web UI ('' = their browser's).
ALTER TABLE users ADD COLUMN lang TEXT NOT NULL DEFAULT '';
-- A password only good for choosing another (the first start's admin).
ALTER TABLE users ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0;
-- Everyone asked to decide on a message (the approver, a group's members,
-- the admins, a deputy after escalation): who may see and decide it.
CREATE TABLE approval_asked (
    message_id TEXT NOT NULL,
    email TEXT NOT NULL,
    PRIMARY KEY (message_id, email)
);
CREATE INDEX approval_asked_email ON approval_asked(email);
INSERT OR IGNORE INTO approval_asked (message_id, email)
    SELECT message_id, lower(approver) FROM approvals WHERE approver LIKE '%@%';
-- Web sign-in sessions, by the SHA-256 of their cookie (a copy of the
-- database signs nobody in), each with its CSRF token.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip TEXT NOT NULL
);
CREATE INDEX sessions_email ON sessions(email);
-- API bearer tokens (`tomare user token`), by their SHA-256.
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
-- Who did what, when, through what and from where: sign-ins, actions on
-- messages, account and rule changes.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    ip TEXT NOT NULL
);
CREATE INDEX audit_at ON audit(org_id, at);
-- When the approvers were reminded (half of the time gone), once per
-- approver in turn (an escalation starts a new turn).
ALTER TABLE approvals ADD COLUMN reminded_at INTEGER;
-- Set-password invitations already used (each link sets a password once).
CREATE TABLE used_invites (
    nonce TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    used_at INTEGER NOT NULL
);
