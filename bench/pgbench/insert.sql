-- One durable single-row insert: a 16-character text key and ~80 bytes of payload.
\set a random(1, 999999999)
\set b random(1, 999999999)
insert into bench_tokens (token, tenant_id, body)
values (lpad(:a::text, 9, '0') || lpad(:b::text, 9, '0') || :client_id, '00000000-0000-0000-0000-000000000001',
        decode(md5(:a::text) || md5(:b::text) || md5(:client_id::text), 'hex'))
on conflict do nothing;
