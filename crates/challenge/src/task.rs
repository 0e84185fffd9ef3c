//! The task domain: types that can only exist when valid (parse, don't validate).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 2000;

/// A stored task, as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Task {
    #[schema(
        example = 42,
        format = "uint64",
        minimum = 0,
        maximum = 18446744073709551615u64
    )]
    pub id: u64,
    #[schema(example = "Write the runbook")]
    pub title: String,
    pub description: Option<String>,
    pub done: bool,
    /// RFC 3339, UTC.
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: OffsetDateTime,
    /// RFC 3339, UTC.
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub updated_at: OffsetDateTime,
}

/// Per-field validation messages, as the 422 problem's `errors` member.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// A title: 1 to 200 characters once surrounding white space is trimmed, and no control character
/// (U+0000 to U+001F, U+007F to U+009F) anywhere, trimmed part or not.
///
/// The schema's pattern says the same for clients, in the subset of regular expressions that
/// ECMA-262 and Python's `re` read alike: optional spaces (white space that is not a control
/// character), then 1 to 200 non-control characters that start and end with a non-space, then
/// optional spaces. `$(?!\n)` is plain `$` in ECMA-262; in Python it stops `$` from also matching
/// before a final newline. Lengths count code points, as ours do.
#[derive(Clone, Debug, PartialEq, Eq, ToSchema)]
#[schema(
    pattern = r"^[\u0020\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000](?:[^\u0000-\u001F\u007F-\u009F]{0,198}[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?[\u0020\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$(?!\n)",
    example = "Write the runbook",
    description = "1 to 200 characters once surrounding white space is trimmed; no control \
                   characters (U+0000 to U+001F, U+007F to U+009F) anywhere."
)]
pub struct TaskTitle(String);

