-- Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
--
-- One role and one database per service, so the layout exists from the first start. The roles
-- cannot log in yet: the migrate job (`ipmg migrate`) gives each its LOGIN and password
-- (IPMG_SERVICE_DB_PASSWORD), grants it CONNECT and least privilege, and creates anything
-- missing itself; everything here is something it would do, so the two never disagree.
-- The names assume the default IPMG_DATABASE_PREFIX (ipmg_).

SELECT format('CREATE ROLE %I NOLOGIN', service)
FROM unnest(ARRAY['ipmg_meetings', 'ipmg_resolutions', 'ipmg_notifications', 'ipmg_reporting'])
    AS service
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = service)
\gexec

SELECT format('CREATE DATABASE %I', service)
FROM unnest(ARRAY['ipmg_meetings', 'ipmg_resolutions', 'ipmg_notifications', 'ipmg_reporting'])
    AS service
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = service)
\gexec

-- Only the service's own role may connect to its database.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', service),
       format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', service, service)
FROM unnest(ARRAY['ipmg_meetings', 'ipmg_resolutions', 'ipmg_notifications', 'ipmg_reporting'])
    AS service
\gexec

-- The maintenance database is the administrator's alone: no service role connects to it or
-- makes temporary tables there.
REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC;
