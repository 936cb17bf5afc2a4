//! The enumeration guard and the lookup guard against both stores: counts, locks, releases and
//! import windows are the database's, so they hold for every instance.

use std::sync::Arc;

use chrono::TimeDelta;
use strongroom::clock::{Clock, SystemClock};
use strongroom::domain::{Principal, PrincipalId, Role, TenantId};
use strongroom::service::{TokenError, TokenService};
use uuid::Uuid;

use super::{Backend, Fixture, fixture, item, keys, tokenize_as};
use crate::helpers::*;
use strongroom::service::KeySettings;

fn service(f: &Fixture, keys: &Arc<strongroom::service::KeyService>, budget: u32) -> TokenService {
    super::token_service(f, keys, budget)
}

fn tokenizer(id: PrincipalId, tenant: TenantId) -> Principal {
    Principal {
        id,
        tenant,
        name: "tokenizer".into(),
        roles: vec![Role::Tokenizer],
        lookups_throttled_until: None,
    }
}

fn refused(r: &Result<strongroom::service::TokenView, TokenError>) -> bool {
    matches!(r, Err(TokenError::EnumerationSuspected(s)) if *s > 0)
}

async fn bucket_rows(f: &Fixture) -> i64 {
    f.rows::<(i64,)>("select count(*) from tokens where masked_pan = '411111******1111'")
        .await[0]
        .0
}

pub(super) async fn a_bucket_past_its_budget_refuses_known_and_new_pans_alike_and_stores_nothing(
    backend: Backend,
) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let tokens = service(&f, &keys, 3);
    let me = tokenizer(PrincipalId(Uuid::new_v4()), f.tenant);
    let known = pan_in_bucket("411111", "1111", 0);
    let first = tokenize_as(&f, &tokens, &me, &[item(&known)])
        .await
        .unwrap();
    assert!(first.results[0].as_ref().unwrap().created);
    // Budget 3: two more new PANs fit; the known one is answered again and again.
    let more = tokenize_as(
        &f,
        &tokens,
        &me,
        &[
            item(&pan_in_bucket("411111", "1111", 1)),
            item(&known),
            item(&pan_in_bucket("411111", "1111", 2)),
        ],
    )
    .await
    .unwrap();
    assert!(more.results.iter().all(Result::is_ok));
    assert!(more.locked.is_empty());
    // The fourth new PAN overruns it: refused, the bucket locked, and the known PAN riding in
    // the same call is refused the same way.
    let over = tokenize_as(
        &f,
        &tokens,
        &me,
        &[item(&pan_in_bucket("411111", "1111", 3)), item(&known)],
    )
    .await
    .unwrap();
    assert!(over.results.iter().all(refused), "{:?}", over.results);
    assert_eq!(over.locked.len(), 1);
    assert!(
        over.locked[0].1.contains("new_pans=4 budget=3"),
        "{:?}",
        over.locked
    );
    assert_eq!(
        bucket_rows(&f).await,
        3,
        "nothing of the refused call is stored"
    );
    // Locked: known alone, new alone, each refused; nothing new locks it again.
    for pan in [known.clone(), pan_in_bucket("411111", "1111", 4)] {
        let r = tokenize_as(&f, &tokens, &me, &[item(&pan)]).await.unwrap();
        assert!(refused(&r.results[0]));
        assert!(r.locked.is_empty());
    }
    assert_eq!(bucket_rows(&f).await, 3);
    // Other buckets are untouched.
    let elsewhere = tokenize_as(
        &f,
        &tokens,
        &me,
        &[item(&pan_in_bucket("411111", "2222", 0))],
    )
    .await
    .unwrap();
    assert!(elsewhere.results[0].is_ok());
    // The lock is listed, and an admin's release opens the bucket with a fresh count.
    let locks = f
        .store
        .locked_buckets(Some(f.tenant), SystemClock.now())
        .await
        .unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].bucket.to_string(), over.locked[0].0);
    let released = f
        .store
        .release_bucket(locks[0].bucket, SystemClock.now())
        .await
        .unwrap();
    assert_eq!(released, Some(f.tenant));
    assert!(
        f.store
            .release_bucket(locks[0].bucket, SystemClock.now())
            .await
            .unwrap()
            .is_none()
    );
    let again = tokenize_as(&f, &tokens, &me, &[item(&known)])
        .await
        .unwrap();
    assert!(!again.results[0].as_ref().unwrap().created);
    let fresh = tokenize_as(
        &f,
        &tokens,
        &me,
        &[item(&pan_in_bucket("411111", "1111", 5))],
    )
    .await
    .unwrap();
    assert!(fresh.results[0].as_ref().unwrap().created);
}

