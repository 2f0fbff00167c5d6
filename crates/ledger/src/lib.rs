//! The credit ledger of jupyterhub-credit-service.
//!
//! [`Ledger`] holds every rule of the design's §3 over a durable store
//! (SQLite or PostgreSQL): user and project pools whose grants are computed
//! from the clock, admission of spawns against promised credits, billing of
//! running servers period by period with an idempotency key per period, admin
//! adjustments, and a journal whose sum is every pool's balance.
//!
//! - [`rules`] — the rules as pure functions (grants, billing, admission,
//!   `user_options` matching, validation). No IO.
//! - [`Ledger`] (in `ops`) — one transaction per operation over the store.
//! - [`model`] — the inputs and views callers see.
//! - [`clock`] — the injected clock; tests walk through days in microseconds.
//!
//! Nothing here speaks HTTP; the service crate does.
#![deny(missing_docs)]

pub mod clock;
pub mod error;
pub mod limits;
pub mod model;
mod ops;
pub mod rules;
mod store;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use error::{LedgerError, Result};
pub use model::*;
pub use ops::Ledger;
pub use store::Backend;
