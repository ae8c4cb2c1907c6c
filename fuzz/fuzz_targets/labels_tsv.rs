//! `labels.tsv` text → `eval::parse_labels` (both formats: `file<TAB>label,…` as in
//! `prompts/calibration/`, or a header row with `file` and `class` columns), what `clipsight
//! eval` and `embed-prompts --calibration` read: references or a line-numbered error, never a
//! panic, and never a photo outside the folder.
#![no_main]

use std::path::Path;

use clipsight::eval::parse_labels;
use clipsight::prompts::calibrate::parse_references;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = Path::new("/fuzz/photos");
    let calibration = parse_references(dir, &dir.join("labels.tsv"), text);
    let Ok(refs) = parse_labels(dir, text) else {
        return;
    };
    for r in refs.iter().chain(calibration.iter().flatten()) {
        assert!(r.path.starts_with(dir), "{}", r.path.display());
        let name = r.path.strip_prefix(dir).unwrap_or(&r.path);
        assert!(!name.to_string_lossy().contains(".."), "{}", r.path.display());
        for l in &r.labels {
            assert_eq!(*l, l.to_lowercase());
        }
    }
});
