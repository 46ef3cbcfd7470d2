-- clawgate schema 9, the queue modes kept to their word.
--
-- A run records the queue mode in force when it took its messages: that mode decides what
-- becomes of the messages sent during it (handed to it in steer mode, stopping it in
-- interrupt mode), whatever the mode is changed to meanwhile. Runs from before: NULL.
--
-- The summary of a message dropped under the "summarize" policy is settled either way: a run
-- was told of it (run_id), or stop or a reset cleared it first (cleared), so that it never
-- reaches a later, unrelated reply and the message says what became of it. A summary left
-- unsent before this schema is settled as a stop or a reset would settle it now:
-- * cleared by a stop that came after it (a stop before this schema dropped the waiting
--   messages but left the summary for the next reply): a message of its session dropped
--   'stopped' later (only a stop dropped messages so), or, when nothing waited, a run of its
--   (current) session ended 'killed' later (only a stop ends a run so, but a reset, whose
--   kill may end after the session is archived);
-- * cleared by the reset, in an archived session (a reset archives it: no run can carry it).
-- A reset always archives the session, so no summary in a current session had one after it.
--
-- A message.dropped event says which message (its first 120 characters, as message.pending
-- does): a dropped message is not answered, so a client would not see it again.

ALTER TABLE runs ADD COLUMN queue_mode TEXT
    CHECK (queue_mode IN ('followup', 'collect', 'steer', 'interrupt'));

CREATE TABLE queue_summaries_settled (
    message_id TEXT PRIMARY KEY REFERENCES inbound (id),
    run_id     TEXT REFERENCES runs (id),
    cleared    TEXT CHECK (cleared IN ('stopped', 'reset')),
    CHECK ((run_id IS NULL) <> (cleared IS NULL))
);
INSERT INTO queue_summaries_settled (message_id, run_id)
    SELECT message_id, run_id FROM queue_summaries;
DROP TABLE queue_summaries;
ALTER TABLE queue_summaries_settled RENAME TO queue_summaries;

CREATE TRIGGER queue_summaries_kept_update
BEFORE UPDATE ON queue_summaries
BEGIN
    SELECT RAISE(ABORT, 'which run was told of a dropped message is kept as it was recorded');
END;

CREATE TRIGGER queue_summaries_kept_delete
BEFORE DELETE ON queue_summaries
BEGIN
    SELECT RAISE(ABORT, 'which run was told of a dropped message is kept as it was recorded');
END;

INSERT INTO queue_summaries (message_id, cleared)
    SELECT id, 'stopped' FROM inbound AS summarized
    WHERE reason = 'queue_full_summarized'
      AND NOT EXISTS (SELECT 1 FROM queue_summaries q WHERE q.message_id = summarized.id)
      AND (EXISTS (SELECT 1 FROM inbound AS stopped
                   WHERE stopped.session_id = summarized.session_id
                     AND stopped.reason = 'stopped'
                     AND stopped.decided_at > summarized.decided_at)
           OR EXISTS (SELECT 1 FROM runs JOIN sessions ON sessions.id = runs.session_id
                      WHERE runs.session_id = summarized.session_id
                        AND sessions.archived_at IS NULL
                        AND runs.status = 'killed'
                        AND runs.ended_at > summarized.decided_at));

INSERT INTO queue_summaries (message_id, cleared)
    SELECT id, 'reset' FROM inbound
    WHERE reason = 'queue_full_summarized'
      AND NOT EXISTS (SELECT 1 FROM queue_summaries q WHERE q.message_id = inbound.id)
      AND session_id IN (SELECT id FROM sessions WHERE archived_at IS NOT NULL);

DROP TRIGGER events_message_fate;

CREATE TRIGGER events_message_fate
AFTER UPDATE OF fate ON inbound
WHEN NEW.fate <> OLD.fate
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, run_id, message_id, detail)
    VALUES (NEW.decided_at, NEW.session_id,
            (SELECT key FROM sessions WHERE id = NEW.session_id), 'message.' || NEW.fate,
            NEW.run_id, NEW.id,
            CASE WHEN NEW.fate = 'dropped'
                THEN json_object('fate', NEW.fate, 'reason', NEW.reason,
                                 'preview', substr(NEW.text, 1, 120))
                ELSE json_object('fate', NEW.fate, 'reason', NEW.reason) END);
END;
