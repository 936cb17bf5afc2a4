-- Grant-signing key rotation (see the PostgreSQL migration of the same name for what each
-- column means).

alter table signing_keys add column activates_at text;

create index grants_kid_expires_idx on grants (kid, expires_at);
