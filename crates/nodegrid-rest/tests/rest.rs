//! Integration tests of the REST path against real servers on 127.0.0.1.
//!
//! One test binary (the modules below) so the crate links once.

#[path = "rest/common.rs"]
mod common;

#[path = "rest/transfer.rs"]
mod transfer;

#[path = "rest/offline.rs"]
mod offline;

#[path = "rest/calls.rs"]
mod calls;

#[path = "rest/tls.rs"]
mod tls;

#[path = "rest/secrets.rs"]
mod secrets;
