//! HTTPS with rustls: TLS 1.2 and 1.3 both served.

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
    std::fs::remove_dir_all(dir).unwrap();
}
