//! HTTPS with rustls: TLS 1.2 and 1.3 both served; the console's cookie made for HTTPS.

use reqwest::StatusCode;
use reqwest::tls::Version;
use strongroom::config::TlsFiles;

use crate::helpers::*;

#[tokio::test]
async fn the_api_is_served_over_tls_1_2_and_1_3() {
    let dir = std::env::temp_dir().join(format!("strongroom-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let app = spawn_app_with(Options {
        configure: Box::new(move |c| c.tls = Some(files)),
        ..Options::default()
    })
    .await;
    assert!(app.address.starts_with("https://"));
    let root = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    for version in [Version::TLS_1_2, Version::TLS_1_3] {
        let client = reqwest::Client::builder()
            .tls_certs_only([root.clone()])
            .tls_version_min(version)
            .tls_version_max(version)
            .build()
            .unwrap();
        let r = client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{version:?}");
        let r = client
            .post(app.url("/v1/tokens"))
            .bearer_auth(&app.keys.tokenizer)
            .json(&serde_json::json!({"value": random_pan("4", 16)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Plain HTTP to the TLS port gets no answer.
    let plain = app.address.replace("https://", "http://");
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err());

    // Over HTTPS the console's cookie is `Secure` and `__Host-`: no other host or path can set
    // it, and a cookie of the plain name is not ours.
    let client = reqwest::Client::builder()
        .tls_certs_only([root])
        .build()
        .unwrap();
    let r = client
        .post(app.url("/v1/sessions"))
        .json(&serde_json::json!({"api_key": app.keys.auditor}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("__Host-strongroom_session="),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("; Secure") && set_cookie.contains("Path=/"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let value = cookie.split_once('=').unwrap().1.to_owned();
    for (sent, status) in [
        (cookie, StatusCode::OK),
        (
            format!("strongroom_session={value}"),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let r = client
            .get(app.url("/v1/sessions/current"))
            .header("cookie", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    std::fs::remove_dir_all(dir).unwrap();
}
