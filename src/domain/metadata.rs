//! Caller-supplied token metadata, and the rules that keep card data out of it.
//!
//! No I/O. Errors never carry the offending key or value.

use serde_json::{Map, Value};

use super::luhn;

/// Largest serialized metadata accepted, in bytes: metadata is a label, not a document store.
pub const MAX_BYTES: usize = 2048;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 4;

/// Field names that carry sensitive authentication data (PCI DSS 3.3.1), compared after
/// lowercasing and dropping everything but letters and digits. SAD must never be stored, even
/// encrypted, so a request carrying one of these is refused outright.
const SENSITIVE_FIELDS: &[&str] = &[
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "cav2",
    "cid",
    "csc",
    "securitycode",
    "pin",
    "pinblock",
    "track1",
    "track2",
    "trackdata",
    "magstripe",
];

/// Why metadata is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Not a JSON object.
    #[error("metadata must be a JSON object")]
    NotAnObject,
    /// Larger than [`MAX_BYTES`] once serialized.
    #[error("metadata must be at most 2048 bytes")]
    TooLarge,
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("metadata must be nested at most 4 levels deep")]
    TooDeep,
    /// A field name that carries sensitive authentication data (CVV, PIN, track data).
    #[error("metadata must not carry sensitive authentication data (CVV, PIN, track data)")]
    SensitiveField,
    /// A string or number that is a card number.
    #[error("metadata must not contain a card number")]
    CardNumber,
}

/// Whether a JSON field name names sensitive authentication data.
pub fn is_sensitive_field(name: &str) -> bool {
    let normalized: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SENSITIVE_FIELDS.contains(&normalized.as_str())
}

/// Whether any field name at any depth of `value` names sensitive authentication data.
pub fn has_sensitive_field(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| is_sensitive_field(k) || has_sensitive_field(v)),
        Value::Array(items) => items.iter().any(has_sensitive_field),
        _ => false,
    }
}

/// Whether `text` holds a card number: a run of 12–19 digits, optionally separated by single
/// spaces or hyphens, that passes Luhn. Runs are maximal, so a 25-digit reference number is not
/// mistaken for a card number, and a card number embedded in words is still found.
pub fn contains_card_number(text: &str) -> bool {
    let mut run: Vec<u8> = Vec::new();
    let mut last_was_separator = false;
    let check = |run: &[u8]| (12..=19).contains(&run.len()) && luhn::is_valid(run);
    for byte in text.bytes() {
        match byte {
            b'0'..=b'9' => {
                run.push(byte);
                last_was_separator = false;
            }
            b' ' | b'-' if !run.is_empty() && !last_was_separator => last_was_separator = true,
            _ => {
                if check(&run) {
                    return true;
                }
                run.clear();
                last_was_separator = false;
            }
        }
    }
    check(&run)
}

/// Validated metadata: a small JSON object without card data or sensitive authentication data.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata(Map<String, Value>);

impl Metadata {
    /// Checks caller-supplied metadata against every rule above.
    pub fn parse(value: Value) -> Result<Metadata, MetadataError> {
        let Value::Object(map) = value else {
            return Err(MetadataError::NotAnObject);
        };
        let value = Value::Object(map);
        if has_sensitive_field(&value) {
            return Err(MetadataError::SensitiveField);
        }
        if holds_card_number(&value) {
            return Err(MetadataError::CardNumber);
        }
        if depth(&value) > MAX_DEPTH {
            return Err(MetadataError::TooDeep);
        }
        if serde_json::to_vec(&value).map_or(true, |bytes| bytes.len() > MAX_BYTES) {
            return Err(MetadataError::TooLarge);
        }
        match value {
            Value::Object(map) => Ok(Metadata(map)),
            _ => Err(MetadataError::NotAnObject),
        }
    }

    /// Rebuilds metadata read back from storage, where it was validated on the way in.
    pub fn from_stored(map: Map<String, Value>) -> Metadata {
        Metadata(map)
    }

    /// The JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

fn holds_card_number(value: &Value) -> bool {
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

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_metadata_is_accepted() {
        let m = Metadata::parse(json!({"customer": "c_123", "order": 42, "tags": ["a"]})).unwrap();
        assert_eq!(m.as_map().len(), 3);
    }

    #[test]
    fn sensitive_field_names_are_refused_at_any_depth_and_spelling() {
        for v in [
            json!({"cvv": "123"}),
            json!({"CVC2": "123"}),
            json!({"nested": {"pin_block": "x"}}),
            json!({"list": [{"Track-2": "x"}]}),
        ] {
            assert_eq!(Metadata::parse(v), Err(MetadataError::SensitiveField));
        }
        assert!(!is_sensitive_field("pinned"));
        assert!(!is_sensitive_field("spin"));
    }

    #[test]
    fn card_numbers_are_found_in_values_numbers_and_keys() {
        for v in [
            json!({"note": "card 4111 1111 1111 1111 expired"}),
            json!({"n": 4111111111111111u64}),
            json!({"4111-1111-1111-1111": true}),
            json!({"deep": {"x": ["5555555555554444"]}}),
        ] {
            assert_eq!(Metadata::parse(v), Err(MetadataError::CardNumber));
        }
    }

    #[test]
    fn long_reference_numbers_and_luhn_failures_are_not_card_numbers() {
        assert!(!contains_card_number("ref 4111111111111111111111111"));
        assert!(!contains_card_number("4111111111111112"));
        assert!(!contains_card_number("order 12345"));
        assert!(contains_card_number("x4111111111111111y"));
    }

    #[test]
    fn non_objects_deep_and_large_metadata_are_refused() {
        assert_eq!(Metadata::parse(json!([1])), Err(MetadataError::NotAnObject));
        assert_eq!(
            Metadata::parse(json!({"a": {"b": {"c": {"d": {"e": 1}}}}})),
            Err(MetadataError::TooDeep)
        );
        let big = "x".repeat(MAX_BYTES);
        assert_eq!(
            Metadata::parse(json!({"a": big})),
            Err(MetadataError::TooLarge)
        );
    }
}
