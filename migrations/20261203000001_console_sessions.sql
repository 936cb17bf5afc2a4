-- People's console sessions: a person signs in with their API key (and TOTP code) once and the
-- browser carries a random session token in an HttpOnly cookie. Only the token's SHA-256 is
-- stored, so a read of this table signs no one in.

create table console_sessions (
    token_hash bytea not null,
    principal_id uuid not null,
    tenant_id uuid not null,
    created_at timestamptz not null,
    idle_expires_at timestamptz not null,
    expires_at timestamptz not null,
    ended_at timestamptz,
    constraint console_sessions_pkey primary key (token_hash),
    constraint console_sessions_principal_fkey foreign key (principal_id) references principals (id),
    constraint console_sessions_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint console_sessions_hash_check check (length(token_hash) = 32),
    constraint console_sessions_limits_check check (idle_expires_at <= expires_at)
);
create index console_sessions_expires_idx on console_sessions (expires_at);
comment on table console_sessions is 'Signed-in console sessions (PCI DSS 8.2.8: 15 minutes idle, 8 hours at most). Started and ended with session.start and session.end records in the same transaction.';
comment on column console_sessions.idle_expires_at is 'Moved forward by each request the person makes (not by the page''s own polling); never past expires_at.';
