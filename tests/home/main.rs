//! The home monitor's integration tests: a real mosquitto on loopback, a loopback HTTP
//! server, a child process killed to test the last will, and TLS to both with a test CA made
//! by `openssl`. One binary, a module per topic; `cargo test mqtt`, `cargo test webhook` and
//! `cargo test tls` select them.

mod common;
mod mqtt;
mod replay;
mod secrets;
mod tls;
mod webhook;
