-- The append-only triggers fire in every session, replication sessions included: an ordinary
-- trigger is skipped under session_replication_role = replica, which a superuser may set.
ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_truncate;
