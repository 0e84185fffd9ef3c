//! How one JSON event becomes a log record: its message is the body, its kind gives the severity
//! and `event.name`, its other fields become attributes Loki and the Collector can filter on.

use opentelemetry::logs::{AnyValue, Severity};
use opentelemetry::{Key, StringValue};
use serde_json::{Map, Value};

/// The severity of an event kind: `error` is ERROR, `warning` WARN, any other kind INFO.
pub fn severity(kind: &str) -> Severity {
    match kind {
        "error" => Severity::Error,
        "warning" => Severity::Warn,
        _ => Severity::Info,
    }
}

/// The record's body: the event's `message` when it has a text one, else its kind.
pub fn body(kind: &str, fields: &Map<String, Value>) -> String {
    match fields.get("message") {
        Some(Value::String(message)) => message.clone(),
        _ => kind.to_owned(),
    }
}

/// The event's fields as attributes, `message` aside (it is the body): strings, numbers and
/// booleans as themselves, arrays and objects as their JSON text, nulls left out.
pub fn attributes(fields: &Map<String, Value>) -> Vec<(Key, AnyValue)> {
    fields
        .iter()
        .filter(|(key, value)| key.as_str() != "message" || !value.is_string())
        .filter_map(|(key, value)| Some((Key::from(key.clone()), any_value(value)?)))
        .collect()
}

fn any_value(value: &Value) -> Option<AnyValue> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(flag) => AnyValue::Boolean(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(int) => AnyValue::Int(int),
            // Above i64::MAX or fractional: a double keeps the magnitude.
            None => AnyValue::Double(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => AnyValue::String(StringValue::from(text.clone())),
        nested => AnyValue::String(StringValue::from(nested.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn the_kind_gives_the_severity() {
        assert_eq!(severity("error"), Severity::Error);
        assert_eq!(severity("warning"), Severity::Warn);
        assert_eq!(severity("step_finished"), Severity::Info);
        assert_eq!(severity("info"), Severity::Info);
    }

    #[test]
    fn the_body_is_the_message_else_the_kind() {
        let with_message = fields(json!({ "message": "deployed 1.2.0", "step": "smoke" }));
        assert_eq!(body("info", &with_message), "deployed 1.2.0");
        assert_eq!(
            body("step_started", &fields(json!({ "step": "pull" }))),
            "step_started"
        );
        assert_eq!(body("odd", &fields(json!({ "message": 3 }))), "odd");
    }

    #[test]
    fn fields_flatten_to_scalars_and_json_text() {
        let event = fields(json!({
            "message": "left out: it is the body",
            "step": "health",
            "ok": false,
            "elapsed_ms": 1500,
            "ratio": 0.5,
            "huge": u64::MAX,
            "lines": ["a", "b"],
            "changes": { "app": "1.0 -> 1.1" },
            "restore": null,
        }));
        let attributes: Vec<(String, AnyValue)> = attributes(&event)
            .into_iter()
            .map(|(key, value)| (key.as_str().to_owned(), value))
            .collect();
        let get = |name: &str| {
            attributes
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(get("step"), Some(AnyValue::String("health".into())));
        assert_eq!(get("ok"), Some(AnyValue::Boolean(false)));
        assert_eq!(get("elapsed_ms"), Some(AnyValue::Int(1500)));
        assert_eq!(get("ratio"), Some(AnyValue::Double(0.5)));
        assert_eq!(get("huge"), Some(AnyValue::Double(u64::MAX as f64)));
        assert_eq!(get("lines"), Some(AnyValue::String(r#"["a","b"]"#.into())));
        assert_eq!(
            get("changes"),
            Some(AnyValue::String(r#"{"app":"1.0 -> 1.1"}"#.into()))
        );
        assert_eq!(get("message"), None);
        assert_eq!(get("restore"), None);
        assert_eq!(attributes.len(), 7);
    }
}
