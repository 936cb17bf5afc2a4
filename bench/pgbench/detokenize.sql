-- The statements of one detokenize: authenticate the caller, take a use of the (one, shared)
-- grant, read the token, write the audit record. Each autocommits, as in the vault.
select id, roles from bench_principals where key_hash = sha256('bench-key');
update bench_grants set uses = uses + 1 where jti = 1 and uses < max_uses returning uses;
select body from bench_tokens where token = '4111110000001111' and tenant_id = '00000000-0000-0000-0000-000000000001';
insert into bench_audit (at, action, tokens) values (now(), 'detokenize', array['4111110000001111']);
