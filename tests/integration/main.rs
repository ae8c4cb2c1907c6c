//! clipsight's integration tests: one binary, a module per topic.

mod alloc;
mod bombs;
mod cli;
mod common;
mod faults;
mod live;
mod ort;
mod parity;
mod pose;
mod precision;
mod privacy;
mod service;
mod speechd;
mod teach;
