//! The ledger's integration tests: one binary, a module per area. Every
//! behavioural test runs on SQLite and on PostgreSQL (127.0.0.1:5432, or
//! `CREDIT_TEST_POSTGRES_URL`); each run creates and drops its own database.

mod harness;

mod admin;
mod admission;
mod billing;
mod concurrency;
mod config;
mod durability;
mod properties;
