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
    let mut args: Vec<std::ffi::OsString> = vec!["--top".into(), "3".into(), "--bank".into()];
    args.push(root().join("prompts/banks/coco80.safetensors").into());
    args.extend(
        ["dog.jpg", "bus.jpg", "giraffe.jpg", "person.jpg"]
            .map(|p| fixtures().join("photos").join(p).into_os_string()),
    );
    classify_lines(backend, lib, &args)
}

/// `classify --json --backend BACKEND --model models/default ARGS...`: one JSON value a line.
fn classify_lines(
    backend: &str,
    lib: &PathBuf,
    args: &[std::ffi::OsString],
) -> Vec<serde_json::Value> {
    let out = bin()
        .env("ORT_DYLIB_PATH", lib)
        .args(["classify", "--json", "--backend", backend, "--model"])
        .arg(root().join("models/default"))
        .args(args)
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

// Execution providers (issue 17). The library CI installs (the CPU wheel from the Python
// registry) has only the CPU provider, so "cuda" is a provider it lacks.

/// `classify --json --embeddings` on the ort backend with `flags`: the output, and the
/// embeddings of the photos when it succeeded.
fn classify_with(lib: &PathBuf, flags: &[&str]) -> (std::process::Output, Vec<Vec<f32>>) {
    let out = bin()
        .env("ORT_DYLIB_PATH", lib)
        .env_remove("RUST_LOG")
        .args([
            "-v",
            "classify",
            "--json",
            "--embeddings",
            "--backend",
            "ort",
        ])
        .args(flags)
        .arg("--model")
        .arg(root().join("models/default"))
        .arg("--bank")
        .arg(root().join("prompts/banks/coco80.safetensors"))
        .args(["dog.jpg", "bus.jpg"].map(|p| fixtures().join("photos").join(p)))
        .output()
        .unwrap();
    let embeddings = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            floats(&v["embedding"])
        })
        .collect();
    (out, embeddings)
}

/// The line that says where the graph runs.
fn runs_on(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("onnxruntime runs"))
        .unwrap_or_else(|| panic!("no \"onnxruntime runs\" line in:\n{stderr}"))
}

