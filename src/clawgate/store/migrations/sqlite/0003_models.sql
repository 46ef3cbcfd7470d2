-- clawgate schema 3: real model providers. Which auth profile answered a run and what was
-- tried first, cached-token counts, cooldowns of auth profiles (persisted, so a restart does
-- not hammer a failing key), and summaries that stand for older transcript entries.

ALTER TABLE runs ADD COLUMN profile TEXT;
ALTER TABLE runs ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0);
ALTER TABLE sessions ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0
    CHECK (cached_tokens >= 0);
-- A compaction summary is an appended note that stands for every entry up to this seq.
ALTER TABLE transcript ADD COLUMN covers_through INTEGER;
CREATE INDEX transcript_summaries ON transcript (session_id, seq)
    WHERE covers_through IS NOT NULL;

-- Every candidate a run tried, in order: why earlier ones were skipped, which one answered.
CREATE TABLE run_attempts (
    run_id   TEXT NOT NULL REFERENCES runs (id),
    seq      INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model    TEXT NOT NULL,
    profile  TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    error    TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE cooldowns (
    profile_key TEXT PRIMARY KEY,
    until       TEXT NOT NULL,
    failures    INTEGER NOT NULL CHECK (failures >= 1),
    reason      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
