-- One-click links from notice mails are single-use: each one used is kept
-- here by its nonce, with what it did, so a second click can say so.
CREATE TABLE used_links (
    nonce TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    action TEXT NOT NULL,
    person TEXT NOT NULL,
    outcome TEXT NOT NULL,
    used_at INTEGER NOT NULL
);
