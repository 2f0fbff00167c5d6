//! Strict reading of request bodies and query strings. Every value is checked
//! for type and range before anything changes; the message names the field
//! and the value.

use std::collections::HashMap;

use serde_json::{Map, Value};

use credit_ledger::limits::{PAGE_SIZE_MAX, TEXT_BYTES_MAX, VALUE_MAX};

use super::error::{ApiError, ApiResult};

/// Page size when the caller gives none.
pub const PAGE_SIZE_DEFAULT: i64 = 100;

/// An admin's change, as sent to `PATCH .../pools/{pool}` or
/// `PATCH projects/{name}`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Patch {
    /// New balance.
    pub balance: Option<i64>,
    /// New cap.
    pub cap: Option<i64>,
    /// New grant value.
    pub grant_value: Option<i64>,
    /// New grant interval (seconds).
    pub grant_interval: Option<i64>,
    /// New project: `Some(None)` removes the pool from its project.
    pub project: Option<Option<String>>,
    /// The admin's reason.
    pub reason: Option<String>,
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads a JSON body that must be an object.
pub fn object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::BadRequest(format!(
            "the body must be a JSON object such as {{\"balance\": 10}}, not {}",
            kind(&other)
        ))),
    }
}

/// An integer in `min..=2^53-1`; floats, strings, booleans and null are refused.
pub fn integer(field: &str, value: &Value, min: i64) -> ApiResult<i64> {
    let range = format!("an integer from {min} to {VALUE_MAX}");
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) if n.is_i64() && (min..=VALUE_MAX).contains(&i) => Ok(i),
            _ => Err(ApiError::BadRequest(format!("{field}: {n} is not {range}"))),
        },
        Value::Null => Err(ApiError::BadRequest(format!(
            "{field} must not be null; leave it out to keep the current value"
        ))),
        other => Err(ApiError::BadRequest(format!(
            "{field} must be {range}, not {}",
            kind(other)
        ))),
    }
}

/// Reads an admin patch; `allow_project` for a user's pool.
pub fn patch(body: &[u8], allow_project: bool) -> ApiResult<Patch> {
    let map = object(body)?;
    let allowed: &[&str] = if allow_project {
        &[
            "balance",
            "cap",
            "grant_value",
            "grant_interval",
            "project",
            "reason",
        ]
    } else {
        &["balance", "cap", "grant_value", "grant_interval", "reason"]
    };
    let mut patch = Patch::default();
    for (key, value) in &map {
        match key.as_str() {
            "balance" => patch.balance = Some(integer(key, value, 0)?),
            "cap" => patch.cap = Some(integer(key, value, 0)?),
            "grant_value" => patch.grant_value = Some(integer(key, value, 0)?),
            "grant_interval" => patch.grant_interval = Some(integer(key, value, 1)?),
            "project" if allow_project => {
                patch.project = Some(match value {
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => Some(s.clone()),
                    Value::Null => {
                        return Err(ApiError::BadRequest(
                            "project must not be null; send \"project\": \"\" to take the pool out of its project".into(),
                        ));
                    }
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "project must be a project name (a string), not {}",
                            kind(other)
                        )));
                    }
                })
            }
            "reason" => match value {
                // PostgreSQL can't store a NUL; SQLite would cut the text at it.
                Value::String(s) if s.contains('\0') => {
                    return Err(ApiError::BadRequest(
                        "reason must not contain NUL characters".into(),
                    ));
                }
                Value::String(s) if s.len() <= TEXT_BYTES_MAX => patch.reason = Some(s.clone()),
                Value::String(s) => {
                    return Err(ApiError::BadRequest(format!(
                        "reason is {} bytes long; at most {TEXT_BYTES_MAX} are allowed",
                        s.len()
                    )));
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "reason must be a string, not {}",
                        kind(other)
                    )));
                }
            },
            unknown => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {unknown:?}; allowed: {}",
                    allowed.join(", ")
                )));
            }
        }
    }
    if patch.balance.is_none()
        && patch.cap.is_none()
        && patch.grant_value.is_none()
        && patch.grant_interval.is_none()
        && patch.project.is_none()
    {
        return Err(ApiError::BadRequest(format!(
            "nothing to change; give one or more of: {}",
            allowed[..allowed.len() - 1].join(", ")
        )));
    }
    if let (Some(balance), Some(cap)) = (patch.balance, patch.cap)
        && balance > cap
    {
        return Err(ApiError::BadRequest(format!(
            "balance {balance} is above the cap {cap}"
        )));
    }
    Ok(patch)
}

