//! Rule 9: which of a user's pools a server's `user_options` belong to.
//!
//! A pattern is a JSON object compared with the server's options key by key:
//! a list means "one of"; a string is a full-match regular expression, or a
//! glob where it is not a valid regular expression; a number or bool must be
//! equal; an object matches recursively. A one-element list in the server's
//! options counts as its element (HTML forms send every value as a list).

use regex::Regex;
use serde_json::Value;

/// A compiled `user_options` pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    root: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    OneOf(Vec<Matcher>),
    Text(Regex),
    Equal(Value),
    Object(Vec<(String, Matcher)>),
}

/// Why a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

impl Pattern {
    /// Compiles a pattern; the top level must be an object.
    pub fn compile(pattern: &Value) -> Result<Self, PatternError> {
        if !pattern.is_object() {
            return Err(PatternError(format!(
                "a user_options pattern must be an object such as {{\"system\": \"gpu\"}}, not {pattern}"
            )));
        }
        Ok(Self {
            root: Matcher::compile(pattern, "user_options")?,
        })
    }

    /// True when `options` (a server's `user_options`) fit this pattern.
    pub fn matches(&self, options: &Value) -> bool {
        self.root.matches(options)
    }
}

impl Matcher {
    fn compile(value: &Value, path: &str) -> Result<Self, PatternError> {
        Ok(match value {
            Value::Array(items) => Matcher::OneOf(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Matcher::compile(v, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::String(text) => Matcher::Text(full_match_regex(text).ok_or_else(|| {
                PatternError(format!(
                    "{path}: {text:?} is neither a regular expression nor a glob"
                ))
            })?),
            Value::Object(map) => Matcher::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), Matcher::compile(v, &format!("{path}.{k}"))?)))
                    .collect::<Result<_, PatternError>>()?,
            ),
            scalar => Matcher::Equal(scalar.clone()),
        })
    }

    fn matches(&self, value: &Value) -> bool {
        let value = match value {
            Value::Array(items) if items.len() == 1 => &items[0],
            other => other,
        };
        match self {
            Matcher::OneOf(options) => options.iter().any(|m| m.matches(value)),
            Matcher::Text(regex) => match value {
                Value::String(s) => regex.is_match(s),
                Value::Number(n) => regex.is_match(&n.to_string()),
                Value::Bool(b) => regex.is_match(if *b { "true" } else { "false" }),
                _ => false,
            },
            Matcher::Equal(expected) => scalar_equal(expected, value),
            Matcher::Object(entries) => match value {
                Value::Object(map) => entries
                    .iter()
                    .all(|(k, m)| map.get(k).is_some_and(|v| m.matches(v))),
                _ => false,
            },
        }
    }
}

/// Numbers are equal by value (2 == 2.0); everything else by JSON equality.
fn scalar_equal(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_f64() == b.as_f64(),
        },
        _ => expected == actual,
    }
}

/// `^(?:text)$` when `text` is a valid regular expression, else the glob
/// translated to one.
fn full_match_regex(text: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{text})$"))
        .ok()
        .or_else(|| Regex::new(&glob_to_regex(text)).ok())
}

fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut in_class = false;
    for c in glob.chars() {
        match c {
            '*' if !in_class => out.push_str(".*"),
            '?' if !in_class => out.push('.'),
            '[' if !in_class => {
                in_class = true;
                out.push('[');
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '!' if in_class && out.ends_with('[') => out.push('^'),
            c if in_class => {
                if c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    if in_class {
        // An unclosed class is a literal bracket in a glob too.
        return format!("^{}$", regex::escape(glob));
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(pattern: Value, options: Value) -> bool {
        Pattern::compile(&pattern).unwrap().matches(&options)
    }

    #[test]
    fn strings_are_full_match_regexes() {
        assert!(m(json!({"system": "gpu|cpu"}), json!({"system": "gpu"})));
        assert!(!m(json!({"system": "gpu"}), json!({"system": "gpu-large"})));
        assert!(m(
            json!({"system": "gpu.*"}),
            json!({"system": "gpu-large"})
        ));
    }

    #[test]
    fn invalid_regex_falls_back_to_glob() {
        assert!(m(
            json!({"image": "*/scipy"}),
            json!({"image": "jupyter/scipy"})
        ));
        assert!(!m(
            json!({"image": "*/scipy"}),
            json!({"image": "jupyter/scipy2"})
        ));
        assert!(m(json!({"f": "+x?"}), json!({"f": "+xy"})));
    }

    #[test]
    fn lists_mean_one_of_and_single_element_options_unwrap() {
        assert!(m(json!({"gpus": [1, 2]}), json!({"gpus": 2})));
        assert!(m(json!({"gpus": [1, 2]}), json!({"gpus": [2]})));
        assert!(!m(json!({"gpus": [1, 2]}), json!({"gpus": [1, 2]})));
        assert!(!m(json!({"gpus": [1, 2]}), json!({"gpus": 4})));
    }

    #[test]
    fn numbers_and_bools_must_be_equal() {
        assert!(m(json!({"gpus": 2}), json!({"gpus": 2.0})));
        assert!(!m(json!({"gpus": 2}), json!({"gpus": "2x"})));
        assert!(m(json!({"x": true}), json!({"x": true})));
        assert!(!m(json!({"x": true}), json!({"x": "true"})));
        assert!(m(json!({"gpus": "[1-4]"}), json!({"gpus": 3})));
    }

    #[test]
    fn objects_match_recursively_and_missing_keys_fail() {
        let p = json!({"res": {"gpus": [1, 2], "partition": "booster"}});
        assert!(m(
            p.clone(),
            json!({"res": {"gpus": 1, "partition": "booster", "x": 1}})
        ));
        assert!(!m(p.clone(), json!({"res": {"gpus": 1}})));
        assert!(!m(p, json!({})));
        assert!(m(json!({}), json!({"anything": 1})));
    }

    #[test]
    fn top_level_must_be_an_object() {
        assert!(Pattern::compile(&json!("gpu")).is_err());
        assert!(Pattern::compile(&json!([1])).is_err());
    }
}
