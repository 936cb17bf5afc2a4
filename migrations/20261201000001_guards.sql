-- Guards against the vault's answers being used as oracles: the tokenize enumeration guard
-- (per card bucket) and the lookup guessing guard (per principal).

alter table tokens add column bucket bytea;
alter table tokens add column import_window uuid;
comment on column tokens.bucket is 'Keyed id (HMAC under the tenant''s fingerprint key) of the card''s first six, last four and length; counts new PANs per bucket. Kept when the token is destroyed, so deleting cannot refill a budget.';
comment on column tokens.import_window is 'The import window the token was created under, whose budget it counted against; null for ordinary traffic.';

create index tokens_bucket_idx on tokens (tenant_id, bucket, created_at) where bucket is not null;
comment on index tokens_bucket_idx is 'Counts the new PANs of one bucket in the rolling window.';

create table tokenize_buckets (
    tenant_id uuid not null,
    bucket bytea not null,
    counted_since timestamptz not null,
    locked_at timestamptz,
    locked_until timestamptz,
    locked_count integer,
    released_at timestamptz,
    constraint tokenize_buckets_pkey primary key (tenant_id, bucket),
    constraint tokenize_buckets_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint tokenize_buckets_lock_check check ((locked_at is null) = (locked_until is null))
);
comment on table tokenize_buckets is 'Buckets that have been locked as enumeration suspects, and since when their new PANs count again. A bucket with no row counts the whole rolling window.';
comment on column tokenize_buckets.counted_since is 'New PANs created before this do not count (the end of a lock, or its release by an admin).';
comment on column tokenize_buckets.locked_until is 'Until then every tokenize in the bucket is refused; an admin may release it earlier.';
comment on column tokenize_buckets.locked_count is 'New PANs counted when the lock was set, budget included.';

create table import_windows (
    id uuid not null,
    tenant_id uuid not null,
    principal_id uuid not null,
    bucket_budget integer not null,
    opened_at timestamptz not null,
    closes_at timestamptz not null,
    closed_at timestamptz,
    constraint import_windows_pkey primary key (id),
    constraint import_windows_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint import_windows_principal_fkey foreign key (principal_id) references principals (id),
    constraint import_windows_budget_check check (bucket_budget > 0),
    constraint import_windows_time_check check (closes_at > opened_at)
);
comment on table import_windows is 'Time-boxed migrations from another vault: one principal tokenizes under a bucket budget of its own, which never widens anyone else''s.';
comment on column import_windows.closed_at is 'Closed early by an admin; otherwise the window ends at closes_at by itself.';

alter table principals add column lookups_throttled_until timestamptz;
comment on column principals.lookups_throttled_until is 'Lookups, deletes and detokenize calls of this principal are refused until then: it kept asking for tokens that do not exist.';

create table lookup_misses (
    principal_id uuid not null,
    at timestamptz not null,
    constraint lookup_misses_principal_fkey foreign key (principal_id) references principals (id)
);
comment on table lookup_misses is 'Token lookups, deletes and detokenize calls that found no token, per principal; rows older than the window are purged.';
create index lookup_misses_principal_idx on lookup_misses (principal_id, at);

-- Counts the new PANs of each (tenant, bucket, import window) after taking the bucket's lock
-- stripes in a fixed order. One call, two statements: the count runs after the locks are held,
-- so (in read committed) it sees every row committed by whoever held them before.
create function guard_count_new_pans(
    stripes bigint[], tenants uuid[], buckets bytea[], windows uuid[], since timestamptz[]
) returns table (ord bigint, locked_until timestamptz, new_pans bigint)
language plpgsql volatile as $$
begin
    perform pg_advisory_xact_lock(s.k) from (select k from unnest(stripes) as u(k) order by k) as s;
    return query
    select u.n, b.locked_until,
           (select count(*) from tokens x
            where x.tenant_id = u.t and x.bucket = u.k
              and x.import_window is not distinct from u.w
              and x.created_at > greatest(u.s, coalesce(b.counted_since, u.s)))
    from unnest(tenants, buckets, windows, since) with ordinality as u(t, k, w, s, n)
    left join tokenize_buckets b on b.tenant_id = u.t and b.bucket = u.k
    order by u.n;
end
$$;
comment on function guard_count_new_pans is 'The enumeration guard''s count, under its locks; called inside the token insert''s transaction.';
