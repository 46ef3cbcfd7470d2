-- clawgate schema 4: the event table becomes a feed clients can resume from. Each row names its
-- session key and carries what happened as JSON, so a client that missed events reads them
-- from here after the last seq it saw. Session changes get rows too.

ALTER TABLE events ADD COLUMN session_key TEXT;
UPDATE events SET session_key = (SELECT key FROM sessions WHERE sessions.id = events.session_id);
CREATE INDEX events_by_key ON events (session_key, seq);

DROP TRIGGER events_run_created;
DROP TRIGGER events_run_transition;
DROP TRIGGER events_message_accepted;
DROP TRIGGER events_message_fate;

CREATE TRIGGER events_run_created
AFTER INSERT ON runs
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, run_id, detail)
    VALUES (NEW.created_at, NEW.session_id,
            (SELECT key FROM sessions WHERE id = NEW.session_id), 'run.' || NEW.status, NEW.id,
            json_object('status', NEW.status));
END;

CREATE TRIGGER events_run_transition
AFTER UPDATE OF status ON runs
WHEN NEW.status <> OLD.status
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, run_id, detail)
    VALUES (COALESCE(NEW.ended_at, NEW.started_at), NEW.session_id,
            (SELECT key FROM sessions WHERE id = NEW.session_id), 'run.' || NEW.status, NEW.id,
            json_object('status', NEW.status, 'from', OLD.status, 'error', NEW.error,
                        'runtimeMs', NEW.runtime_ms, 'provider', NEW.provider,
                        'model', NEW.model, 'profile', NEW.profile,
                        'inputTokens', NEW.input_tokens, 'outputTokens', NEW.output_tokens));
END;

CREATE TRIGGER events_message_accepted
AFTER INSERT ON inbound
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, message_id, detail)
    VALUES (NEW.received_at, NEW.session_id,
            (SELECT key FROM sessions WHERE id = NEW.session_id), 'message.pending', NEW.id,
            json_object('channel', NEW.channel, 'preview', substr(NEW.text, 1, 120)));
END;

CREATE TRIGGER events_message_fate
AFTER UPDATE OF fate ON inbound
WHEN NEW.fate <> OLD.fate
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, run_id, message_id, detail)
    VALUES (NEW.decided_at, NEW.session_id,
            (SELECT key FROM sessions WHERE id = NEW.session_id), 'message.' || NEW.fate,
            NEW.run_id, NEW.id, json_object('fate', NEW.fate, 'reason', NEW.reason));
END;

CREATE TRIGGER events_session_created
AFTER INSERT ON sessions
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, detail)
    VALUES (NEW.created_at, NEW.id, NEW.key, 'session.created', json_object('key', NEW.key));
END;

CREATE TRIGGER events_session_archived
AFTER UPDATE OF archived_at ON sessions
WHEN OLD.archived_at IS NULL AND NEW.archived_at IS NOT NULL
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, detail)
    VALUES (NEW.archived_at, NEW.id, NEW.key, 'session.archived', json_object('key', NEW.key));
END;

CREATE TRIGGER events_session_model
AFTER UPDATE OF model ON sessions
WHEN NEW.model IS NOT OLD.model
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, detail)
    VALUES (NEW.updated_at, NEW.id, NEW.key, 'session.model', json_object('model', NEW.model));
END;

CREATE TRIGGER events_session_queue
AFTER UPDATE OF queue_mode, debounce_ms, queue_cap, drop_policy ON sessions
WHEN NEW.queue_mode IS NOT OLD.queue_mode OR NEW.debounce_ms IS NOT OLD.debounce_ms
     OR NEW.queue_cap IS NOT OLD.queue_cap OR NEW.drop_policy IS NOT OLD.drop_policy
BEGIN
    INSERT INTO events (at, session_id, session_key, kind, detail)
    VALUES (NEW.updated_at, NEW.id, NEW.key, 'session.queue',
            json_object('mode', NEW.queue_mode, 'debounceMs', NEW.debounce_ms,
                        'cap', NEW.queue_cap, 'drop', NEW.drop_policy));
END;
