-- The event store: the source of truth of one service. Append-only.
CREATE TABLE events (
    position        bigint      PRIMARY KEY CHECK (position >= 1),
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version >= 1),
    type            text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    source          text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor           jsonb       NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    payload         jsonb       NOT NULL,
    prev_hash       char(64)    NOT NULL,
    hash            char(64)    NOT NULL UNIQUE,
    UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_recorded_at ON events (recorded_at);

-- History is never changed: refuse UPDATE, DELETE and TRUNCATE for everyone, owner included
-- (revoked grants are the first wall; this trigger is the second).
CREATE FUNCTION refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- Idempotent commands: the first result of a command id, stored in the append transaction.
CREATE TABLE command_results (
    command_id   text        PRIMARY KEY,
    fingerprint  text        NOT NULL,
    stream_id    text        NOT NULL,
    result       jsonb       NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- What the relay has published, per topic (the outbox is the events table itself).
CREATE TABLE relay_progress (
    topic               text        PRIMARY KEY,
    published_position  bigint      NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
