//! The trigger context of a run started over HTTP: what the handlers read as
//! `task.context.trigger` (method, path, query, headers and the exact body).

use std::collections::BTreeMap;

use cronflow_core::Json;
use http::HeaderMap;
use http::request::Parts;
use serde::Serialize;
use serde_json::{Map, Value};

/// `{"type", "workflow_id", "method", "path", "query", "headers", "raw_body"}`.
#[derive(Serialize)]
struct TriggerContext<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    workflow_id: &'a str,
    method: &'a str,
    path: &'a str,
    query: Map<String, Value>,
    headers: BTreeMap<&'a str, String>,
    raw_body: &'a str,
}

/// The context of a delivery. `kind` is `"webhook"` or `"manual"`; headers named in `omit`
/// are left out (the manual route's `Authorization`, so its token is not stored with runs).
pub(crate) fn trigger_context(
    kind: &'static str,
    workflow_id: &str,
    parts: &Parts,
    raw_body: &str,
    omit: &[http::HeaderName],
) -> Json {
    let context = TriggerContext {
        kind,
        workflow_id,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: query(parts.uri.query().unwrap_or_default()),
        headers: headers(&parts.headers, omit),
        raw_body,
    };
    // Every field is a string or a map of strings: serialising cannot fail.
    Json::from_value(&context).unwrap_or_default()
}

/// Lower-case names to values; a repeated header's values joined with `", "` (RFC 9110's
/// list form). Bytes that are not UTF-8 are replaced, so the context stays valid JSON.
fn headers<'a>(map: &'a HeaderMap, omit: &[http::HeaderName]) -> BTreeMap<&'a str, String> {
    map.keys()
        .filter(|name| !omit.contains(name))
        .map(|name| {
            let values: Vec<_> =
                map.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
            (name.as_str(), values.join(", "))
        })
        .collect()
}

/// The decoded query: each name to its value, or to the array of its values when it is
/// repeated (as Express's `req.query` has it).
fn query(raw: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let value = Value::String(value.into_owned());
        match out.get_mut(name.as_ref()) {
            None => {
                out.insert(name.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_repeats_become_arrays() {
        let q = query("a=1&b=x%20y&a=2&a=3&c");
        assert_eq!(
            Value::Object(q),
            serde_json::json!({"a": ["1", "2", "3"], "b": "x y", "c": ""})
        );
    }

    #[test]
    fn headers_are_joined_and_omitted() {
        let mut map = HeaderMap::new();
        map.append("x-a", "1".parse().unwrap());
        map.append("x-a", "2".parse().unwrap());
        map.append("authorization", "Bearer t".parse().unwrap());
        let got = headers(&map, &[http::header::AUTHORIZATION]);
        assert_eq!(got, BTreeMap::from([("x-a", "1, 2".to_string())]));
    }
}
