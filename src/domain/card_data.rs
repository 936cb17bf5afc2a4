//! The one card-data detector: whether caller text holds a card number, whether a JSON key
//! names sensitive authentication data, and both over whole JSON values.
//!
//! Every string a caller gives us — metadata keys and values, access-request reasons, approval
//! comments, request ids, body keys — passes through here before it is stored, logged or
//! echoed, so there is one rule and one place to change it (SPEC: "metadata that contains a
//! Luhn-valid 12–19 digit string is refused"; PCI DSS 3.3.1 for sensitive authentication data).
//!
//! No I/O. Nothing here logs, and no answer carries the text it looked at.

use serde_json::Value;

mod keys;
mod numbers;

pub use keys::names_sensitive_data;
pub use numbers::contains_card_number;

/// Whether any object key at any depth of `value` names sensitive authentication data.
pub fn holds_sensitive_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| names_sensitive_data(k) || holds_sensitive_key(v)),
        Value::Array(items) => items.iter().any(holds_sensitive_key),
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => false,
    }
}

/// Whether any key, string or number at any depth of `value` holds a card number.
///
/// Numbers are read in their JSON spelling, so `4111111111111111` and `4.111111111111111e15`
/// written as a float (`4111111111111111.0`) are both found.
pub fn holds_card_number(value: &Value) -> bool {
    match value {
        Value::String(s) => contains_card_number(s),
        Value::Number(n) => contains_card_number(&n.to_string()),
        Value::Array(items) => items.iter().any(holds_card_number),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| contains_card_number(k) || holds_card_number(v)),
        Value::Bool(_) | Value::Null => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn card_numbers_are_found_in_keys_strings_and_numbers_at_any_depth() {
        for v in [
            json!({"n": 4111111111111111u64}),
            json!({"n": 4111111111111111.0}),
            json!({"4111.1111.1111.1111": true}),
            json!({"a": {"b": {"c": ["x", "5555 5555 5555 4444 1225"]}}}),
            json!([{"deep": [[{"k": "PAN/12/25 6011111111111117/12/25"}]]}]),
        ] {
            assert!(holds_card_number(&v), "{v}");
        }
        assert!(!holds_card_number(
            &json!({"order": "ORD-2026-000123", "at": "2026-12-01T08:34:25.123Z", "n": 42, "ok": true, "x": null})
        ));
    }

    #[test]
    fn sensitive_keys_are_found_at_any_depth_but_values_do_not_count() {
        assert!(holds_sensitive_key(&json!({"a": [{"b": {"cardPin": 1}}]})));
        assert!(holds_sensitive_key(&json!({"trackData2": "x"})));
        assert!(!holds_sensitive_key(
            &json!({"note": "cvv", "tracking_number": {"shipping": ["pin"]}})
        ));
    }
}
