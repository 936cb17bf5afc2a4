-- Run once by the postgres image, as the superuser, on the first start with an empty data
-- volume (compose.yaml mounts it into /docker-entrypoint-initdb.d). Changing the passwords in
-- .env later changes nothing here: see the README's Docker Compose section.
--
-- Two roles, as the README's production section asks: strongroom_owner owns the database and
-- its schema (`strongroom migrate` runs as it); strongroom_app is what `serve` and the
-- principal commands log in as, and owns nothing.

-- From the environment, not the command line, so that no password shows in a process list.
\getenv owner_password STRONGROOM_OWNER_PASSWORD
\getenv app_password STRONGROOM_APP_PASSWORD

create role strongroom_owner login password :'owner_password';
create role strongroom_app login password :'app_password';
create database strongroom owner strongroom_owner;
revoke all on database strongroom from public;
grant connect on database strongroom to strongroom_app;

\connect strongroom
-- Every table and sequence the owner creates, now and in later migrations, is the app's to
-- read and write. The grants service (grants.sql) runs after every migrate and takes back what
-- no default can say per table: changing audit records and the migrations' own table.
alter default privileges for role strongroom_owner in schema public
    grant select, insert, update, delete on tables to strongroom_app;
alter default privileges for role strongroom_owner in schema public
    grant usage, select on sequences to strongroom_app;
