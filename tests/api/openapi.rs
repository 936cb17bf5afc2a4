//! `openapi.yaml` describes exactly the routes the server answers.

use std::collections::BTreeSet;

use serde_norway::Value;

#[test]
fn openapi_paths_match_the_server_routes() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_mapping()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            let path = path.as_str().unwrap().to_owned();
            item.as_mapping()
                .unwrap()
                .keys()
                .filter_map(|k| k.as_str())
                .filter(|k| methods.contains(k))
                .map(move |m| (path.clone(), m.to_uppercase()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served: BTreeSet<(String, String)> = strongroom::api::routes()
        .iter()
        .map(|r| (r.path.to_owned(), r.method.as_str().to_owned()))
        .collect();
    assert_eq!(documented, served, "openapi.yaml and the router disagree");
}

#[test]
fn every_error_code_the_server_can_send_is_documented() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    let documented: BTreeSet<String> =
        doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
    let sent: BTreeSet<String> = strongroom::api::ApiError::CODES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    assert!(!sent.is_empty());
    assert_eq!(documented, sent);
}
