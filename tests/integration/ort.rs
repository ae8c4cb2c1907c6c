//! The onnxruntime backend (`--backend ort`) through the real CLI, against tract on the same
//! model and photos. onnxruntime is opened at run time from `ORT_DYLIB_PATH`; CI installs the
//! library from the Python registry and sets `CLIPSIGHT_REQUIRE_ORT=1`, which makes a missing
//! library a failure. Without it (a developer machine), the tests say they skipped, and why.

use std::path::PathBuf;

use crate::common::*;

/// onnxruntime's library, or `None` (after saying why) when this machine has none.
fn ort_library() -> Option<PathBuf> {
    let required = std::env::var("CLIPSIGHT_REQUIRE_ORT").is_ok_and(|v| v == "1");
    match std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        other => {
            let why = match other {
                Some(p) => format!("ORT_DYLIB_PATH={} is not a file", p.display()),
                None => "ORT_DYLIB_PATH is not set".to_string(),
            };
            assert!(!required, "CLIPSIGHT_REQUIRE_ORT=1 but {why}");
            eprintln!("skipped: no onnxruntime library ({why}); set ORT_DYLIB_PATH to run it");
            None
        }
    }
}

fn classify(backend: &str, lib: &PathBuf) -> Vec<serde_json::Value> {
    let out = bin()
        .env("ORT_DYLIB_PATH", lib)
        .args([
            "classify",
            "--json",
            "--top",
            "3",
            "--backend",
            backend,
            "--model",
        ])
        .arg(root().join("models/default"))
        .arg("--bank")
        .arg(root().join("prompts/banks/coco80.safetensors"))
        .args(
            ["dog.jpg", "bus.jpg", "giraffe.jpg", "person.jpg"]
                .map(|p| fixtures().join("photos").join(p)),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{backend}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn classify_with_the_ort_backend_agrees_with_tract() {
    let Some(lib) = ort_library() else { return };
    let (tract, ort) = (classify("tract", &lib), classify("ort", &lib));
    assert_eq!(tract.len(), 4);
    assert_eq!(ort.len(), 4);
    for (a, b) in tract.iter().zip(&ort) {
        let (la, lb) = (&a["labels"], &b["labels"]);
        assert_eq!(la[0]["label"], lb[0]["label"], "{a}\n{b}");
        for (x, y) in la.as_array().unwrap().iter().zip(lb.as_array().unwrap()) {
            let (zx, zy) = (x["z"].as_f64().unwrap(), y["z"].as_f64().unwrap());
            assert!((zx - zy).abs() < 0.05, "z {zx} vs {zy}: {a}\n{b}");
        }
    }
}

#[test]
fn a_missing_ort_library_is_a_clear_error() {
    let out = bin()
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args(["classify", "--backend", "ort", "--model"])
        .arg(root().join("models/default"))
        .arg("--bank")
        .arg(root().join("prompts/banks/coco80.safetensors"))
        .arg(fixtures().join("photos/dog.jpg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
}

/// The same spoken sentences from `run --backend ort` as from tract on the example frames.
#[test]
fn run_with_the_ort_backend_says_what_tract_says() {
    let Some(lib) = ort_library() else { return };
    let said = |backend: &str| {
        let out = bin()
            .env("ORT_DYLIB_PATH", &lib)
            .args([
                "run",
                "--speaker",
                "log",
                "--fps",
                "4",
                "--backend",
                backend,
                "--model",
            ])
            .arg(root().join("models/default"))
            .arg("--bank")
            .arg(root().join("prompts/banks/objects.safetensors"))
            .arg("--bank")
            .arg(root().join("prompts/banks/hazards.safetensors"))
            .arg("--source")
            .arg(root().join("examples/frames"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|l| l.split_once("say [").map(|(_, s)| s.to_string()))
            .collect::<Vec<_>>()
    };
    let (tract, ort) = (said("tract"), said("ort"));
    assert!(tract.len() >= 3, "{tract:?}");
    assert_eq!(tract, ort);
}
