//! clipsight's integration tests: one binary, a module per topic.

mod cli;
mod common;
mod parity;
