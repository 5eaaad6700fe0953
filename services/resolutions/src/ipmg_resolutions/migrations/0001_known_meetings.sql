-- What resolutions knows of meetings, from the meetings topic (never from meetings' tables).
CREATE TABLE known_meetings (
    meeting_id  uuid        PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN ('scheduled', 'held', 'cancelled')),
    held_on     date,
    host_unit   text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
