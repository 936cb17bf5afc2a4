-- The embedded store (SQLite): the same tables, rules and guarantees as the PostgreSQL schema in
-- ../, for one node. Arrays are JSON text; times are RFC 3339 text in UTC (they sort as text);
-- ids are 16-byte blobs.

create table tenants (
    id blob not null primary key,
    name text not null unique check (length(name) between 1 and 100),
    created_at text not null
) strict;

create table principals (
    id blob not null primary key,
    tenant_id blob not null references tenants (id),
    name text not null check (length(name) between 1 and 100),
    roles text not null check (json_array_length(roles) > 0),
    key_hash blob not null unique,
    created_at text not null,
    expires_at text,
    disabled_at text,
    totp_secret blob,
    totp_last_step integer,
    totp_failures integer not null default 0,
    totp_locked_until text,
    constraint principals_tenant_name_key unique (tenant_id, name),
    -- Separation of duties: an operator cannot hold a role that touches card data.
    constraint principals_admin_separation check (
        not (instr(roles, '"admin"') > 0
             and (instr(roles, '"tokenizer"') > 0 or instr(roles, '"detokenizer"') > 0
                  or instr(roles, '"requester"') > 0 or instr(roles, '"approver"') > 0))
    )
) strict;

create table data_keys (
    version integer not null primary key check (version > 0),
    wrapped blob not null,
    encryptions integer not null default 0 check (encryptions >= 0),
    created_at text not null,
    retired_at text
) strict;

create table vault_secrets (
    name text not null primary key,
    wrapped blob not null,
    created_at text not null
) strict;

-- One row per token ever issued; deleting or purging destroys the card data, keeps the row.
create table tokens (
    tenant_id blob not null references tenants (id),
    token text not null,
    format text not null check (format in ('six_four', 'last_four', 'length_preserving', 'opaque')),
    fingerprint blob,
    sealed_pan blob,
    dek_version integer references data_keys (version),
    masked_pan text,
    metadata text,
    created_at text not null,
    expires_at text,
    deleted_at text,
    destroyed_at text,
    primary key (tenant_id, token),
    check ((destroyed_at is null) = (sealed_pan is not null and dek_version is not null and masked_pan is not null)
           and (destroyed_at is not null or deleted_at is null)
           and (destroyed_at is null or fingerprint is null))
) strict;
-- Deterministic tokenization: one live token per PAN, tenant and format (nulls are distinct).
create unique index tokens_fingerprint_key on tokens (tenant_id, format, fingerprint);
create index tokens_expiry_idx on tokens (expires_at) where destroyed_at is null and expires_at is not null;

create table signing_keys (
    kid text not null primary key,
    algorithm text not null check (algorithm in ('EdDSA')),
    wrapped blob not null,
    public_key blob not null,
    created_at text not null,
    retired_at text
) strict;
-- One signing key in use at a time.
create unique index signing_keys_one_active on signing_keys (retired_at is null) where retired_at is null;

create table access_requests (
    id blob not null primary key,
    tenant_id blob not null references tenants (id),
    requester_id blob not null references principals (id),
    policy text not null,
    tokens text not null,
    any_token integer not null,
    purpose text not null,
    reason text not null,
    duration_seconds integer not null check (duration_seconds > 0),
    max_uses integer not null check (max_uses > 0),
    approvals_required integer not null check (approvals_required >= 0),
    mfa integer not null,
    status text not null check (status in ('pending', 'approved', 'denied', 'expired')),
    source text,
    created_at text not null,
    expires_at text not null,
    decided_at text,
    grant_jti blob,
    check (any_token <> (json_array_length(tokens) > 0)),
    check ((status = 'approved') = (grant_jti is not null))
) strict;
create index access_requests_tenant_idx on access_requests (tenant_id, created_at desc);
create index access_requests_pending_idx on access_requests (expires_at) where status = 'pending';

create table access_decisions (
    request_id blob not null references access_requests (id),
    approver_id blob not null references principals (id),
    approve integer not null,
    comment text,
    created_at text not null,
    primary key (request_id, approver_id)
) strict;

create table grants (
    jti blob not null primary key,
    tenant_id blob not null references tenants (id),
    grantee_id blob not null references principals (id),
    request_id blob not null unique references access_requests (id),
    purpose text not null,
    tokens text not null,
    any_token integer not null,
    max_uses integer not null,
    uses integer not null default 0,
    kid text not null references signing_keys (kid),
    issued_at text not null,
    expires_at text not null,
    revoked_at text,
    revoked_by blob,
    check (uses >= 0 and uses <= max_uses)
) strict;
create index grants_tenant_idx on grants (tenant_id, issued_at desc);

-- The audit trail: append-only, hash-chained (src/domain/audit.rs).
create table audit_events (
    id integer primary key autoincrement,
    chain_id blob not null,
    seq integer not null check (seq > 0),
    prev_hash blob not null check (length(prev_hash) = 32),
    hash blob not null check (length(hash) = 32),
    at text not null,
    tenant_id blob,
    actor_id blob,
    action text not null,
    outcome text not null check (outcome in ('success', 'denied', 'error')),
    code text,
    purpose text,
    reason text,
    detail text,
    request_id text,
    source text,
    tokens text not null,
    grant_jti blob,
    subject text,
    constraint audit_events_chain_seq_key unique (chain_id, seq)
) strict;
create index audit_events_tenant_idx on audit_events (tenant_id, id desc);

create trigger audit_events_no_update before update on audit_events
begin
    select raise(abort, 'audit_events is append-only: UPDATE refused');
end;

create trigger audit_events_no_delete before delete on audit_events
begin
    select raise(abort, 'audit_events is append-only: DELETE refused');
end;
