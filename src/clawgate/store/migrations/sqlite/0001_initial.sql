-- clawgate schema 1: sessions, runs, inbound messages, transcript, events.
-- The promises live here as constraints, so that no code path can break them.
-- Timestamps are ISO 8601 UTC text with microseconds ("2026-11-24T14:41:00.123456+00:00"),
-- which sort as they compare.

CREATE TABLE owners (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    boot_id       TEXT NOT NULL,
    process_start TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    key           TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    archived_at   TEXT,
    model         TEXT,                       -- the session's own "provider/model", or NULL
    queue_mode    TEXT CHECK (queue_mode IN ('followup', 'collect', 'steer', 'interrupt')),
    debounce_ms   INTEGER CHECK (debounce_ms BETWEEN 0 AND 600000),
    queue_cap     INTEGER CHECK (queue_cap BETWEEN 1 AND 1000),
    drop_policy   TEXT CHECK (drop_policy IN ('old', 'new', 'summarize')),
    input_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    delivery_channel TEXT,
    delivery_target  TEXT,
    CHECK ((delivery_channel IS NULL) = (delivery_target IS NULL))
);
-- One current session per key; /new archives it and opens another.
CREATE UNIQUE INDEX sessions_current_key ON sessions (key) WHERE archived_at IS NULL;
CREATE INDEX sessions_recent ON sessions (updated_at) WHERE archived_at IS NULL;

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    session_id       TEXT NOT NULL REFERENCES sessions (id),
    status           TEXT NOT NULL CHECK (status IN
                         ('queued', 'running', 'done', 'failed', 'killed', 'timeout', 'interrupted')),
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    runtime_ms       INTEGER CHECK (runtime_ms >= 0),
    provider         TEXT,
    model            TEXT,
    input_tokens     INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens    INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    error            TEXT,
    owner_id         TEXT NOT NULL,
    lease_expires_at TEXT NOT NULL,
    deadline_at      TEXT,
    stop_requested   TEXT CHECK (stop_requested IN ('killed', 'interrupted', 'timeout')),
    -- An active run has no end; a finished run has an end and a runtime.
    CHECK (CASE WHEN status IN ('queued', 'running')
                THEN ended_at IS NULL AND runtime_ms IS NULL
                ELSE ended_at IS NOT NULL AND runtime_ms IS NOT NULL END),
    CHECK (status <> 'running' OR started_at IS NOT NULL),
    CHECK (status <> 'queued' OR started_at IS NULL)
);
-- One active run per session.
CREATE UNIQUE INDEX runs_one_active ON runs (session_id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_session ON runs (session_id, created_at);
CREATE INDEX runs_active_owner ON runs (owner_id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_active_lease ON runs (lease_expires_at) WHERE status IN ('queued', 'running');

-- The transition table, mirrored from clawgate.domain.TRANSITIONS (a test keeps them equal).
CREATE TABLE run_transitions (
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    PRIMARY KEY (from_status, to_status)
) WITHOUT ROWID;
INSERT INTO run_transitions (from_status, to_status) VALUES
    ('queued', 'running'), ('queued', 'failed'), ('queued', 'killed'), ('queued', 'interrupted'),
    ('running', 'done'), ('running', 'failed'), ('running', 'killed'), ('running', 'timeout'),
    ('running', 'interrupted');

CREATE TRIGGER runs_status_forward_only
BEFORE UPDATE OF status ON runs
WHEN NEW.status <> OLD.status AND NOT EXISTS (
    SELECT 1 FROM run_transitions WHERE from_status = OLD.status AND to_status = NEW.status)
BEGIN
    SELECT RAISE(ABORT, 'run status may only move forward');
END;

CREATE TRIGGER runs_finished_are_final
BEFORE UPDATE ON runs
WHEN OLD.status NOT IN ('queued', 'running')
BEGIN
    SELECT RAISE(ABORT, 'a finished run cannot change');
END;

CREATE TRIGGER runs_start_active
BEFORE INSERT ON runs
WHEN NEW.status NOT IN ('queued')
BEGIN
    SELECT RAISE(ABORT, 'a run starts queued');
END;

CREATE TABLE inbound (
    id                 TEXT PRIMARY KEY,
    session_id         TEXT NOT NULL REFERENCES sessions (id),
    channel            TEXT NOT NULL,
    channel_message_id TEXT,
    sender             TEXT,
    text               TEXT NOT NULL CHECK (length(text) <= 32000),
    received_at        TEXT NOT NULL,
    fate               TEXT NOT NULL DEFAULT 'pending'
                           CHECK (fate IN ('pending', 'answered', 'merged', 'dropped')),
    reason             TEXT CHECK (reason IN ('queue_full_oldest', 'queue_full_newest',
                           'queue_full_summarized', 'stopped', 'reset', 'superseded')),
    run_id             TEXT REFERENCES runs (id),
    decided_at         TEXT,
    CHECK (CASE fate
        WHEN 'pending' THEN run_id IS NULL AND reason IS NULL AND decided_at IS NULL
        WHEN 'dropped' THEN run_id IS NULL AND reason IS NOT NULL AND decided_at IS NOT NULL
        ELSE run_id IS NOT NULL AND reason IS NULL AND decided_at IS NOT NULL END)
);
-- A channel that delivers the same message twice gets the first record back.
CREATE UNIQUE INDEX inbound_dedup ON inbound (channel, channel_message_id)
    WHERE channel_message_id IS NOT NULL;
CREATE INDEX inbound_waiting ON inbound (session_id, received_at) WHERE fate = 'pending';
CREATE INDEX inbound_by_session ON inbound (session_id, received_at);
CREATE INDEX inbound_by_run ON inbound (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX inbound_summarized ON inbound (session_id, received_at)
    WHERE reason = 'queue_full_summarized';

CREATE TRIGGER inbound_fate_once
BEFORE UPDATE ON inbound
WHEN OLD.fate <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a message fate is decided once');
END;

CREATE TRIGGER inbound_said_is_kept
BEFORE UPDATE OF id, session_id, channel, channel_message_id, sender, text, received_at ON inbound
BEGIN
    SELECT RAISE(ABORT, 'what was said cannot change');
END;

CREATE TRIGGER inbound_no_delete
BEFORE DELETE ON inbound
BEGIN
    SELECT RAISE(ABORT, 'what was said cannot be deleted');
END;

-- Which run received the summary of a message dropped under the "summarize" policy.
CREATE TABLE queue_summaries (
    message_id TEXT PRIMARY KEY REFERENCES inbound (id),
    run_id     TEXT NOT NULL REFERENCES runs (id)
);

CREATE TABLE transcript (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    run_id     TEXT REFERENCES runs (id),
    message_id TEXT REFERENCES inbound (id),
    role       TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'note')),
    text       TEXT NOT NULL,
    stopped    INTEGER NOT NULL DEFAULT 0 CHECK (stopped IN (0, 1)),
    created_at TEXT NOT NULL
);
CREATE INDEX transcript_by_session ON transcript (session_id, seq);
CREATE INDEX transcript_by_run ON transcript (run_id) WHERE run_id IS NOT NULL;

CREATE TRIGGER transcript_append_only_update
BEFORE UPDATE ON transcript
BEGIN
    SELECT RAISE(ABORT, 'the transcript is append-only');
END;

CREATE TRIGGER transcript_append_only_delete
BEFORE DELETE ON transcript
BEGIN
    SELECT RAISE(ABORT, 'the transcript is append-only');
END;

-- One row per run transition and per message fate, written by the database itself.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    session_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    run_id     TEXT,
    message_id TEXT,
    detail     TEXT
);
CREATE INDEX events_by_session ON events (session_id, seq);

CREATE TRIGGER events_run_created
AFTER INSERT ON runs
BEGIN
    INSERT INTO events (at, session_id, kind, run_id)
    VALUES (NEW.created_at, NEW.session_id, 'run.' || NEW.status, NEW.id);
END;

CREATE TRIGGER events_run_transition
AFTER UPDATE OF status ON runs
WHEN NEW.status <> OLD.status
BEGIN
    INSERT INTO events (at, session_id, kind, run_id, detail)
    VALUES (COALESCE(NEW.ended_at, NEW.started_at), NEW.session_id, 'run.' || NEW.status,
            NEW.id, OLD.status);
END;

CREATE TRIGGER events_message_accepted
AFTER INSERT ON inbound
BEGIN
    INSERT INTO events (at, session_id, kind, message_id)
    VALUES (NEW.received_at, NEW.session_id, 'message.pending', NEW.id);
END;

CREATE TRIGGER events_message_fate
AFTER UPDATE OF fate ON inbound
WHEN NEW.fate <> OLD.fate
BEGIN
    INSERT INTO events (at, session_id, kind, run_id, message_id, detail)
    VALUES (NEW.decided_at, NEW.session_id, 'message.' || NEW.fate, NEW.run_id, NEW.id,
            NEW.reason);
END;
