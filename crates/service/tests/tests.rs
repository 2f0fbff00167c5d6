//! Integration tests of the service against a stub hub.
//!
//! Each test starts its own stub hub (`stub_hub`), its own database and a
//! manual clock (`harness`), and drives the service's router directly.

mod harness;
mod stub_hub;

mod authz;
mod bad_input;
mod billing_round;
mod events;
mod ops;
mod plugin_api;
