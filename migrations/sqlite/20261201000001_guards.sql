-- Guards against the vault's answers being used as oracles (see the PostgreSQL migration of the
-- same name for what each column means).

alter table tokens add column bucket blob;
alter table tokens add column import_window blob;
create index tokens_bucket_idx on tokens (tenant_id, bucket, created_at) where bucket is not null;

create table tokenize_buckets (
    tenant_id blob not null references tenants (id),
    bucket blob not null,
    counted_since text not null,
    locked_at text,
    locked_until text,
    locked_count integer,
    released_at text,
    primary key (tenant_id, bucket),
    check ((locked_at is null) = (locked_until is null))
) strict;

create table import_windows (
    id blob not null primary key,
    tenant_id blob not null references tenants (id),
    principal_id blob not null references principals (id),
    bucket_budget integer not null check (bucket_budget > 0),
    opened_at text not null,
    closes_at text not null,
    closed_at text,
    check (closes_at > opened_at)
) strict;

alter table principals add column lookups_throttled_until text;

create table lookup_misses (
    principal_id blob not null references principals (id),
    at text not null
) strict;
create index lookup_misses_principal_idx on lookup_misses (principal_id, at);
