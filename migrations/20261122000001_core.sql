-- Strongroom core schema: tenants, principals, keys and tokens.

create table tenants (
    id uuid not null,
    name text not null,
    created_at timestamptz not null,
    constraint tenants_pkey primary key (id),
    constraint tenants_name_key unique (name),
    constraint tenants_name_check check (char_length(name) between 1 and 100)
);
comment on table tenants is 'Merchants: the unit of isolation. A principal sees only its own tenant''s tokens.';

create table principals (
    id uuid not null,
    tenant_id uuid not null,
    name text not null,
    roles text[] not null,
    key_hash bytea not null,
    created_at timestamptz not null,
    expires_at timestamptz,
    disabled_at timestamptz,
    constraint principals_pkey primary key (id),
    constraint principals_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint principals_tenant_name_key unique (tenant_id, name),
    constraint principals_key_hash_key unique (key_hash),
    constraint principals_name_check check (char_length(name) between 1 and 100),
    constraint principals_roles_check check (
        cardinality(roles) > 0
        and roles <@ array['tokenizer', 'detokenizer', 'requester', 'approver', 'auditor', 'admin']::text[]
    ),
    constraint principals_admin_separation check (
        not ('admin' = any (roles)
             and roles && array['tokenizer', 'detokenizer', 'requester', 'approver']::text[])
    )
);
comment on table principals is 'Callers (services and people) and the hash of their API key.';
comment on column principals.key_hash is 'SHA-256 of the API key; the key itself is shown once and never stored.';
comment on constraint principals_admin_separation on principals is 'Separation of duties: an operator cannot hold a role that touches card data.';

create table data_keys (
    version integer not null,
    wrapped bytea not null,
    encryptions bigint not null default 0,
    created_at timestamptz not null,
    retired_at timestamptz,
    constraint data_keys_pkey primary key (version),
    constraint data_keys_version_check check (version > 0),
    constraint data_keys_encryptions_check check (encryptions >= 0)
);
comment on table data_keys is 'Data-encryption keys (AES-256), wrapped by the master key. The newest version encrypts; all decrypt.';
comment on column data_keys.encryptions is 'Encryptions reserved under this key by all instances together (may over-count, never under-count); the key retires before 2^30 (NIST SP 800-38D §8.3).';

create table vault_secrets (
    name text not null,
    wrapped bytea not null,
    created_at timestamptz not null,
    constraint vault_secrets_pkey primary key (name)
);
comment on table vault_secrets is 'Other secrets wrapped by the master key, such as the fingerprint root.';

create table tokens (
    tenant_id uuid not null,
    token text not null,
    format text not null,
    fingerprint bytea,
    sealed_pan bytea,
    dek_version integer,
    masked_pan text,
    metadata jsonb,
    created_at timestamptz not null,
    expires_at timestamptz,
    deleted_at timestamptz,
    destroyed_at timestamptz,
    constraint tokens_pkey primary key (tenant_id, token),
    constraint tokens_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint tokens_dek_fkey foreign key (dek_version) references data_keys (version),
    constraint tokens_format_check check (format in ('six_four', 'last_four', 'length_preserving', 'opaque')),
    constraint tokens_destroyed_check check (
        (destroyed_at is null) = (sealed_pan is not null and dek_version is not null and masked_pan is not null)
        and (destroyed_at is not null or deleted_at is null)
        and (destroyed_at is null or fingerprint is null)
    )
);
comment on table tokens is 'One row per token ever issued. Deleting or purging destroys the card data but keeps the row, so a token value is never issued twice.';
comment on column tokens.fingerprint is 'HMAC-SHA-256 of the PAN under the tenant''s fingerprint key; finds the existing token for deterministic tokenization. Null once destroyed.';
comment on column tokens.sealed_pan is 'nonce || AES-256-GCM ciphertext || tag; associated data binds tenant, token and DEK version.';
comment on column tokens.masked_pan is 'At most the first six and last four digits.';
comment on column tokens.destroyed_at is 'When the card data was destroyed: by a delete (deleted_at) or by expiry.';

-- Deterministic tokenization: one live token per PAN, tenant and format. Destroyed rows have a
-- null fingerprint and drop out (nulls are distinct).
create unique index tokens_fingerprint_key on tokens (tenant_id, format, fingerprint);
comment on index tokens_fingerprint_key is 'Decides concurrent identical tokenize calls on any number of instances.';

create index tokens_expiry_idx on tokens (expires_at) where destroyed_at is null and expires_at is not null;
comment on index tokens_expiry_idx is 'Finds expired tokens to purge.';
