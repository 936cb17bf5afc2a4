-- People's console sessions (see the PostgreSQL migration of the same name).

create table console_sessions (
    token_hash blob not null primary key check (length(token_hash) = 32),
    principal_id blob not null references principals (id),
    tenant_id blob not null references tenants (id),
    created_at text not null,
    idle_expires_at text not null,
    expires_at text not null,
    ended_at text,
    check (idle_expires_at <= expires_at)
) strict;
create index console_sessions_expires_idx on console_sessions (expires_at);
