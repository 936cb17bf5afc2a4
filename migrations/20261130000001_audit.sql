-- The audit trail: append-only, hash-chained records of every event (PCI DSS 10.2-10.3).

create table audit_events (
    id bigint generated always as identity,
    chain_id uuid not null,
    seq bigint not null,
    prev_hash bytea not null,
    hash bytea not null,
    at timestamptz not null,
    tenant_id uuid,
    actor_id uuid,
    action text not null,
    outcome text not null,
    code text,
    purpose text,
    reason text,
    detail text,
    request_id text,
    source text,
    tokens text[] not null,
    grant_jti uuid,
    subject text,
    constraint audit_events_pkey primary key (id),
    constraint audit_events_chain_seq_key unique (chain_id, seq),
    constraint audit_events_seq_check check (seq > 0),
    constraint audit_events_hash_check check (octet_length(hash) = 32 and octet_length(prev_hash) = 32),
    constraint audit_events_outcome_check check (outcome in ('success', 'denied', 'error'))
);
comment on table audit_events is 'Every audited event, append-only. Never a PAN, API key, TOTP code or secret, or grant JWT.';
comment on column audit_events.chain_id is 'One hash chain per writer (an instance, a command): writers never wait on each other.';
comment on column audit_events.seq is 'The place in its chain, from 1 without gaps.';
comment on column audit_events.hash is 'SHA-256 of prev_hash and the canonical encoding of the record (src/domain/audit.rs).';
comment on column audit_events.source is 'The client address as text, exactly as hashed.';
comment on column audit_events.subject is 'The object acted on: an access request, a principal, a key.';

create index audit_events_tenant_idx on audit_events (tenant_id, id desc);
create index audit_events_tokens_idx on audit_events using gin (tokens);

-- Append-only for everyone, the table owner included: only a superuser who disables triggers
-- can change a record, and `strongroom audit verify` then names it.
create function audit_events_refuse_change() returns trigger language plpgsql as $$
begin
    raise exception 'audit_events is append-only: % refused', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

create trigger audit_events_no_update_or_delete
    before update or delete on audit_events
    for each row execute function audit_events_refuse_change();

create trigger audit_events_no_truncate
    before truncate on audit_events
    for each statement execute function audit_events_refuse_change();
