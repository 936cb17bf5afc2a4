-- Just-in-time access: second factors, grant-signing keys, access requests, approvals, grants.

alter table principals
    add column totp_secret bytea,
    add column totp_last_step bigint,
    add column totp_failures integer not null default 0,
    add column totp_locked_until timestamptz;
comment on column principals.totp_secret is 'RFC 6238 secret, sealed (AES-256-GCM) under the TOTP key and bound to the principal id. Null: no second factor enrolled.';
comment on column principals.totp_last_step is 'The time step of the last accepted code: a code of that step or earlier is refused (RFC 6238 §5.2, no replay).';
comment on column principals.totp_locked_until is 'Set after repeated wrong codes; no code is accepted before then.';

create table signing_keys (
    kid text not null,
    algorithm text not null,
    wrapped bytea not null,
    public_key bytea not null,
    created_at timestamptz not null,
    retired_at timestamptz,
    constraint signing_keys_pkey primary key (kid),
    constraint signing_keys_algorithm_check check (algorithm in ('EdDSA'))
);
create unique index signing_keys_one_active on signing_keys ((true)) where retired_at is null;
comment on index signing_keys_one_active is 'One signing key in use at a time: instances starting together on a new database agree on it.';
comment on table signing_keys is 'Grant-signing keys: the private key wrapped by the master key, the public key published at /.well-known/jwks.json.';

create table access_requests (
    id uuid not null,
    tenant_id uuid not null,
    requester_id uuid not null,
    policy text not null,
    tokens text[] not null,
    any_token boolean not null,
    purpose text not null,
    reason text not null,
    duration_seconds integer not null,
    max_uses integer not null,
    approvals_required integer not null,
    mfa boolean not null,
    status text not null,
    source text,
    created_at timestamptz not null,
    expires_at timestamptz not null,
    decided_at timestamptz,
    grant_jti uuid,
    constraint access_requests_pkey primary key (id),
    constraint access_requests_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint access_requests_requester_fkey foreign key (requester_id) references principals (id),
    constraint access_requests_status_check check (status in ('pending', 'approved', 'denied', 'expired')),
    constraint access_requests_scope_check check (any_token <> (cardinality(tokens) > 0)),
    constraint access_requests_duration_check check (duration_seconds > 0),
    constraint access_requests_max_uses_check check (max_uses > 0),
    constraint access_requests_approvals_check check (approvals_required >= 0),
    constraint access_requests_decision_check check ((status = 'pending') = (decided_at is null)
        or status = 'expired'),
    constraint access_requests_grant_check check ((status = 'approved') = (grant_jti is not null))
);
comment on table access_requests is 'Requests for a timed grant to read card data: who, which tokens, what purpose and why.';
comment on column access_requests.expires_at is 'A request still pending at this time expires and can no longer be decided.';

create index access_requests_tenant_idx on access_requests (tenant_id, created_at desc);
create index access_requests_pending_idx on access_requests (expires_at) where status = 'pending';

create table access_decisions (
    request_id uuid not null,
    approver_id uuid not null,
    approve boolean not null,
    comment text,
    created_at timestamptz not null,
    constraint access_decisions_pkey primary key (request_id, approver_id),
    constraint access_decisions_request_fkey foreign key (request_id) references access_requests (id),
    constraint access_decisions_approver_fkey foreign key (approver_id) references principals (id)
);
comment on table access_decisions is 'Each approver decides a request once (the primary key counts distinct approvers).';

create table grants (
    jti uuid not null,
    tenant_id uuid not null,
    grantee_id uuid not null,
    request_id uuid not null,
    purpose text not null,
    tokens text[] not null,
    any_token boolean not null,
    max_uses integer not null,
    uses integer not null default 0,
    kid text not null,
    issued_at timestamptz not null,
    expires_at timestamptz not null,
    revoked_at timestamptz,
    revoked_by uuid,
    constraint grants_pkey primary key (jti),
    constraint grants_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint grants_grantee_fkey foreign key (grantee_id) references principals (id),
    constraint grants_request_key unique (request_id),
    constraint grants_request_fkey foreign key (request_id) references access_requests (id),
    constraint grants_kid_fkey foreign key (kid) references signing_keys (kid),
    constraint grants_uses_check check (uses >= 0 and uses <= max_uses)
);
comment on table grants is 'Minted grants. The JWT itself is not stored: it is signed again (Ed25519 is deterministic) when the grantee fetches it.';
comment on column grants.uses is 'Detokenize calls made under the grant, counted by one conditional update so that no instance can pass max_uses.';

create index grants_tenant_active_idx on grants (tenant_id, expires_at) where revoked_at is null;
create index grants_grantee_idx on grants (grantee_id) where revoked_at is null;
