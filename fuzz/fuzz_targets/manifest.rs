//! `model.toml` text → `Manifest::parse`: any input is a manifest or a `BundleError`, never a
//! panic.
#![no_main]

use std::path::Path;

use clipsight::model::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = Manifest::parse(text, Path::new("fuzz/model.toml")) {
        // What a loaded bundle does next with a valid manifest.
        let _ = manifest.fingerprint();
        let _ = manifest.files();
    }
});
