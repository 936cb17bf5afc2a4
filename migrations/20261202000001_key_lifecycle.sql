-- Grant-signing key rotation (issue 14): a new key is published before it signs, and an old one
-- stays published while a grant it signed is unexpired.

alter table signing_keys add column activates_at timestamptz;
comment on column signing_keys.activates_at is 'When the key starts signing new grants. Null: since it was made (the first key). A rotation sets it a lead (two housekeeping passes by default) ahead, so that every instance has loaded and published the public key before any signs with it.';
comment on column signing_keys.retired_at is 'When the key stops signing new grants: a rotation sets it to its successor''s activates_at. It still verifies, and is published, while a grant with its kid is unexpired.';

create index grants_kid_expires_idx on grants (kid, expires_at);
comment on index grants_kid_expires_idx is 'Whether a retired signing key still has an unexpired grant, so must stay published; asked by every instance at each housekeeping pass.';
