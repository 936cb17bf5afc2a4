//! Principals and second factors against both stores: found by key hash, disabled at once, a
//! TOTP step accepted once, failures locking the factor.

use chrono::TimeDelta;
use strongroom::clock::{Clock, SystemClock};
use strongroom::domain::{PrincipalId, Role, TenantId};

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

pub(super) async fn a_session_lives_until_idle_or_its_limit_or_sign_out_with_its_records(
    backend: Backend,
) {
    use std::sync::Arc;

    use strongroom::crypto::session::SessionHash;
    use strongroom::domain::audit::{Action, AuditEvent, Outcome};
    use strongroom::metrics::Metrics;
    use strongroom::service::AuditTrail;
    use strongroom::store::{AuditedWrite, NewSession, WriteOutcome};

    let f = fixture(backend).await;
    let alice = new_principal("alice", Role::Requester);
    f.store.create_principal(&alice).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let trail = AuditTrail::spawn(f.store.clone(), None, clock, Metrics::new());
    let start = SystemClock.now();
    let write = async |hash: SessionHash, write: AuditedWrite| {
        let finish = move |_: &WriteOutcome| {
            let mut event = AuditEvent::new(Action::SessionStart, start);
            event.tenant = Some(f.tenant);
            event.subject = Some(hash.public_name());
            event.outcome = Outcome::Success;
            event
        };
        trail.write(write, finish).await.unwrap()
    };
    let started = |hash: SessionHash| {
        AuditedWrite::StartSession(Box::new(NewSession {
            token_hash: hash,
            principal: alice.id,
            tenant: f.tenant,
            created_at: start,
            idle_expires_at: start + TimeDelta::minutes(15),
            expires_at: start + TimeDelta::hours(8),
        }))
    };
    let (a, b) = (SessionHash([1u8; 32]), SessionHash([2u8; 32]));
    write(a, started(a)).await;
    write(b, started(b)).await;

    // Looked at without activity, the idle limit stays; with it, it moves, never past 8 hours.
    let at = start + TimeDelta::minutes(10);
    let live = f.store.live_session(&a, at, None).await.unwrap().unwrap();
    assert_eq!(live.principal.principal.id, alice.id);
    assert_eq!(
        live.idle_expires_at.timestamp(),
        (start + TimeDelta::minutes(15)).timestamp()
    );
    let moved = f
        .store
        .live_session(&a, at, Some(at + TimeDelta::minutes(15)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        moved.idle_expires_at.timestamp(),
        (at + TimeDelta::minutes(15)).timestamp()
    );
    let capped = f
        .store
        .live_session(&a, at, Some(start + TimeDelta::hours(9)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(capped.idle_expires_at, capped.expires_at);
    // Idle past its limit, a session is over, and a late request does not revive it.
    let idle = start + TimeDelta::minutes(16);
    assert!(
        f.store
            .live_session(&b, idle, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.store
            .live_session(&b, idle, Some(idle + TimeDelta::minutes(15)))
            .await
            .unwrap()
            .is_none()
    );
    // Past 8 hours, whatever the idle limit says.
    assert!(
        f.store
            .live_session(&a, start + TimeDelta::hours(8), None)
            .await
            .unwrap()
            .is_none()
    );
    // Signed out: over, once.
    let end = |hash| AuditedWrite::EndSession {
        token_hash: hash,
        now: at,
    };
    assert!(matches!(
        write(a, end(a)).await,
        WriteOutcome::SessionEnded(true)
    ));
    assert!(matches!(
        write(a, end(a)).await,
        WriteOutcome::SessionEnded(false)
    ));
    assert!(f.store.live_session(&a, at, None).await.unwrap().is_none());
    assert!(
        f.store
            .live_session(&SessionHash([3u8; 32]), at, None)
            .await
            .unwrap()
            .is_none()
    );

    // Names are read within the tenant only.
    let names = f
        .store
        .principal_names(f.tenant, &[alice.id, PrincipalId(uuid::Uuid::new_v4())])
        .await
        .unwrap();
    assert_eq!(names, vec![(alice.id, "alice".to_owned())]);
    let other = TenantId(uuid::Uuid::new_v4());
    assert!(
        f.store
            .principal_names(other, &[alice.id])
            .await
            .unwrap()
            .is_empty()
    );
}
