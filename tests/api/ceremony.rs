//! The key ceremony: a master key made or split into custodians' shares, of which any
//! threshold rebuild it and which never show the key itself.

use base64::Engine;
use serde_json::Value;

use strongroom::crypto::keys::MasterKey;
use strongroom::crypto::shares::{self, KeyShare, ShareError};

use crate::cli::{run, strongroom};
use crate::helpers::*;

fn parse_all(out: &str) -> (Vec<KeyShare>, u64) {
    let body: Value = serde_json::from_str(out).unwrap();
    let list = body["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| KeyShare::parse(s.as_str().unwrap()).unwrap())
        .collect();
    (list, body["threshold"].as_u64().unwrap())
}

#[test]
fn keygen_prints_only_shares_and_any_threshold_of_them_rebuild_a_strong_key() {
    let (ok, out, err) =
        run(strongroom().args(["keygen", "--shares", "5", "--threshold", "3", "--json"]));
    assert!(ok, "{err}");
    let (made, threshold) = parse_all(&out);
    assert_eq!((made.len(), threshold), (5, 3));
    assert!(err.contains("any 3 of these 5 shares"), "{err}");
    let key = shares::combine(&[made[4].clone(), made[0].clone(), made[2].clone()]).unwrap();
    let master = MasterKey::from_bytes(&key).unwrap();
    // Nothing printed is the key, in any form.
    let text = base64::engine::general_purpose::STANDARD.encode(*key);
    assert!(!out.contains(&text) && !err.contains(&text));
    assert!(err.contains(&master.fingerprint()), "{err}");
    // Text output: one share a line on standard output, nothing else.
    let (ok, out, _) = run(strongroom().args(["keygen", "--shares", "2", "--threshold", "2"]));
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| KeyShare::parse(l).is_ok()));
    // Counts out of range are refused before anything is made.
    for args in [["3", "4"], ["17", "3"], ["3", "1"]] {
        let (ok, out, _) =
            run(strongroom().args(["keygen", "--shares", args[0], "--threshold", args[1]]));
        assert!(!ok && out.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn keys_split_splits_the_vault_s_own_key_and_records_it_without_a_share() {
    let app = spawn_app().await;
    let split = |key: &str| {
        run(strongroom()
            .args([
                "keys",
                "split",
                "--shares",
                "4",
                "--threshold",
                "2",
                "--json",
            ])
            .env("DATABASE_URL", &app.db.url)
            .env("STRONGROOM_MASTER_KEY", key))
    };
    let (ok, out, err) = split(&app.master_key);
    assert!(ok, "{err}");
    let (made, _) = parse_all(&out);
    let rebuilt = shares::combine(&made[1..3]).unwrap();
    let expected = base64::engine::general_purpose::STANDARD
        .decode(app.master_key.trim())
        .unwrap();
    assert_eq!(rebuilt.as_slice(), expected.as_slice());
    // A second split is another set: its shares do not combine with the first's.
    let (ok, again, _) = split(&app.master_key);
    assert!(ok);
    let (other, _) = parse_all(&again);
    assert!(matches!(
        shares::combine(&[made[0].clone(), other[1].clone()]),
        Err(ShareError::OtherSplit(_))
    ));
    // Another key, a strong one, is not this vault's: refused, nothing printed.
    let (ok, out, err) = split(&new_master_key());
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("does not open this vault's stored keys"),
        "{err}"
    );

    let r = app
        .audit(&app.keys.auditor, "?scope=system&action=key.split")
        .await;
    let events: Value = r.json().await.unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in events {
        let detail = e["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("shares=4 threshold=2 master="),
            "{detail}"
        );
        assert!(e["subject"].as_str().unwrap().starts_with("split:"));
    }
    let text = serde_json::to_string(events).unwrap();
    for share in made.iter().chain(&other) {
        assert!(!text.contains(&share.to_text()[14..60]));
    }
}