impl TaskTitle {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some((at, c)) = raw.chars().enumerate().find(|(_, c)| c.is_control()) {
            return Err(format!(
                "must not contain control characters (U+{:04X} at character {})",
                u32::from(c),
                at + 1
            ));
        }
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            Err("must not be blank".into())
        } else if chars > TITLE_MAX_CHARS {
            Err(format!(
                "must be at most {TITLE_MAX_CHARS} characters (got {chars})"
            ))
        } else {
            Ok(Self(trimmed.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description: at most 2000 characters, kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskDescription(String);

impl TaskDescription {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars > DESCRIPTION_MAX_CHARS {
            Err(format!(
                "must be at most {DESCRIPTION_MAX_CHARS} characters (got {chars})"
            ))
        } else {
            Ok(Self(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid `POST /api/tasks` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub title: TaskTitle,
    pub description: Option<TaskDescription>,
    pub done: bool,
}

/// A valid `PATCH /api/tasks/{id}` body: `None` leaves a field alone; `description: Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskPatch {
    pub title: Option<TaskTitle>,
    pub description: Option<Option<TaskDescription>>,
    pub done: Option<bool>,
}

/// The JSON shape of a create request (documentation only: bodies are parsed by [`NewTask::from_json`]).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateTaskRequest {
    title: TaskTitle,
    /// At most 2000 characters; null or absent for none.
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// Defaults to false.
    #[schema(nullable = false, default = false)]
    done: Option<bool>,
}

/// The JSON shape of a patch request (documentation only); every field is optional, absent fields
/// are left as they are.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UpdateTaskRequest {
    #[schema(nullable = false)]
    title: Option<TaskTitle>,
    /// At most 2000 characters; `null` clears the description.
    #[schema(max_length = 2000)]
    description: Option<String>,
    #[schema(nullable = false)]
    done: Option<bool>,
}

const FIELDS: [&str; 3] = ["title", "description", "done"];

/// Collects every problem of a body at once, so a client can fix them all in one go.
struct Parser {
    errors: FieldErrors,
}

impl Parser {
    fn new(body: &Map<String, Value>) -> Self {
        let mut errors = FieldErrors::new();
        for key in body.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
            errors
                .entry(key.clone())
                .or_default()
                .push("unknown field".into());
        }
        Self { errors }
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    fn title(&mut self, value: &Value) -> Option<TaskTitle> {
        match value {
            Value::String(s) => TaskTitle::parse(s).map_err(|m| self.fail("title", m)).ok(),
            _ => {
                self.fail("title", "must be a string");
                None
            }
        }
    }

    /// `Some(None)` for an explicit null.
    fn description(&mut self, value: &Value) -> Option<Option<TaskDescription>> {
        match value {
            Value::Null => Some(None),
            Value::String(s) => TaskDescription::parse(s)
                .map_err(|m| self.fail("description", m))
                .ok()
                .map(Some),
            _ => {
                self.fail("description", "must be a string or null");
                None
            }
        }
    }

    fn done(&mut self, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.fail("done", "must be true or false");
                None
            }
        }
    }

    fn finish<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

impl NewTask {
    pub fn from_json(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut p = Parser::new(body);
        let title = match body.get("title") {
            Some(v) => p.title(v),
            None => {
                p.fail("title", "is required");
                None
            }
        };
        let description = body
            .get("description")
            .and_then(|v| p.description(v))
            .flatten();
        let done = body.get("done").and_then(|v| p.done(v)).unwrap_or(false);
        match title {
            Some(title) => p.finish(Self {
                title,
                description,
                done,
            }),
            None => Err(p.errors),
        }
    }
}

impl TaskPatch {
    pub fn from_json(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut p = Parser::new(body);
        let patch = Self {
            title: body.get("title").and_then(|v| p.title(v)),
            description: body.get("description").and_then(|v| p.description(v)),
            done: body.get("done").and_then(|v| p.done(v)),
        };
        p.finish(patch)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("test bodies are objects")
    }

    #[test]
    fn title_is_trimmed_and_counted_in_characters() {
        assert_eq!(TaskTitle::parse("  hi  ").unwrap().as_str(), "hi");
        assert!(TaskTitle::parse(&"é".repeat(200)).is_ok());
        assert!(TaskTitle::parse(&format!(" {} ", "a".repeat(201))).is_err());
        assert!(TaskTitle::parse(&format!("  {}  ", "a".repeat(200))).is_ok());
        assert!(TaskTitle::parse(" \t\n").is_err());
    }

    #[test]
    fn title_with_control_characters_is_rejected_wherever_they_are() {
        for raw in [
            "a\u{0}b",
            "tab\there",
            "trailing newline\n",
            "\r\nleading",
            "del\u{7f}",
            "c1\u{9f}",
        ] {
            let message = TaskTitle::parse(raw).unwrap_err();
            assert!(message.contains("control characters"), "{raw:?}: {message}");
        }
        assert_eq!(
            TaskTitle::parse("ab\u{85}").unwrap_err(),
            "must not contain control characters (U+0085 at character 3)"
        );
        // White space that is not a control character is trimmed as before.
        assert_eq!(
            TaskTitle::parse("\u{a0}\u{3000} hi \u{2028}")
                .unwrap()
                .as_str(),
            "hi"
        );
    }

    #[test]
    fn request_schemas_state_the_limits_the_parsers_enforce() {
        use utoipa::PartialSchema;
        let schema = |s: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
            serde_json::to_value(s).expect("schemas serialise")
        };
        let pattern = schema(TaskTitle::schema())["pattern"]
            .as_str()
            .expect("the title has a pattern")
            .to_owned();
        // First and last character outside the repetition: 1 + 198 + 1.
        assert!(pattern.contains(&format!("{{0,{}}}", TITLE_MAX_CHARS - 2)));
        for request in [
            schema(CreateTaskRequest::schema()),
            schema(UpdateTaskRequest::schema()),
        ] {
            assert_eq!(request["additionalProperties"], false);
            assert_eq!(
                request["properties"]["description"]["maxLength"],
                DESCRIPTION_MAX_CHARS
            );
            assert_eq!(request["properties"]["done"]["type"], "boolean");
        }
    }

    #[test]
    fn description_limit_is_2000_characters() {
        assert!(TaskDescription::parse(&"ü".repeat(2000)).is_ok());
        assert!(TaskDescription::parse(&"u".repeat(2001)).is_err());
    }

    #[test]
    fn new_task_reports_every_bad_field_at_once() {
        let errors = NewTask::from_json(&obj(json!({"title": 5, "done": "yes", "colour": "red"})))
            .unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["colour", "done", "title"]
        );
    }

    #[test]
    fn new_task_defaults() {
        let t = NewTask::from_json(&obj(json!({"title": "x"}))).unwrap();
        assert_eq!(t.description, None);
        assert!(!t.done);
        assert!(
            NewTask::from_json(&obj(json!({})))
                .unwrap_err()
                .contains_key("title")
        );
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let clear = TaskPatch::from_json(&obj(json!({"description": null}))).unwrap();
        assert_eq!(clear.description, Some(None));
        let untouched = TaskPatch::from_json(&obj(json!({"done": true}))).unwrap();
        assert_eq!(untouched.description, None);
        assert_eq!(untouched.done, Some(true));
        assert!(TaskPatch::from_json(&obj(json!({"title": ""}))).is_err());
    }
}
