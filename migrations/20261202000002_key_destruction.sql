-- Key lifecycle: a retired data key is destroyed once no row is sealed under it.

create table destroyed_data_keys (
    version integer not null,
    encryptions bigint not null,
    created_at timestamptz not null,
    retired_at timestamptz,
    destroyed_at timestamptz not null,
    constraint destroyed_data_keys_pkey primary key (version),
    constraint destroyed_data_keys_version_check check (version > 0)
);
comment on table destroyed_data_keys is 'Data keys that were destroyed: their row left data_keys (so the foreign key from tokens refuses any row still sealed under them, even one a stale instance writes during the destruction) and what is known of them stays here.';
