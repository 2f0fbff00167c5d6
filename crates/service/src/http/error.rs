//! The API's one error type: every error is `{"status": N, "message": "..."}`
//! with a message that says what to fix. Internal details are logged, never
//! sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use credit_ledger::LedgerError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a value is out of range; nothing changed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such user, pool, project or server.
    #[error("{0}")]
    NotFound(String),
    /// 503: the database or the hub can't be reached; try again.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug; the detail is logged.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(detail, "internal error");
                "internal error; the service log has the details".to_string()
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({"status": status.as_u16(), "message": message});
        (status, Json(body)).into_response()
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Invalid { .. } | LedgerError::AboveCap { .. } => {
                Self::BadRequest(error.to_string())
            }
            LedgerError::UnknownUser(_)
            | LedgerError::UnknownPool { .. }
            | LedgerError::UnknownProject(_)
            | LedgerError::UnknownServer(_) => Self::NotFound(error.to_string()),
            LedgerError::Busy(_) => Self::Unavailable(error.to_string()),
            LedgerError::Database(e) => {
                tracing::warn!(error = %e, "database error");
                Self::Unavailable("the credit database can't be reached; try again shortly".into())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The API's result type.
pub type ApiResult<T> = Result<T, ApiError>;
