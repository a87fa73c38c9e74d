-- Which messages the archive has taken: 0 nothing yet, 1 as received,
-- 2 with their final state too.
ALTER TABLE messages ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_archive ON messages(archived, id) WHERE archived < 2;