/// Query parameters, checked: only `allowed` names, each at most once.
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> ApiResult<Self> {
        let mut map = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&key.as_ref()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {key:?}; allowed: {}",
                    allowed.join(", ")
                )));
            }
            // No name holds them, and PostgreSQL can't even compare a NUL.
            if value.chars().any(char::is_control) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {key:?} contains control characters"
                )));
            }
            if map.insert(key.to_string(), value.to_string()).is_some() {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {key:?} is given twice"
                )));
            }
        }
        Ok(Self(map))
    }

    /// `limit`: 1..=1000, default 100.
    pub fn limit(&self) -> ApiResult<i64> {
        match self.0.get("limit") {
            None => Ok(PAGE_SIZE_DEFAULT),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=PAGE_SIZE_MAX).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit: {text:?} is not an integer from 1 to {PAGE_SIZE_MAX}"
                    ))
                }),
        }
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A positive integer parameter (a journal cursor).
    pub fn id(&self, name: &str) -> ApiResult<Option<i64>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("{name}: {text:?} is not a journal entry id"))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: &str) -> String {
        match patch(body.as_bytes(), true) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{body}: expected 400, got {other:?}"),
        }
    }

    #[test]
    fn good_patches() {
        let p = patch(
            br#"{"balance": 0, "cap": 9007199254740991, "reason": "x", "project": ""}"#,
            true,
        )
        .unwrap();
        assert_eq!(p.balance, Some(0));
        assert_eq!(p.cap, Some(VALUE_MAX));
        assert_eq!(p.project, Some(None));
    }

    #[test]
    fn bad_patches_name_field_and_value() {
        assert!(bad(r#"{"cap": "10"}"#).contains("cap must be an integer"));
        assert!(bad(r#"{"cap": 1.5}"#).contains("cap: 1.5 is not an integer"));
        assert!(bad(r#"{"cap": 10.0}"#).contains("cap: 10.0 is not an integer"));
        assert!(bad(r#"{"cap": true}"#).contains("not a boolean"));
        assert!(bad(r#"{"cap": null}"#).contains("must not be null"));
        assert!(bad(r#"{"cap": 1000000000000000000000000000000}"#).contains("is not an integer"));
        assert!(bad(r#"{"cap": 9223372036854775808}"#).contains("is not an integer"));
        assert!(bad(r#"{"cap": 9007199254740992}"#).contains("is not an integer"));
        assert!(bad(r#"{"cap": -1}"#).contains("cap: -1"));
        assert!(bad(r#"{"grant_interval": 0}"#).contains("grant_interval: 0"));
        assert!(bad(r#"{"capp": 1}"#).contains("unknown field \"capp\""));
        assert!(bad(r#"{"project": null}"#).contains("project must not be null"));
        assert!(bad(r#"[1]"#).contains("must be a JSON object"));
        assert!(bad(r#"not json"#).contains("not valid JSON"));
        assert!(bad(r#"{}"#).contains("nothing to change"));
        assert!(bad(r#"{"reason": "only"}"#).contains("nothing to change"));
        assert!(bad(r#"{"balance": 5, "cap": 4}"#).contains("above the cap"));
        assert!(matches!(
            patch(br#"{"project": "x"}"#, false),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn queries() {
        let q = Query::parse(Some("limit=5&after=b%C3%BC"), &["limit", "after"]).unwrap();
        assert_eq!(q.limit().unwrap(), 5);
        assert_eq!(q.text("after"), Some("bü"));
        assert!(Query::parse(Some("x=1"), &["limit"]).is_err());
        assert!(
            Query::parse(Some("limit=0"), &["limit"])
                .unwrap()
                .limit()
                .is_err()
        );
        assert!(Query::parse(Some("limit=1&limit=2"), &["limit"]).is_err());
    }
}
