-- Key lifecycle: a retired data key is destroyed once no row is sealed under it (see the
-- PostgreSQL migration of the same name).

create table destroyed_data_keys (
    version integer not null primary key check (version > 0),
    encryptions integer not null,
    created_at text not null,
    retired_at text,
    destroyed_at text not null
) strict;
