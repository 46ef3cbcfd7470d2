-- clawgate schema 6: a rate limit or an overload rests one model on a key (providers limit each
-- model apart), so another model on the same key stays usable and its answers no longer erase
-- that rest. A refused key or a billing problem still rests the whole key: model ''. Rows from
-- before were rests of whole keys, and stay so.

CREATE TABLE cooldowns_by_model (
    profile_key TEXT NOT NULL,
    model       TEXT NOT NULL DEFAULT '',
    until       TEXT NOT NULL,
    failures    INTEGER NOT NULL CHECK (failures >= 1),
    reason      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (profile_key, model)
) WITHOUT ROWID;

INSERT INTO cooldowns_by_model (profile_key, model, until, failures, reason, updated_at)
    SELECT profile_key, '', until, failures, reason, updated_at FROM cooldowns;
DROP TABLE cooldowns;
ALTER TABLE cooldowns_by_model RENAME TO cooldowns;
