//! Prompt-set TOML → `PromptSet::parse`: a validated set or a `PromptSetError`, never a panic.
#![no_main]

use std::path::Path;

use clipsight::prompts::PromptSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = PromptSet::parse(text, Path::new("fuzz/prompts.toml")) {
        assert!(!set.prompts.is_empty());
        for p in &set.prompts {
            assert!(!p.label.is_empty() && !p.texts.is_empty() && !p.say.trim().is_empty());
        }
    }
});
