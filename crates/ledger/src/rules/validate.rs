//! Range checks for every value that enters the ledger. Each returns an
//! [`LedgerError::Invalid`] naming the field and what is accepted.

use crate::error::LedgerError;
use crate::limits::{INTERVAL_SECS_MAX, NAME_BYTES_MAX, TEXT_BYTES_MAX, VALUE_MAX};

/// A credit amount: `0..=2^53-1`.
pub fn credits(field: &str, value: i64) -> Result<i64, LedgerError> {
    if (0..=VALUE_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(LedgerError::invalid(
            field,
            format!("{value} is not a credit amount; use an integer from 0 to {VALUE_MAX}"),
        ))
    }
}

/// An interval in seconds: `1..=2^53-1`.
pub fn interval(field: &str, value: i64) -> Result<i64, LedgerError> {
    if (1..=INTERVAL_SECS_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(LedgerError::invalid(
            field,
            format!(
                "{value} is not an interval; use a whole number of seconds from 1 to {INTERVAL_SECS_MAX}"
            ),
        ))
    }
}

/// A user, server, pool or project name: not too long, no control
/// characters. The empty string is allowed only where `allow_empty` (a
/// user's default server has the empty name).
pub fn name<'a>(field: &str, value: &'a str, allow_empty: bool) -> Result<&'a str, LedgerError> {
    if value.is_empty() && !allow_empty {
        return Err(LedgerError::invalid(field, "must not be empty"));
    }
    if value.len() > NAME_BYTES_MAX {
        return Err(LedgerError::invalid(
            field,
            format!(
                "is {} bytes long; at most {NAME_BYTES_MAX} are allowed",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(LedgerError::invalid(
            field,
            format!("{value:?} contains control characters"),
        ));
    }
    Ok(value)
}

/// Free text (an admin's reason, an actor): bounded, may be empty.
pub fn text<'a>(field: &str, value: &'a str) -> Result<&'a str, LedgerError> {
    if value.len() > TEXT_BYTES_MAX {
        return Err(LedgerError::invalid(
            field,
            format!(
                "is {} bytes long; at most {TEXT_BYTES_MAX} are allowed",
                value.len()
            ),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(credits("cap", 0).is_ok());
        assert!(credits("cap", VALUE_MAX).is_ok());
        assert!(credits("cap", VALUE_MAX + 1).is_err());
        assert!(credits("cap", -1).is_err());
        assert!(credits("cap", i64::MIN).is_err());
        assert!(interval("grant_interval", 0).is_err());
        assert!(interval("grant_interval", 1).is_ok());
        let err = credits("cap", -5).unwrap_err().to_string();
        assert!(err.starts_with("cap: -5 is not a credit amount"), "{err}");
    }

    #[test]
    fn names() {
        assert!(name("user", "", false).is_err());
        assert!(name("server", "", true).is_ok());
        assert!(name("user", "Jürgen 😀", false).is_ok());
        assert!(name("user", "a\nb", false).is_err());
        assert!(name("user", &"x".repeat(256), false).is_err());
    }
}
