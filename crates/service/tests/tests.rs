//! Integration tests of the service against a stub hub.
