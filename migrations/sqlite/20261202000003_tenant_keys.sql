-- Per-tenant keys (see the PostgreSQL migration of the same name).

create table tenant_keys (
    tenant_id blob not null primary key references tenants (id),
    wrapped blob,
    own_fingerprints integer not null,
    created_at text not null,
    destroyed_at text,
    check ((destroyed_at is null) = (wrapped is not null))
) strict;

alter table data_keys add column tenant_bound integer not null default 0;

alter table tenants add column shredded_at text;
