//! The home monitor's integration tests: a real mosquitto on loopback, a loopback HTTP
//! server, a child process killed to test the last will. One binary, a module per topic;
//! `cargo test mqtt` and `cargo test webhook` select them.

mod common;
mod mqtt;
mod replay;
mod secrets;
mod webhook;
