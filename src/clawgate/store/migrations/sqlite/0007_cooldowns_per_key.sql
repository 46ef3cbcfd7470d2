-- clawgate schema 7: a rest belongs to the key that met it. Each rest keeps a short,
-- non-reversible fingerprint of that key (the first 8 hex digits of its SHA-256, never the key),
-- so a profile whose key was changed since is tried again at once instead of resting on the old
-- key's failures. NULL: no key (a local server, echo), or a rest recorded before this schema,
-- which rests the profile whatever its key, as before.

ALTER TABLE cooldowns ADD COLUMN key_fingerprint TEXT;
