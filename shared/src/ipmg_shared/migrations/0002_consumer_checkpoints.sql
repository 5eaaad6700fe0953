-- Effectively-once consumption: effect and checkpoint commit in one transaction.
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
