//! The paths around the hot ones, against both stores: listing and expiring requests, listing
//! and revoking grants, deleting and purging tokens.

use std::sync::Arc;

use chrono::TimeDelta;
use strongroom::clock::{Clock, SystemClock};
use strongroom::domain::access::GrantDraft;
use strongroom::domain::{RequestStatus, Role, Token};
use strongroom::service::KeySettings;
use strongroom::store::RequestFilter;
use uuid::Uuid;

use super::{Backend, access_request, fixture, item, keys, tokenize_in, tokens};
use crate::helpers::*;

pub(super) async fn requests_are_listed_by_status_and_lapsed_ones_expire(backend: Backend) {
    let f = fixture(backend).await;
    let keys = keys(&f, KeySettings::default()).await.unwrap();
    let alice = f.principal("alice", Role::Requester).await;
    let bob = f.principal("bob", Role::Requester).await;
    let now = SystemClock.now();
    let pending = access_request(&f, alice, 1, 1);
    let mut lapsed = access_request(&f, bob, 1, 1);
    lapsed.expires_at = now - TimeDelta::seconds(1);
    let approved = access_request(&f, alice, 0, 1);
    let draft = GrantDraft {
        jti: Uuid::new_v4(),
        kid: keys.signing_key().unwrap().kid().to_owned(),
        issued_at: now,
    };
    f.store.insert_access_request(&pending, None).await.unwrap();
    f.store.insert_access_request(&lapsed, None).await.unwrap();
    f.store
        .insert_access_request(&approved, Some(&draft))
        .await
        .unwrap();
    let list = |status: Option<RequestStatus>, requester| {
        let store = Arc::clone(&f.store);
        let tenant = f.tenant;
        async move {
            store
                .list_access_requests(
                    tenant,
                    RequestFilter {
                        status,
                        requester,
                        now,
                        limit: 10,
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.request.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(Some(RequestStatus::Pending), None).await,
        vec![pending.id]
    );
    // Lapsed but not yet swept: already listed as expired.
    assert_eq!(
        list(Some(RequestStatus::Expired), None).await,
        vec![lapsed.id]
    );
    assert_eq!(
        list(Some(RequestStatus::Approved), None).await,
        vec![approved.id]
    );
    assert_eq!(list(None, Some(bob)).await, vec![lapsed.id]);
    assert_eq!(list(None, None).await.len(), 3);
    // The sweep marks only the lapsed one, once.
    let expired = f.store.expire_access_requests(now).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!((expired[0].id, expired[0].requester), (lapsed.id, bob));
    assert!(
        f.store
            .expire_access_requests(now)
            .await
            .unwrap()
            .is_empty()
    );
    let record = f
        .store
        .access_request(f.tenant, lapsed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status_at(now), RequestStatus::Expired);
    // Another tenant sees none of them.
    let other = strongroom::domain::TenantId(Uuid::new_v4());
    assert!(
        f.store
            .access_request(other, pending.id)
            .await
            .unwrap()
            .is_none()
    );
}

pub(super) async fn grants_are_listed_and_revoked_one_or_all(backend: Backend) {
    let f = fixture(backend).await;
    let keys = keys(&f, KeySettings::default()).await.unwrap();
    let alice = f.principal("alice", Role::Requester).await;
    let admin = f.principal("ops", Role::Admin).await;
    let now = SystemClock.now();
    let kid = keys.signing_key().unwrap().kid().to_owned();
    let mut jtis = Vec::new();
    for _ in 0..3 {
        let request = access_request(&f, alice, 0, 2);
        let draft = GrantDraft {
            jti: Uuid::new_v4(),
            kid: kid.clone(),
            issued_at: now,
        };
        f.store
            .insert_access_request(&request, Some(&draft))
            .await
            .unwrap();
        jtis.push(draft.jti);
    }
    let active = f
        .store
        .list_grants(f.tenant, None, Some(now), 10)
        .await
        .unwrap();
    assert_eq!(active.len(), 3);
    assert_eq!(
        f.store
            .list_grants(f.tenant, Some(alice), None, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    // Revoking one keeps its first revocation; revoking all takes the rest.
    let revoked = f
        .store
        .revoke_grant(f.tenant, jtis[0], admin, now)
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let later = now + TimeDelta::seconds(5);
    let again = f
        .store
        .revoke_grant(f.tenant, jtis[0], alice, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(
        f.store
            .revoke_all_grants(f.tenant, Some(alice), admin, now)
            .await
            .unwrap(),
        2
    );
    assert!(
        f.store
            .list_grants(f.tenant, None, Some(now), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        f.store
            .list_grants(f.tenant, None, None, 10)
            .await
            .unwrap()
            .len(),
        3
    );
}

pub(super) async fn deleted_and_purged_tokens_lose_their_card_data_but_keep_their_value(
    backend: Backend,
) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let pans = [random_pan("4", 16), random_pan("5", 16)];
    let mut expiring = item(&pans[1]);
    expiring.expires_at = Some(SystemClock.now() + TimeDelta::milliseconds(300));
    let issued: Vec<Token> = tokenize_in(&service, f.tenant, &[item(&pans[0]), expiring])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().token)
        .collect();
    // Delete: once; the row stays, its card data goes.
    let now = SystemClock.now();
    assert!(
        f.store
            .delete_token(f.tenant, &issued[0], now)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .delete_token(f.tenant, &issued[0], now)
            .await
            .unwrap()
    );
    let record = f
        .store
        .get_token(f.tenant, &issued[0])
        .await
        .unwrap()
        .unwrap();
    assert!(record.sealed.is_none() && record.masked.is_none() && record.deleted_at.is_some());
    // Purge: only what has expired.
    assert!(f.store.purge_expired(now, 100).await.unwrap().is_empty());
    let later = now + TimeDelta::seconds(1);
    // It says which it destroyed, for their records.
    assert_eq!(
        f.store.purge_expired(later, 100).await.unwrap(),
        vec![(f.tenant, issued[1].clone())]
    );
    let record = f
        .store
        .get_token(f.tenant, &issued[1])
        .await
        .unwrap()
        .unwrap();
    assert!(record.sealed.is_none() && record.deleted_at.is_none());
    let live: Vec<(i64,)> = f
        .rows("select count(*) from tokens where sealed_pan is not null or fingerprint is not null")
        .await;
    assert_eq!(live[0].0, 0);
    let all: Vec<(i64,)> = f.rows("select count(*) from tokens").await;
    assert_eq!(all[0].0, 2, "the values stay reserved");
}

pub(super) async fn the_database_secrets_grants_and_expired_tokens_answer_alike(backend: Backend) {
    let f = fixture(backend).await;
    f.store.ping().await.unwrap();
    assert_eq!(
        f.store.schema_status().await.unwrap(),
        strongroom::store::SchemaStatus::Current
    );
    // Secrets: stored once under their name, never replaced.
    let now = SystemClock.now();
    assert!(
        f.store
            .insert_secret("test", b"wrapped-1", now)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .insert_secret("test", b"wrapped-2", now)
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.secret("test").await.unwrap().as_deref(),
        Some(&b"wrapped-1"[..])
    );
    assert_eq!(f.store.secret("other").await.unwrap(), None);
    // A grant is read back within its tenant only.
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let alice = f.principal("alice", Role::Requester).await;
    let draft = GrantDraft {
        jti: Uuid::new_v4(),
        kid: keys.signing_key().unwrap().kid().to_owned(),
        issued_at: now,
    };
    let request = access_request(&f, alice, 0, 3);
    f.store
        .insert_access_request(&request, Some(&draft))
        .await
        .unwrap();
    let grant = f.store.grant(f.tenant, draft.jti).await.unwrap().unwrap();
    assert_eq!(
        (grant.grantee, grant.request_id, grant.max_uses, grant.uses),
        (alice, request.id, 3, 0)
    );
    assert_eq!(grant.purpose, request.purpose);
    let elsewhere = strongroom::domain::TenantId(Uuid::new_v4());
    assert!(f.store.grant(elsewhere, draft.jti).await.unwrap().is_none());
    assert!(
        f.store
            .grant(f.tenant, Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
    // An expired token is destroyed on demand, once; a live one is left alone.
    let service = tokens(&f, &keys);
    let mut expiring = item(&random_pan("4", 16));
    // Far enough ahead that a loaded machine still tokenizes it before it lapses; the store
    // is then asked at times on either side of it.
    let lapses = SystemClock.now() + TimeDelta::minutes(5);
    expiring.expires_at = Some(lapses);
    let issued: Vec<Token> =
        tokenize_in(&service, f.tenant, &[item(&random_pan("5", 16)), expiring])
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().token)
            .collect();
    let (now, later) = (SystemClock.now(), lapses + TimeDelta::seconds(1));
    assert!(
        !f.store
            .destroy_if_expired(f.tenant, &issued[0], later)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .destroy_if_expired(f.tenant, &issued[1], now)
            .await
            .unwrap()
    );
    assert!(
        f.store
            .destroy_if_expired(f.tenant, &issued[1], later)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .destroy_if_expired(f.tenant, &issued[1], later)
            .await
            .unwrap()
    );
    let record = f
        .store
        .get_token(f.tenant, &issued[1])
        .await
        .unwrap()
        .unwrap();
    assert!(record.sealed.is_none() && record.masked.is_none());
    let live = f
        .store
        .get_token(f.tenant, &issued[0])
        .await
        .unwrap()
        .unwrap();
    assert!(live.sealed.is_some() && live.masked.is_some());
}
