-- clawgate schema 2: the outbox. A reply for a channel that pushes (a chat app) is written
-- here in the same transaction that records it in the transcript, and delivered from here
-- with retries, so an outage of the channel delays replies but never drops them.

CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    session_id      TEXT NOT NULL REFERENCES sessions (id),
    run_id          TEXT NOT NULL REFERENCES runs (id),
    channel         TEXT NOT NULL,
    target          TEXT NOT NULL,
    text            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'delivered', 'rejected')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
    CHECK (status <> 'rejected' OR last_error IS NOT NULL)
);
-- A run's reply is delivered once.
CREATE UNIQUE INDEX outbox_one_per_run ON outbox (run_id);
CREATE INDEX outbox_due ON outbox (channel, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_waiting_by_target ON outbox (channel, target, seq) WHERE status = 'pending';
CREATE INDEX outbox_by_session ON outbox (session_id, seq);

CREATE TRIGGER outbox_final
BEFORE UPDATE ON outbox
WHEN OLD.status <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a delivered or rejected reply cannot change');
END;

CREATE TRIGGER outbox_text_kept
BEFORE UPDATE OF id, session_id, run_id, channel, target, text, created_at ON outbox
BEGIN
    SELECT RAISE(ABORT, 'what is to be delivered cannot change');
END;
