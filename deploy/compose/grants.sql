-- Run by the grants service as strongroom_owner after every `strongroom migrate`, as the
-- README's production section does after its own: the vault only appends to its audit trail
-- and reads it (a trigger refuses any change to a record, to everyone; without the privilege
-- the app role's attempt stops before it), and only reads the migrations' own table.
-- Idempotent. The grants come first so that a table made before the default privileges of
-- initdb.sql (a database restored from elsewhere) is covered too.
grant select, insert, update, delete on all tables in schema public to strongroom_app;
grant usage, select on all sequences in schema public to strongroom_app;
revoke update, delete, truncate on audit_events from strongroom_app;
revoke insert, update, delete, truncate on _sqlx_migrations from strongroom_app;
