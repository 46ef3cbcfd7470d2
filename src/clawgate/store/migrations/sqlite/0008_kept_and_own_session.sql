-- clawgate schema 8: the database refuses, like schema 1's guards, the hand-written writes (the
-- sqlite3 shell, a script) that would break "every message has exactly one recorded fate",
-- "nothing said is lost" and "an outage delays replies, it does not drop them". No clawgate
-- command does any of these: nothing is deleted but owners and rests, a run stays in its
-- session, and a message, a transcript entry or a reply names only a run of its own session.
-- Rows written before this schema are not checked here; `clawgate doctor` reports those.

CREATE TRIGGER sessions_no_delete
BEFORE DELETE ON sessions
BEGIN
    SELECT RAISE(ABORT, 'a session cannot be deleted: /new archives it, and what was said in it is kept');
END;

CREATE TRIGGER sessions_stay_archived
BEFORE UPDATE OF archived_at ON sessions
WHEN OLD.archived_at IS NOT NULL AND NEW.archived_at IS NOT OLD.archived_at
BEGIN
    SELECT RAISE(ABORT, 'an archived session stays archived');
END;

CREATE TRIGGER sessions_keep_their_key
BEFORE UPDATE OF id, key ON sessions
WHEN NEW.id IS NOT OLD.id OR NEW.key IS NOT OLD.key
BEGIN
    SELECT RAISE(ABORT, 'a session keeps its id and key');
END;

CREATE TRIGGER sessions_tokens_only_grow
BEFORE UPDATE OF input_tokens, output_tokens, cached_tokens ON sessions
WHEN NEW.input_tokens < OLD.input_tokens OR NEW.output_tokens < OLD.output_tokens
     OR NEW.cached_tokens < OLD.cached_tokens
BEGIN
    SELECT RAISE(ABORT, 'tokens spent stay counted: token counts only go up');
END;

CREATE TRIGGER runs_no_delete
BEFORE DELETE ON runs
BEGIN
    SELECT RAISE(ABORT, 'a run cannot be deleted: it is the recorded fate of its messages');
END;

CREATE TRIGGER runs_stay_in_their_session
BEFORE UPDATE OF session_id ON runs
WHEN NEW.session_id IS NOT OLD.session_id
BEGIN
    SELECT RAISE(ABORT, 'a run belongs to the session it was started in');
END;

CREATE TRIGGER runs_tokens_only_grow
BEFORE UPDATE OF input_tokens, output_tokens, cached_tokens ON runs
WHEN NEW.input_tokens < OLD.input_tokens OR NEW.output_tokens < OLD.output_tokens
     OR NEW.cached_tokens < OLD.cached_tokens
BEGIN
    SELECT RAISE(ABORT, 'tokens spent stay counted: token counts only go up');
END;

CREATE TRIGGER inbound_run_of_its_session
BEFORE UPDATE OF run_id ON inbound
WHEN NEW.run_id IS NOT NULL
     AND NEW.session_id IS NOT (SELECT session_id FROM runs WHERE id = NEW.run_id)
BEGIN
    SELECT RAISE(ABORT, 'a message is answered or merged by a run of its own session');
END;

CREATE TRIGGER inbound_accepted_run_of_its_session
BEFORE INSERT ON inbound
WHEN NEW.run_id IS NOT NULL
     AND NEW.session_id IS NOT (SELECT session_id FROM runs WHERE id = NEW.run_id)
BEGIN
    SELECT RAISE(ABORT, 'a message is answered or merged by a run of its own session');
END;

CREATE TRIGGER transcript_of_its_session
BEFORE INSERT ON transcript
WHEN (NEW.run_id IS NOT NULL
      AND NEW.session_id IS NOT (SELECT session_id FROM runs WHERE id = NEW.run_id))
     OR (NEW.message_id IS NOT NULL
         AND NEW.session_id IS NOT (SELECT session_id FROM inbound WHERE id = NEW.message_id))
BEGIN
    SELECT RAISE(ABORT, 'a transcript entry belongs to the session of its run and its message');
END;

CREATE TRIGGER outbox_of_its_session
BEFORE INSERT ON outbox
WHEN NEW.session_id IS NOT (SELECT session_id FROM runs WHERE id = NEW.run_id)
BEGIN
    SELECT RAISE(ABORT, 'a reply is delivered for a run of its own session');
END;

CREATE TRIGGER outbox_pending_kept
BEFORE DELETE ON outbox
WHEN OLD.status = 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a reply waiting for delivery cannot be deleted: an outage delays replies, it does not drop them');
END;

CREATE TRIGGER run_attempts_kept_update
BEFORE UPDATE ON run_attempts
BEGIN
    SELECT RAISE(ABORT, 'what a run tried is kept as it was recorded');
END;

CREATE TRIGGER run_attempts_kept_delete
BEFORE DELETE ON run_attempts
BEGIN
    SELECT RAISE(ABORT, 'what a run tried is kept as it was recorded');
END;

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

CREATE TRIGGER events_append_only_update
BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event feed is append-only');
END;

CREATE TRIGGER events_append_only_delete
BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event feed is append-only');
END;

-- Since schema 4 every read of the feed goes by seq or by session key (events_by_key); this
-- index served none of them and cost about a tenth of a long-used database and a B-tree
-- insert per event.
DROP INDEX events_by_session;
