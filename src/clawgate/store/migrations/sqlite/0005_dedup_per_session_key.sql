-- clawgate schema 5: a channel message id is unique within a conversation (a session key), not
-- across all of them. Two clients that happen to choose the same idempotency key for different
-- sessions are two messages; before this, the second got the first one's record (and reply).

ALTER TABLE inbound ADD COLUMN session_key TEXT;

-- The guards forbid touching decided messages and what was said; lift them for the backfill.
DROP TRIGGER inbound_fate_once;
DROP TRIGGER inbound_said_is_kept;
UPDATE inbound SET session_key = (SELECT key FROM sessions WHERE sessions.id = inbound.session_id);

CREATE TRIGGER inbound_fate_once
BEFORE UPDATE ON inbound
WHEN OLD.fate <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a message fate is decided once');
END;

CREATE TRIGGER inbound_said_is_kept
BEFORE UPDATE OF id, session_id, session_key, channel, channel_message_id, sender, text,
    received_at ON inbound
BEGIN
    SELECT RAISE(ABORT, 'what was said cannot change');
END;

-- Every message names its conversation's key (the session row of that key may change on /new).
CREATE TRIGGER inbound_names_its_key
BEFORE INSERT ON inbound
WHEN NEW.session_key IS NOT (SELECT key FROM sessions WHERE id = NEW.session_id)
BEGIN
    SELECT RAISE(ABORT, 'an inbound message names the key of its session');
END;

DROP INDEX inbound_dedup;
CREATE UNIQUE INDEX inbound_dedup ON inbound (channel, session_key, channel_message_id)
    WHERE channel_message_id IS NOT NULL;
