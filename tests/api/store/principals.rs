//! Principals and second factors against both stores: found by key hash, disabled at once, a
//! TOTP step accepted once, failures locking the factor.

use chrono::TimeDelta;
use strongroom::clock::{Clock, SystemClock};
use strongroom::domain::Role;

use super::{Backend, fixture, new_principal};

pub(super) async fn a_principal_is_found_by_its_key_and_disabled_at_once(backend: Backend) {
    let f = fixture(backend).await;
    let new = new_principal("checkout", Role::Tokenizer);
    let created = f.store.create_principal(&new).await.unwrap();
    assert_eq!(created.principal.roles, vec![Role::Tokenizer]);
    let found = f
        .store
        .principal_by_key_hash(&new.key_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.principal.id, new.id);
    assert_eq!(found.principal.tenant, f.tenant);
    assert!(found.disabled_at.is_none() && found.principal.lookups_throttled_until.is_none());
    let now = SystemClock.now();
    assert!(f.store.disable_principal(new.id, now).await.unwrap());
    assert!(
        !f.store.disable_principal(new.id, now).await.unwrap(),
        "once"
    );
    let found = f
        .store
        .principal_by_key_hash(&new.key_hash)
        .await
        .unwrap()
        .unwrap();
    assert!(found.disabled_at.is_some());
}

pub(super) async fn a_totp_step_is_accepted_once_and_failures_lock_the_factor(backend: Backend) {
    let f = fixture(backend).await;
    let mut new = new_principal("alice", Role::Requester);
    new.sealed_totp = Some(vec![1, 2, 3]);
    f.store.create_principal(&new).await.unwrap();
    let plain = new_principal("service", Role::Tokenizer);
    f.store.create_principal(&plain).await.unwrap();
    let now = SystemClock.now();
    // No factor, no state; a step for it is never accepted.
    assert!(f.store.totp_state(plain.id).await.unwrap().is_none());
    assert!(!f.store.accept_totp_step(plain.id, 100, now).await.unwrap());
    let state = f.store.totp_state(new.id).await.unwrap().unwrap();
    assert_eq!(state.sealed, vec![1, 2, 3]);
    assert!(state.locked_until.is_none());
    // A step is accepted once, and never an older one after it.
    assert!(f.store.accept_totp_step(new.id, 100, now).await.unwrap());
    assert!(!f.store.accept_totp_step(new.id, 100, now).await.unwrap());
    assert!(!f.store.accept_totp_step(new.id, 99, now).await.unwrap());
    // Three failures of a limit of three lock it; while locked, no step is accepted.
    let until = now + TimeDelta::minutes(30);
    for _ in 0..3 {
        f.store.record_totp_failure(new.id, 3, until).await.unwrap();
    }
    let state = f.store.totp_state(new.id).await.unwrap().unwrap();
    assert_eq!(
        state.locked_until.map(|u| u.timestamp()),
        Some(until.timestamp())
    );
    assert!(!f.store.accept_totp_step(new.id, 101, now).await.unwrap());
    assert!(
        f.store
            .accept_totp_step(new.id, 101, until + TimeDelta::seconds(1))
            .await
            .unwrap()
    );
    // An admin lifts a lock at once; a principal without a second factor has none to lift.
    for _ in 0..3 {
        f.store.record_totp_failure(new.id, 3, until).await.unwrap();
    }
    assert!(f.store.unlock_totp(new.id).await.unwrap());
    let state = f.store.totp_state(new.id).await.unwrap().unwrap();
    assert!(state.locked_until.is_none());
    assert!(f.store.accept_totp_step(new.id, 102, now).await.unwrap());
    assert!(!f.store.unlock_totp(plain.id).await.unwrap());
    assert!(
        !f.store
            .unlock_totp(strongroom::domain::PrincipalId(uuid::Uuid::new_v4()))
            .await
            .unwrap()
    );
}
