-- Reporting keeps each copy of its projection in a schema of its own (`live`, and `rebuild`
-- while a rebuild runs beside it) and swaps them by renaming, so its role owns those schemas
-- and may create them in its database. The role is named like the database
-- (Settings.service_role and Settings.service_database).
DO $migration$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_database()) THEN
        RAISE EXCEPTION 'no role named like the database %', current_database();
    END IF;
    EXECUTE format('GRANT CREATE ON DATABASE %I TO %I', current_database(), current_database());
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS live AUTHORIZATION %I', current_database());
END
$migration$;
