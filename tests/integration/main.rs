//! clipsight's integration tests: one binary, a module per topic.

mod alloc;
mod cli;
mod common;
mod parity;
