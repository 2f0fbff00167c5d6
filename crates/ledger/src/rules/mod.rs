//! The rules of the ledger (DESIGN §3) as pure functions over plain values:
//! no IO, no clock, no database. The store loads rows, these functions decide,
//! the store writes what they return.

pub mod admission;
pub mod billing;
pub mod grant;
pub mod pattern;
pub mod validate;
