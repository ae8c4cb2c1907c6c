//! ONNX file bytes → `vision::onnx_data::slim_model_proto`, the loader's streaming rewrite of
//! the protobuf that leaves large weights in the file: `None` or a smaller protobuf, never a
//! panic, and every reference it writes points inside the input.
#![no_main]

use std::io::Cursor;

use clipsight::vision::onnx_data::slim_model_proto;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let Ok(Some(slim)) = slim_model_proto(Cursor::new(data), len, "m.onnx") else {
        return;
    };
    // Each moved initializer drops at least 4 KiB and adds well under 100 bytes of reference.
    assert!(slim.len() < data.len(), "{} ≥ {}", slim.len(), data.len());
});
