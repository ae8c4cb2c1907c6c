//! `run` config TOML → `RunConfig::parse` (and the pipeline settings built from it): a config
//! or a `ConfigError`, never a panic.
#![no_main]

use std::path::Path;

use clipsight::cli::config::RunConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = RunConfig::parse(text, Path::new("fuzz/clipsight.toml")) {
        let _ = config.pipeline();
    }
});
