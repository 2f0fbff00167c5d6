//! Every bound the ledger enforces, in one place, with the reason for each.

/// The largest credit amount or interval accepted anywhere: 2^53 - 1, so that
/// a JSON client holding numbers as doubles never loses precision.
pub const VALUE_MAX: i64 = (1 << 53) - 1;

/// The longest grant or billing interval, in seconds. Equal to [`VALUE_MAX`];
/// in milliseconds it still fits an `i64` (2^53 * 1000 < 2^63).
pub const INTERVAL_SECS_MAX: i64 = VALUE_MAX;

/// How many named pools one user may hold (rule 9). Matching walks them in
/// order on every spawn, so the list stays short.
pub const POOLS_PER_USER_MAX: usize = 64;

/// Longest user, server, pool or project name, in bytes.
pub const NAME_BYTES_MAX: usize = 255;

/// Longest admin reason or actor text, in bytes.
pub const TEXT_BYTES_MAX: usize = 1024;

/// Largest `user_options` document or pattern stored, in bytes of JSON.
pub const OPTIONS_BYTES_MAX: usize = 64 * 1024;

/// Largest page of a listing or journal.
pub const PAGE_SIZE_MAX: i64 = 1000;

/// Servers settled in one billing transaction; a larger backlog is settled in
/// several transactions so that none holds its locks for long.
pub const BILLING_BATCH_MAX: i64 = 20_000;

/// How long a stopped server's reason stays in the user's view.
pub const RECENT_STOP_SECS: i64 = 24 * 3600;

/// How often a transaction that lost a race (deadlock, serialization
/// failure, busy database) is tried again before the error reaches the caller.
pub const TRANSACTION_ATTEMPTS_MAX: u32 = 8;

const _: () = assert!(INTERVAL_SECS_MAX.checked_mul(1000).is_some());
const _: () = assert!(BILLING_BATCH_MAX > 0 && PAGE_SIZE_MAX > 0);
