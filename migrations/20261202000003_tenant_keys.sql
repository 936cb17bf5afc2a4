-- Per-tenant keys: each tenant's card numbers and fingerprints are under a key of its own, so
-- one tenant can be crypto-shredded without touching the others.

create table tenant_keys (
    tenant_id uuid not null,
    wrapped bytea,
    own_fingerprints boolean not null,
    created_at timestamptz not null,
    destroyed_at timestamptz,
    constraint tenant_keys_pkey primary key (tenant_id),
    constraint tenant_keys_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint tenant_keys_destroyed_check check ((destroyed_at is null) = (wrapped is not null))
);
comment on table tenant_keys is 'One key per tenant, wrapped by the master key (label tenant:<id>). With each tenant-bound data key version it derives the key that seals the tenant''s card numbers; alone it derives the tenant''s fingerprint key. Shredding the tenant deletes it.';
comment on column tenant_keys.own_fingerprints is 'False for a tenant that had tokens before tenant keys existed: its fingerprints stay under the vault-wide fingerprint root, so deterministic tokenization still finds its old tokens.';

alter table data_keys add column tenant_bound boolean not null default false;
comment on column data_keys.tenant_bound is 'True: the key seals nothing itself; each tenant''s card numbers are sealed under a key derived from it and the tenant''s key. Versions made before tenant keys are false and seal directly.';

alter table tenants add column shredded_at timestamptz;
comment on column tenants.shredded_at is 'When strongroom tenant shred destroyed the tenant''s keys; no principal is created in it again.';
