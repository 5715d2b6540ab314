//! [`Json`]: an immutable, cheaply cloned JSON document kept as its raw text.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON document held as validated raw text behind an `Arc`.
///
/// Payloads and step outputs cross the engine many times (store, executor, context of every
/// later step), so the engine never re-parses or re-serialises them: a `Json` is parsed once
/// when it enters and is then passed and written as text. Cloning is a reference-count bump.
///
/// ```
/// use cronflow_core::Json;
/// let doc = Json::from_value(&serde_json::json!({"order": 42})).unwrap();
/// assert_eq!(doc.as_str(), r#"{"order":42}"#);
/// let v: serde_json::Value = doc.parse().unwrap();
/// assert_eq!(v["order"], 42);
/// ```
#[derive(Clone)]
pub struct Json(Arc<RawValue>);

impl Json {
    /// The JSON `null` (one shared allocation: it is the default of many fields).
    pub fn null() -> Self {
        static NULL: std::sync::LazyLock<Json> =
            std::sync::LazyLock::new(|| Json::from_raw_str("null").expect("null is valid JSON"));
        NULL.clone()
    }

    /// Serialises any value into a `Json`.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self(Arc::from(serde_json::value::to_raw_value(value)?)))
    }

    /// Validates `text` as one JSON document and keeps it as it is (no re-formatting).
    pub fn from_raw_str(text: &str) -> Result<Self, serde_json::Error> {
        let raw: Box<RawValue> = serde_json::from_str(text)?;
        Ok(Self(Arc::from(raw)))
    }

    /// Like [`Json::from_raw_str`], taking ownership of the text.
    pub fn from_string(text: String) -> Result<Self, serde_json::Error> {
        Ok(Self(Arc::from(RawValue::from_string(text)?)))
    }

    /// A serde `deserialize_with` helper that keeps the text exactly as it is, for fields read
    /// straight from `serde_json` (not inside internally tagged enums or flattened structs,
    /// where serde buffers values and the raw text is gone).
    pub fn deserialize_raw<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(Self(Arc::from(raw)))
    }

    /// The document's text, exactly as it was received or serialised.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Length of the document's text in bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Whether the document's text is empty (never true for a valid document).
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// Deserialises the document into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }

    /// The document as a [`serde_json::Value`].
    pub fn to_value(&self) -> serde_json::Value {
        // A `Json` always holds valid JSON, so this only fails on absurd nesting depth.
        self.parse().unwrap_or(serde_json::Value::Null)
    }

    /// JavaScript-like truthiness, used for `if` conditions: `false`, `null`, `0`, `""` are
    /// false, everything else (including empty arrays and objects) is true.
    pub fn is_truthy(&self) -> bool {
        match self.as_str().trim() {
            "false" | "null" | "0" | "\"\"" | "0.0" | "-0" => false,
            s if s.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                s.parse::<f64>().map(|n| n != 0.0).unwrap_or(true)
            }
            _ => true,
        }
    }
}

impl Default for Json {
    fn default() -> Self {
        Self::null()
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Json {}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Self {
        Self::from_value(&value).expect("a serde_json::Value always serialises")
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Deserialising goes through a [`serde_json::Value`] (with key order preserved), because
/// serde buffers the fields of internally tagged enums such as
/// [`RunEvent`](crate::RunEvent), and a buffered value cannot be read back as raw text. Hot paths
/// build a `Json` from text with [`Json::from_raw_str`] / [`Json::from_string`] instead, which
/// keeps the text exactly.
impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Json::from_value(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness_follows_javascript() {
        for falsy in ["false", "null", "0", "\"\"", "0.0", "-0"] {
            assert!(!Json::from_raw_str(falsy).unwrap().is_truthy(), "{falsy}");
        }
        for truthy in ["true", "1", "-2.5", "\"no\"", "[]", "{}"] {
            assert!(Json::from_raw_str(truthy).unwrap().is_truthy(), "{truthy}");
        }
    }

    #[test]
    fn run_events_round_trip_through_serde() {
        use crate::{RecordedEvent, RunEvent, TaskKey};
        let event = RecordedEvent {
            seq: 3,
            at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            event: RunEvent::TaskSucceeded {
                task: TaskKey::new("charge"),
                attempt: 2,
                started_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
                output: Json::from_raw_str(r#"{"z":1,"a":[true,null]}"#).unwrap(),
            },
        };
        let text = serde_json::to_string(&event).unwrap();
        let back: RecordedEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn keeps_text_and_round_trips_through_serde() {
        let doc = Json::from_raw_str(r#"{"a": [1, 2]}"#).unwrap();
        assert_eq!(doc.as_str(), r#"{"a": [1, 2]}"#);
        let nested = serde_json::to_string(&serde_json::json!({ "x": 1 })).unwrap();
        assert_eq!(Json::from_string(nested).unwrap().to_value()["x"], 1);
        assert!(Json::from_raw_str("{oops").is_err());
    }
}
