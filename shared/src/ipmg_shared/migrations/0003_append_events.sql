-- One batch of appends written under the append lock, if the store's plan still holds.
--
-- Called alone it is a whole append in one round trip: the lock, the check, the write, the
-- relay's wake-up and the commit. Called inside a transaction that already holds the lock
-- (a batch planned on what was read under it), taking the lock again is free.
--
-- The plan assumed the chain's head, each stream's version before the batch and that no
-- command id of the batch was used. If any of it no longer holds (another process of the
-- service appended, a command was retried), nothing is written and the result is false.
--
-- PL/pgSQL in a volatile function: each statement takes a fresh snapshot, so the check after
-- the lock sees every append committed before the lock was granted (a single statement's
-- snapshot would be taken before it waited), and its plans are kept between calls.
CREATE FUNCTION append_events(
    lock_key bigint,
    appending_source text,
    appended_at timestamptz,
    new_positions bigint[],
    new_event_ids uuid[],
    new_stream_ids text[],
    new_stream_versions integer[],
    new_types text[],
    new_schema_versions integer[],
    new_occurred_ats timestamptz[],
    new_actors jsonb[],
    new_correlation_ids uuid[],
    new_causation_ids uuid[],
    new_payloads jsonb[],
    new_prev_hashes text[],
    new_hashes text[],
    command_ids text[],
    command_fingerprints text[],
    command_streams text[],
    command_outcomes jsonb[],
    planned_head bigint,
    planned_streams text[],
    planned_versions integer[],
    wake_channel text,
    wake_message text
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    IF coalesce((SELECT max(position) FROM events), 0) <> planned_head
       OR EXISTS (SELECT FROM command_results AS c WHERE c.command_id = ANY(command_ids))
       OR EXISTS (
           SELECT FROM unnest(planned_streams, planned_versions) AS s(stream_id, version)
           WHERE s.version <> (SELECT coalesce(max(e.stream_version), 0)
                               FROM events AS e WHERE e.stream_id = s.stream_id))
    THEN
        RETURN false;
    END IF;
    INSERT INTO events (
        position, event_id, stream_id, stream_version, type, schema_version, source,
        occurred_at, recorded_at, actor, correlation_id, causation_id, payload, prev_hash, hash)
    SELECT n.position, n.event_id, n.stream_id, n.stream_version, n.type, n.schema_version,
           appending_source, n.occurred_at, appended_at, n.actor, n.correlation_id,
           n.causation_id, n.payload, n.prev_hash, n.hash
    FROM unnest(new_positions, new_event_ids, new_stream_ids, new_stream_versions, new_types,
                new_schema_versions, new_occurred_ats, new_actors, new_correlation_ids,
                new_causation_ids, new_payloads, new_prev_hashes, new_hashes)
         AS n(position, event_id, stream_id, stream_version, type, schema_version, occurred_at,
              actor, correlation_id, causation_id, payload, prev_hash, hash);
    INSERT INTO command_results (command_id, fingerprint, stream_id, result)
    SELECT * FROM unnest(command_ids, command_fingerprints, command_streams, command_outcomes);
    PERFORM pg_notify(wake_channel, wake_message);
    RETURN true;
END
$$;
