-- The notifications service's own tables, beside its event store (shared/0001) and its
-- consumer checkpoints (shared/0002).

-- Its projection of the upstream topics: what it needs to address a message and to know
-- which deadlines are open. Every write is an upsert from the event's own fields, so applying
-- an event again (a rebuilt checkpoint) leaves the same rows.
CREATE TABLE known_meetings (
    meeting_id     uuid PRIMARY KEY,
    scheduled_for  date NOT NULL,
    host_unit      text NOT NULL,
    venue          text NOT NULL,
    occasion       text,
    status         text NOT NULL CHECK (status IN ('scheduled', 'cancelled', 'held'))
);

CREATE TABLE known_resolutions (
    resolution_id      uuid PRIMARY KEY,
    number             integer NOT NULL,
    title              text NOT NULL,
    text               text NOT NULL,
    responsible_units  text[] NOT NULL,
    status             text NOT NULL,
    -- The stream version of the latest ResolutionCirculated: identifies the feedback round.
    circulation        integer NOT NULL DEFAULT 0,
    participants       text[] NOT NULL DEFAULT '{}',
    feedback_due       date
);

CREATE TABLE feedback_given (
    resolution_id  uuid    NOT NULL,
    circulation    integer NOT NULL,
    unit           text    NOT NULL,
    PRIMARY KEY (resolution_id, circulation, unit)
);

CREATE TABLE known_actions (
    resolution_id  uuid    NOT NULL,
    action_id      text    NOT NULL,
    unit           text    NOT NULL,
    description    text    NOT NULL,
    due_on         date    NOT NULL,
    status         text    NOT NULL DEFAULT 'not_started',
    percent        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (resolution_id, action_id)
);

-- One message to one recipient by one channel. The id is derived from (cause event, channel,
-- recipient) and the triple is unique: a redelivered or replayed cause inserts nothing new,
-- so nothing is sent twice. The outcome of each round is an event in the store
-- (stream notification-<delivery_id>, version = round).
CREATE TABLE deliveries (
    delivery_id      uuid        PRIMARY KEY,
    cause_event_id   uuid        NOT NULL,
    cause_type       text        NOT NULL,
    cause_source     text        NOT NULL,
    correlation_id   uuid        NOT NULL,
    kind             text        NOT NULL,
    channel          text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient        text        NOT NULL,
    unit             text        NOT NULL,
    person           text,
    address          text        NOT NULL,
    subject          text        NOT NULL,
    body_text        text        NOT NULL,
    body_html        text,
    -- suppressed: its cause was history being replayed (older than the stale horizon).
    status           text        NOT NULL
                     CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    round            integer     NOT NULL DEFAULT 1 CHECK (round >= 1),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    lease_until      timestamptz,
    last_error       text,
    outcome_event_id uuid,
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    UNIQUE (cause_event_id, channel, recipient)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_unit ON deliveries (unit, created_at);

-- Each (kind, entity, unit, due date) is reminded at most once.
CREATE TABLE reminders (
    kind       text        NOT NULL,
    entity     text        NOT NULL,
    unit       text        NOT NULL,
    due_on     date        NOT NULL,
    event_id   uuid        NOT NULL UNIQUE,
    issued_at  timestamptz NOT NULL,
    PRIMARY KEY (kind, entity, unit, due_on)
);
