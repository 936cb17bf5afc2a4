//! Caller-supplied token metadata, and the rules that keep card data out of it (the detection
//! itself is `card_data`'s).
//!
//! No I/O. Errors never carry the offending key or value.

use serde_json::{Map, Value};

use super::card_data::{holds_card_number, holds_sensitive_key};

/// Largest serialized metadata accepted, in bytes: metadata is a label, not a document store.
pub const MAX_BYTES: usize = 2048;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 4;

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

/// Validated metadata: a small JSON object without card data or sensitive authentication data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct Metadata(Map<String, Value>);

impl Metadata {
    /// Checks caller-supplied metadata against every rule above: sensitive keys, size, card
    /// numbers, depth. Size comes before the card-number search so that search never runs over
    /// more than [`MAX_BYTES`] of text, whatever the body limit.
    pub fn parse(value: Value) -> Result<Metadata, MetadataError> {
        let Value::Object(map) = value else {
            return Err(MetadataError::NotAnObject);
        };
        let value = Value::Object(map);
        if holds_sensitive_key(&value) {
            return Err(MetadataError::SensitiveField);
        }
        if serde_json::to_vec(&value).map_or(true, |bytes| bytes.len() > MAX_BYTES) {
            return Err(MetadataError::TooLarge);
        }
        if holds_card_number(&value) {
            return Err(MetadataError::CardNumber);
        }
        if depth(&value) > MAX_DEPTH {
            return Err(MetadataError::TooDeep);
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
            json!({"order": {"cvcNumber": "x"}}),
        ] {
            assert_eq!(Metadata::parse(v), Err(MetadataError::SensitiveField));
        }
        assert!(
            Metadata::parse(json!({"pinned": true, "tracking_number": "1Z999AA10123456784"}))
                .is_ok()
        );
    }

    #[test]
    fn card_numbers_are_found_in_values_numbers_and_keys() {
        for v in [
            json!({"note": "card 4111 1111 1111 1111 expired"}),
            json!({"n": 4111111111111111u64}),
            json!({"4111-1111-1111-1111": true}),
            json!({"deep": {"x": ["5555555555554444"]}}),
            json!({"note": "4111.1111.1111.1111"}),
            json!({"note": "4111111111111111 1225"}),
        ] {
            assert_eq!(Metadata::parse(v), Err(MetadataError::CardNumber));
        }
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
