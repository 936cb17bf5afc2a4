//! Grant-signing key rotation against both stores: the new key is published before it signs,
//! the old one stays published while a grant it signed is unexpired, and rotations never leave
//! two keys pending.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use strongroom::clock::{Clock, ManualClock, SystemClock};
use strongroom::crypto::keys::MasterKey;
use strongroom::domain::access::GrantDraft;
use strongroom::domain::{Role, SigningKeyPhase};
use strongroom::metrics::Metrics;
use strongroom::random::SystemRandom;
use strongroom::service::keys::admin::KeyAdmin;
use strongroom::service::{AuditTrail, KeyError, KeyService, KeySettings};
use uuid::Uuid;

use super::{Backend, Fixture, access_request, fixture, keys, keys_with_clock};
use crate::helpers::*;

/// The key commands of an operator holding `master`, whose clock is `clock`.
fn admin(f: &Fixture, master: &str, clock: Arc<dyn Clock>) -> KeyAdmin {
    KeyAdmin::new(
        f.store.clone(),
        MasterKey::from_base64(master).unwrap(),
        Arc::new(SystemRandom::new()),
        clock.clone(),
        AuditTrail::spawn(f.store.clone(), None, clock, Metrics::new()),
    )
}

/// Each signing key's kid, phase and whether it is published, as `keys status` reads them.
async fn phases(f: &Fixture, at: DateTime<Utc>) -> Vec<(String, SigningKeyPhase, bool)> {
    f.store
        .key_inventory(at)
        .await
        .unwrap()
        .signing_keys
        .into_iter()
        .map(|k| {
            (
                k.kid,
                SigningKeyPhase::at(k.activates_at, k.retired_at, at),
                k.published,
            )
        })
        .collect()
}

/// The kids instances load (verify with and publish) at `at`.
async fn published(f: &Fixture, at: DateTime<Utc>) -> Vec<String> {
    f.store
        .signing_keys(at)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect()
}

fn signer(keys: &KeyService) -> String {
    keys.signing_key().unwrap().kid().to_owned()
}

