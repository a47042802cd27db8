//! # nodegrid
//!
//! Internode traffic for clusters: each pair of nodes keeps one long-lived, two-way WebSocket
//! connection over which both sides make many concurrent single requests and flow-controlled
//! streams. The wire format is MinIO's internode "grid" protocol v1, so a nodegrid node can talk
//! to a MinIO node.
//!
//! This crate is layered as `wire` (bytes ↔ messages, pure), `proto` (state machines, no I/O),
//! `transport` (tokio and WebSocket) and the public `Manager` / `Connection` API on top.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod wire;