#[test]
fn issue_17_the_cpu_provider_runs_and_is_named() {
    let Some(lib) = ort_library() else { return };
    let (out, embeddings) = classify_with(&lib, &["--ep", "cpu"]);
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(runs_on(&stderr).contains(" on CPU"), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert_eq!(embeddings.len(), 2);
    assert!(embeddings.iter().all(|e| e.len() == 384), "{embeddings:?}");
    // bench reports it.
    let out = run_ok(
        bin()
            .env("ORT_DYLIB_PATH", &lib)
            .args(["bench", "--json", "--iters", "2", "--warmup", "0"])
            .args(["--replay-fps", "0", "--backend", "ort", "--ep", "cpu"])
            .arg("--model")
            .arg(root().join("models/default"))
            .arg("--photos")
            .arg(fixtures().join("photos")),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["execution_provider"], "CPU", "{report}");
}

#[test]
fn issue_17_prefer_falls_back_from_a_missing_provider_to_cpu() {
    let Some(lib) = ort_library() else { return };
    let (plain, cpu) = classify_with(&lib, &[]);
    succeeded(&plain);
    let (out, fallback) = classify_with(&lib, &["--ep", "cuda", "--ep", "cpu"]);
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if runs_on(&stderr).contains(" on CUDA") {
        eprintln!("skipped: {} has the CUDA provider", lib.display());
        return;
    }
    let warning = stderr
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(warning.contains("no CUDA execution provider"), "{warning}");
    assert!(warning.contains("skipping cuda"), "{warning}");
    assert!(warning.contains(&*lib.to_string_lossy()), "{warning}");
    assert!(runs_on(&stderr).contains(" on CPU"), "{stderr}");
    assert_eq!(cpu.len(), 2);
    assert_eq!(fallback.len(), 2);
    for (a, b) in cpu.iter().zip(&fallback) {
        assert!(max_abs_diff(a, b) < 1e-6, "{a:?}\n{b:?}");
    }
}

#[test]
fn issue_17_require_stops_on_a_missing_provider_naming_it_and_the_library() {
    let Some(lib) = ort_library() else { return };
    let (out, embeddings) = classify_with(&lib, &["--ep", "cuda", "--ep-policy", "require"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("onnxruntime runs") && runs_on(&stderr).contains(" on CUDA") {
        eprintln!("skipped: {} has the CUDA provider", lib.display());
        return;
    }
    assert!(!out.status.success(), "{stderr}");
    assert!(embeddings.is_empty());
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(
        error.contains(&format!(
            "onnxruntime {} has no CUDA execution provider",
            lib.display()
        )),
        "{error}"
    );
    assert!(error.contains("available: CPU"), "{error}");
}

#[test]
fn issue_17_providers_are_refused_with_tract() {
    let out = bin()
        .args(["classify", "--ep", "cuda", "--model"])
        .arg(root().join("models/default"))
        .arg("--bank")
        .arg(root().join("prompts/banks/coco80.safetensors"))
        .arg(fixtures().join("photos/dog.jpg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not tract") && stderr.contains("--backend ort"),
        "{stderr}"
    );
}

/// The sentences `run --speaker wav` writes on the README's example frames (fps 2).
fn spoken_on_the_example_frames(lib: &PathBuf, flags: &[&str]) -> Vec<String> {
    let speech = tempfile::tempdir().unwrap();
    run_ok(
        bin()
            .env("ORT_DYLIB_PATH", lib)
            .args(["run", "--speaker", "wav", "--fps", "2", "--speech-dir"])
            .arg(speech.path())
            .args(flags)
            .arg("--model")
            .arg(root().join("models/default"))
            .arg("--bank")
            .arg(root().join("prompts/banks/objects.safetensors"))
            .arg("--bank")
            .arg(root().join("prompts/banks/hazards.safetensors"))
            .arg("--source")
            .arg(root().join("examples/frames")),
    );
    spoken(speech.path())
}

#[test]
fn issue_17_run_on_the_cpu_provider_writes_what_tract_writes() {
    let Some(lib) = ort_library() else { return };
    let tract = spoken_on_the_example_frames(&lib, &[]);
    let ort = spoken_on_the_example_frames(&lib, &["--backend", "ort", "--ep", "cpu"]);
    assert!(tract.len() >= 3, "{tract:?}");
    assert_eq!(tract, ort);
}

#[test]
fn issue_17_the_run_config_gives_the_providers() {
    let Some(lib) = ort_library() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        "backend = \"ort\"\n[ort]\nproviders = [\"cuda\", \"cpu\"]\nprovider_policy = \"require\"\n",
    )
    .unwrap();
    let run = |flags: &[&str]| {
        bin()
            .env("ORT_DYLIB_PATH", &lib)
            .env_remove("RUST_LOG")
            .args([
                "-v",
                "run",
                "--speaker",
                "log",
                "--duration",
                "1",
                "--config",
            ])
            .arg(&config)
            .args(flags)
            .arg("--model")
            .arg(root().join("models/default"))
            .arg("--bank")
            .arg(root().join("prompts/banks/objects.safetensors"))
            .arg("--source")
            .arg(root().join("examples/frames"))
            .output()
            .unwrap()
    };
    // The file's policy: CUDA is required, and this library lacks it.
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("onnxruntime runs") && runs_on(&stderr).contains(" on CUDA") {
        eprintln!("skipped: {} has the CUDA provider", lib.display());
        return;
    }
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no CUDA execution provider"), "{stderr}");
    // The flag overrides the file's policy, keeping its providers.
    let out = run(&["--ep-policy", "prefer"]);
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipping cuda"), "{stderr}");
    assert!(runs_on(&stderr).contains(" on CPU"), "{stderr}");
    // With tract the section does not apply.
    succeeded(&run(&["--backend", "tract"]));
}

/// With `CLIPSIGHT_ORT_OPENVINO` naming the library of an onnxruntime build with the OpenVINO
/// provider (the `onnxruntime-openvino` wheel from the Python registry bundles OpenVINO and
/// runs on an x86_64 CPU): a real second provider registers, runs the graph, and agrees with
/// the CPU provider; a device the machine lacks falls back (prefer) or stops (require).
/// Skipped without it (CI installs only the CPU build).
#[test]
fn issue_17_a_real_openvino_provider_runs_and_agrees_with_cpu() {
    let Some(lib) = std::env::var_os("CLIPSIGHT_ORT_OPENVINO").map(PathBuf::from) else {
        eprintln!("skipped: CLIPSIGHT_ORT_OPENVINO is not set");
        return;
    };
    let (out, cpu) = classify_with(&lib, &["--ep", "cpu"]);
    succeeded(&out);
    let (out, ov) = classify_with(&lib, &["--ep", "openvino:CPU", "--ep-policy", "require"]);
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(runs_on(&stderr).contains(" on OpenVINO"), "{stderr}");
    assert_eq!(cpu.len(), 2);
    assert_eq!(ov.len(), 2);
    for (a, b) in cpu.iter().zip(&ov) {
        assert!(cosine(a, b) > 0.9999, "{a:?}\n{b:?}");
    }
    // No NPU here (a machine with one would run it).
    let (out, _) = classify_with(&lib, &["--ep", "openvino:NPU", "--ep", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if runs_on(&stderr).contains(" on OpenVINO") {
        eprintln!("this machine has an NPU: the fallback was not exercised");
        return;
    }
    succeeded(&out);
    assert!(stderr.contains("skipping openvino:NPU"), "{stderr}");
    let (out, _) = classify_with(&lib, &["--ep", "openvino:NPU", "--ep-policy", "require"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the OpenVINO (NPU) execution provider cannot start"),
        "{stderr}"
    );
}

/// The pose stage on `--backend ort` (the image encoder's runtime is the person model's too):
/// the same people, postures and `fallen` verdicts as tract, keypoints within a pixel, on a
/// standing person and the same photo turned a quarter (lying on the floor).
#[test]
fn the_pose_stage_on_the_ort_backend_agrees_with_tract() {
    let Some(lib) = ort_library() else { return };
    let dir = tempfile::tempdir().unwrap();
    let lying = dir.path().join("lying.png");
    image::open(fixtures().join("photos/person.jpg"))
        .unwrap()
        .rotate90()
        .save(&lying)
        .unwrap();
    let args: Vec<std::ffi::OsString> = vec![
        "--person-model".into(),
        root().join("models/person").into(),
        "--bank".into(),
        root().join("prompts/banks/home.safetensors").into(),
        fixtures().join("photos/person.jpg").into(),
        lying.into(),
    ];
    let classify = |backend: &str| classify_lines(backend, &lib, &args);
    let (tract, ort) = (classify("tract"), classify("ort"));
    assert_eq!(tract.len(), 2);
    assert_eq!(ort.len(), 2);
    let fallen: Vec<_> = tract.iter().map(|r| r["fallen"].as_bool()).collect();
    assert_eq!(fallen, [Some(false), Some(true)], "{tract:?}");
    for (a, b) in tract.iter().zip(&ort) {
        assert_eq!(a["fallen"], b["fallen"], "{a}\n{b}");
        let (pa, pb) = (
            a["people"].as_array().unwrap(),
            b["people"].as_array().unwrap(),
        );
        assert!(!pa.is_empty(), "{a}");
        assert_eq!(pa.len(), pb.len(), "{a}\n{b}");
        for (x, y) in pa.iter().zip(pb) {
            assert_eq!(x["posture"], y["posture"], "{x}\n{y}");
            let (kx, ky) = (floats_of(&x["keypoints"]), floats_of(&y["keypoints"]));
            assert_eq!(kx.len(), ky.len());
            assert!(max_abs_diff(&kx, &ky) < 1.0, "{x}\n{y}");
            let (bx, by) = (floats(&x["box"]), floats(&y["box"]));
            assert!(max_abs_diff(&bx, &by) < 1.0, "{x}\n{y}");
        }
    }
}

/// Every number in a JSON value (a list of keypoint objects or arrays), in order.
fn floats_of(v: &serde_json::Value) -> Vec<f32> {
    match v {
        serde_json::Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        serde_json::Value::Array(a) => a.iter().flat_map(floats_of).collect(),
        serde_json::Value::Object(o) => o.values().flat_map(floats_of).collect(),
        _ => Vec::new(),
    }
}