pub(super) async fn a_signing_key_is_published_before_it_signs_and_after_while_its_grants_live(
    backend: Backend,
) {
    use SigningKeyPhase::{Active, Pending, Retired};
    let f = fixture(backend).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let keys = keys_with_clock(&f, KeySettings::default(), clock.clone())
        .await
        .unwrap();
    let old = signer(&keys);
    clock.advance(TimeDelta::seconds(1));
    let rotated = admin(&f, &f.master, clock.clone())
        .rotate_signing_key(TimeDelta::seconds(120))
        .await
        .unwrap();
    let new = rotated.kid.clone();
    assert_eq!(rotated.retired, old);
    assert_ne!(new, old);
    // It activates the lead from now, to the whole second (as printed and recorded).
    let lead = rotated.activates_at - clock.now();
    assert!(
        lead > TimeDelta::seconds(119) && lead <= TimeDelta::seconds(120),
        "{lead}"
    );
    assert_eq!(rotated.activates_at.timestamp_subsec_nanos(), 0);
    // Both are published at once; the old key signs until the new one activates, when it
    // retires.
    assert_eq!(
        published(&f, clock.now()).await,
        vec![old.clone(), new.clone()]
    );
    assert_eq!(
        phases(&f, clock.now()).await,
        vec![(old.clone(), Active, true), (new.clone(), Pending, true)]
    );
    let inventory = f.store.key_inventory(clock.now()).await.unwrap();
    let [first, second] = inventory.signing_keys.as_slice() else {
        panic!("two signing keys: {inventory:?}");
    };
    assert!(first.retired_at.is_some());
    assert_eq!(first.retired_at, second.activates_at);
    // Without a grant, the old key would stop being published once retired.
    let handover = rotated.activates_at + TimeDelta::seconds(1);
    assert_eq!(published(&f, handover).await, vec![new.clone()]);
    // A running instance publishes the new key at its next pass, still signing with the old.
    assert!(!keys.grant_verifier().knows(&new));
    keys.refresh().await.unwrap();
    assert!(keys.grant_verifier().knows(&new) && keys.grant_verifier().knows(&old));
    assert_eq!(signer(&keys), old);
    // A grant the old key signs now (ten minutes long) keeps it published past the handover.
    let grantee = f.principal("payments", Role::Detokenizer).await;
    let draft = GrantDraft {
        jti: Uuid::new_v4(),
        kid: signer(&keys),
        issued_at: clock.now(),
    };
    f.store
        .insert_access_request(&access_request(&f, grantee, 0, 1), Some(&draft))
        .await
        .unwrap();
    assert_eq!(
        published(&f, handover).await,
        vec![old.clone(), new.clone()]
    );
    // At the handover the instance signs with the new key, by its clock, without a reload; the
    // old one still signs its grant again for the grantee and still verifies.
    clock.advance(TimeDelta::seconds(121));
    assert_eq!(signer(&keys), new);
    keys.refresh().await.unwrap();
    assert!(keys.signing_key_by_kid(&old).is_ok());
    assert!(keys.grant_verifier().knows(&old));
    assert_eq!(
        phases(&f, clock.now()).await,
        vec![(old.clone(), Retired, true), (new.clone(), Active, true)]
    );
    // Once that grant has expired, the old key is published no more.
    clock.advance(TimeDelta::seconds(600));
    keys.refresh().await.unwrap();
    assert!(!keys.grant_verifier().knows(&old) && keys.grant_verifier().knows(&new));
    assert!(keys.signing_key_by_kid(&old).is_err());
    assert_eq!(signer(&keys), new);
    assert_eq!(
        phases(&f, clock.now()).await,
        vec![(old.clone(), Retired, false), (new.clone(), Active, true)]
    );
    // The rotation is recorded with the operator, the kids and the moment, never material.
    let records: Vec<(String, String, String)> = f
        .rows(
            "select outcome, subject, detail from audit_events where action = 'key.rotate' \
             order by id",
        )
        .await;
    assert_eq!(
        records,
        vec![(
            "success".to_owned(),
            format!("signing_key:{new}"),
            format!(
                "retired={old} activates_at={} by=operator",
                rotated
                    .activates_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        )]
    );
}

pub(super) async fn two_signing_key_rotations_at_once_leave_one_pending_key(backend: Backend) {
    let f = fixture(backend).await;
    keys(&f, KeySettings::default()).await.unwrap();
    let system: Arc<dyn Clock> = Arc::new(SystemClock);
    // A master key that does not open the stored signing keys is refused; nothing is made.
    assert!(matches!(
        admin(&f, &new_master_key(), system.clone())
            .rotate_signing_key(TimeDelta::seconds(60))
            .await,
        Err(KeyError::MasterKeyMismatch)
    ));
    let (a, b) = (
        admin(&f, &f.master, system.clone()),
        admin(&f, &f.master, system.clone()),
    );
    let (a, b) = tokio::join!(
        a.rotate_signing_key(TimeDelta::seconds(60)),
        b.rotate_signing_key(TimeDelta::seconds(60))
    );
    assert_eq!(
        [&a, &b].iter().filter(|r| r.is_ok()).count(),
        1,
        "{a:?} {b:?}"
    );
    let won = a.as_ref().or(b.as_ref()).unwrap().clone();
    for lost in [&a, &b].into_iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(lost, KeyError::RotationPending { activates_at } if *activates_at == won.activates_at)
                || matches!(lost, KeyError::SigningRotationRaced),
            "{lost:?}"
        );
    }
    let counts: Vec<(i64, i64)> = f
        .rows("select count(*), count(*) filter (where retired_at is null) from signing_keys")
        .await;
    assert_eq!(counts, vec![(2, 1)], "one new key, pending");
    // Once it signs, the next rotation goes ahead; with no lead, so can the one after.
    let later = Arc::new(ManualClock::new(won.activates_at + TimeDelta::seconds(1)));
    let admin = admin(&f, &f.master, later);
    let second = admin.rotate_signing_key(TimeDelta::zero()).await.unwrap();
    assert_eq!(second.retired, won.kid);
    let third = admin.rotate_signing_key(TimeDelta::zero()).await.unwrap();
    assert_eq!(third.retired, second.kid);
    let counts: Vec<(i64, i64)> = f
        .rows("select count(*), count(*) filter (where retired_at is null) from signing_keys")
        .await;
    assert_eq!(counts, vec![(4, 1)]);
    // Each attempt has its record: the refused one as such.
    let outcomes: Vec<(String,)> = f
        .rows("select outcome from audit_events where action = 'key.rotate' order by id")
        .await;
    let mut outcomes: Vec<String> = outcomes.into_iter().map(|(o,)| o).collect();
    outcomes.sort();
    assert_eq!(outcomes, vec!["denied", "success", "success", "success"]);
}
