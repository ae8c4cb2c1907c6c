//! Encoded image bytes → `decode_bytes` with small limits → `Preprocessor::run` with a CLIP
//! spec (224, shortest side, bicubic) and a squash/bilinear one. A bad image is a
//! `DecodeError`, never a panic, an abort or an allocation past the limits.
#![no_main]

use std::cell::RefCell;
use std::path::Path;

use clipsight::model::{Interpolation, ResizeMode};
use clipsight::capture::decode::{decode_bytes, DecodeLimits};
use clipsight::vision::preprocess::{PreprocessSpec, Preprocessor};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 4_000_000,
    max_alloc_bytes: 64 * 1024 * 1024,
};

fn spec(size: u32, resize: ResizeMode, interpolation: Interpolation) -> PreprocessSpec {
    PreprocessSpec {
        size,
        resize,
        interpolation,
        mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
        std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
    }
}

thread_local! {
    // Reused across inputs, as the pipeline reuses them across frames (the plan cache).
    static STAGES: RefCell<Vec<(Preprocessor, Vec<f32>)>> = RefCell::new(
        [
            spec(224, ResizeMode::Shortest, Interpolation::Bicubic),
            spec(32, ResizeMode::Squash, Interpolation::Bilinear),
        ]
        .into_iter()
        .map(|s| {
            let p = Preprocessor::new(s);
            let out = vec![0.0; p.output_len()];
            (p, out)
        })
        .collect()
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(img) = decode_bytes(data, Path::new("fuzz.img"), LIMITS) else {
        return;
    };
    assert!(u64::from(img.width()) * u64::from(img.height()) <= LIMITS.max_pixels);
    STAGES.with(|stages| {
        for (pre, out) in stages.borrow_mut().iter_mut() {
            pre.run((&img).into(), out).expect("a decoded image preprocesses");
            assert!(out.iter().all(|v| v.is_finite()));
        }
    });
});
