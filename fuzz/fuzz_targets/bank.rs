//! Prompt-bank file bytes (safetensors) → `Bank::from_bytes` (what `Bank::load` runs): a bank
//! or an error message, never a panic; a loaded bank can be matched against.
#![no_main]

use clipsight::prompts::bank::Bank;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bank) = Bank::from_bytes(data) {
        assert!(!bank.is_empty() && bank.dim() > 0);
        // What the pipeline does with a bank on every frame.
        let image = vec![1.0 / (bank.dim() as f32).sqrt(); bank.dim()];
        let mut cos = vec![0.0; bank.len()];
        bank.cosines(&image, &mut cos);
        for (e, c) in bank.entries.iter().zip(&cos) {
            let _ = e.z(*c);
            let _ = e.z_threshold();
        }
        let _ = bank.embedding(bank.len() - 1);
    }
});
