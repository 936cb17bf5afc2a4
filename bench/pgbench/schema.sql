-- What PostgreSQL itself is measured on: a ~100-byte row with a text primary key (the
-- statement-level equivalent of one tokenize), and the statements of one detokenize.
create table bench_tokens (
    token text primary key,
    tenant_id uuid not null,
    body bytea not null
);
create table bench_principals (
    key_hash bytea primary key,
    id uuid not null,
    roles text[] not null
);
create table bench_grants (
    jti integer primary key,
    uses bigint not null default 0,
    max_uses bigint not null
);
create table bench_audit (
    id bigint generated always as identity primary key,
    at timestamptz not null,
    action text not null,
    tokens text[] not null
);
insert into bench_grants (jti, max_uses) values (1, 1000000000);
insert into bench_principals (key_hash, id, roles)
    values (sha256('bench-key'), '00000000-0000-0000-0000-000000000002', array['detokenizer']);
insert into bench_tokens (token, tenant_id, body)
    values ('4111110000001111', '00000000-0000-0000-0000-000000000001', decode(repeat('ab', 60), 'hex'));
