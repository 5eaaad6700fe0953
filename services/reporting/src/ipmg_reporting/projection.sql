-- One copy of reporting's projection. The same DDL makes the live copy (schema `live`) and a
-- copy being rebuilt beside it (schema `rebuild`): it is applied with search_path set to the
-- copy's schema, so no name here is qualified. Changing it means a new PROJECTION_VERSION.
--
-- Documents, timeline entries and envelopes are `json`, not `jsonb`: each is stored and read
-- back whole, never queried inside, and `json` keeps the text as written, with no conversion
-- on the way in or out (a third of the database's work per event in a rebuild).

CREATE TABLE projection_version (
    version   integer     NOT NULL,
    built_at  timestamptz NOT NULL DEFAULT now()
);

-- The shared consumer runner's checkpoints (same shape as ipmg_shared's migration), kept in
-- the copy so that a swapped-in copy carries exactly what it has applied.
CREATE TABLE consumer_streams (
    consumer      text    NOT NULL,
    stream_id     text    NOT NULL,
    last_version  integer NOT NULL,
    PRIMARY KEY (consumer, stream_id)
);

CREATE TABLE consumer_sources (
    consumer       text        NOT NULL,
    source         text        NOT NULL,
    last_position  bigint      NOT NULL,
    events_applied bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source)
);

-- One document per meeting and per resolution (ipmg_reporting.projections).
CREATE TABLE documents (
    kind       text    NOT NULL,
    entity_id  text    NOT NULL,
    version    integer NOT NULL,
    doc        json    NOT NULL,
    PRIMARY KEY (kind, entity_id)
);

-- The audit timeline: an event on its own entity's timeline and on related ones.
CREATE TABLE timeline (
    entity_id    text        NOT NULL,
    source       text        NOT NULL,
    position     bigint      NOT NULL,
    recorded_at  timestamptz NOT NULL,
    is_primary   boolean     NOT NULL,
    entry        json        NOT NULL,
    PRIMARY KEY (entity_id, source, position)
);

CREATE INDEX timeline_recent ON timeline (recorded_at DESC, source DESC, position DESC)
    WHERE is_primary;

-- Reporting's own copy of the log it applied: answers as of a past instant fold it.
CREATE TABLE event_log (
    source       text        NOT NULL,
    position     bigint      NOT NULL,
    event_id     uuid        NOT NULL UNIQUE,
    recorded_at  timestamptz NOT NULL,
    envelope     json        NOT NULL,
    PRIMARY KEY (source, position)
);

CREATE INDEX event_log_recorded_at ON event_log (recorded_at);