pub(super) async fn an_import_window_has_its_own_budget_and_widens_no_one_elses(backend: Backend) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let importer_id = f.principal("importer", Role::Tokenizer).await;
    let auditor_id = f.principal("auditor", Role::Auditor).await;
    let now = SystemClock.now();
    // Only an enabled tokenizer can have a window.
    assert!(
        f.store
            .open_import_window(
                Uuid::new_v4(),
                auditor_id,
                100,
                now,
                now + TimeDelta::hours(1)
            )
            .await
            .unwrap()
            .is_none()
    );
    let window = f
        .store
        .open_import_window(
            Uuid::new_v4(),
            importer_id,
            10,
            now,
            now + TimeDelta::hours(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.tenant, f.tenant.0);
    let tokens = service(&f, &keys, 2);
    let importer = tokenizer(importer_id, f.tenant);
    let other = tokenizer(PrincipalId(Uuid::new_v4()), f.tenant);
    let batch: Vec<_> = (0..10)
        .map(|n| item(&pan_in_bucket("411111", "1111", n)))
        .collect();
    let imported = tokenize_as(&f, &tokens, &importer, &batch).await.unwrap();
    assert!(
        imported.results.iter().all(Result::is_ok),
        "{:?}",
        imported.results
    );
    // Everyone else still has the ordinary budget of 2 in that bucket.
    let r = tokenize_as(
        &f,
        &tokens,
        &other,
        &[
            item(&pan_in_bucket("411111", "1111", 100)),
            item(&pan_in_bucket("411111", "1111", 101)),
        ],
    )
    .await
    .unwrap();
    assert!(r.results.iter().all(Result::is_ok));
    let r = tokenize_as(
        &f,
        &tokens,
        &other,
        &[item(&pan_in_bucket("411111", "1111", 102))],
    )
    .await
    .unwrap();
    assert!(refused(&r.results[0]));
    // Closed early by an admin, the window no longer lists; past its time it never does.
    assert_eq!(f.store.open_import_windows(now).await.unwrap().len(), 1);
    assert!(
        f.store
            .close_import_window(window.id, now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(f.store.open_import_windows(now).await.unwrap().is_empty());
    let later = f
        .store
        .open_import_window(
            Uuid::new_v4(),
            importer_id,
            10,
            now,
            now + TimeDelta::hours(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        f.store
            .open_import_windows(now + TimeDelta::hours(2))
            .await
            .unwrap()
            .iter()
            .all(|w| w.id != later.id)
    );
}

pub(super) async fn misses_throttle_a_principal_once_per_episode(backend: Backend) {
    let f = fixture(backend).await;
    let guesser = f.principal("guesser", Role::Tokenizer).await;
    let now = SystemClock.now();
    let since = now - TimeDelta::minutes(10);
    let until = now + TimeDelta::minutes(10);
    let mut started = 0;
    for _ in 0..60 {
        if f.store
            .record_miss(guesser, now, since, 50, until)
            .await
            .unwrap()
        {
            started += 1;
        }
    }
    assert_eq!(started, 1, "one episode for 60 misses");
    let throttled: Vec<(i64,)> = f
        .rows("select count(*) from principals where lookups_throttled_until is not null")
        .await;
    assert_eq!(throttled[0].0, 1);
    // Misses older than the window are forgotten.
    assert_eq!(
        f.store
            .purge_misses(now + TimeDelta::seconds(1))
            .await
            .unwrap(),
        60
    );
}
