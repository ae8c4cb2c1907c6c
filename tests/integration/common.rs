//! Shared helpers: fixture paths, the reference file, vector comparisons.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

pub fn tiny_model() -> PathBuf {
    fixtures().join("tiny-clip")
}

/// `tests/fixtures/reference.json`, computed by onnxruntime and PIL (see
/// `models/make_test_models.py`).
pub fn reference() -> &'static serde_json::Value {
    static REF: OnceLock<serde_json::Value> = OnceLock::new();
    REF.get_or_init(|| {
        let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (a, b) = (normalized(a), normalized(b));
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The clipsight binary built for these tests.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_clipsight"))
}

/// Runs `cmd` to its end; panics with its stderr unless it exited 0.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    succeeded(&out);
    out
}

/// Panics with the process's stderr unless it exited 0.
pub fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lines of the WAV speaker's `transcript.jsonl` in `speech_dir` (none if it is missing).
pub fn transcript(speech_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(speech_dir.join("transcript.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The sentences said, in order: the transcript without its interrupt lines.
pub fn spoken(speech_dir: &Path) -> Vec<String> {
    transcript(speech_dir)
        .iter()
        .filter(|l| !l["wav"].as_str().unwrap_or("").is_empty())
        .map(|l| l["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A bank of `prompts` made with the tiny model, built once per test run.
pub fn tiny_bank(prompts: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let name = Path::new(prompts)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let out = dir.path().join(format!("{name}.safetensors"));
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    if !out.exists() {
        run_ok(
            bin()
                .args(["embed-prompts", "--model"])
                .arg(tiny_model())
                .arg("--prompts")
                .arg(root().join(prompts))
                .arg("--calibration")
                .arg(root().join("prompts/calibration"))
                .arg("-o")
                .arg(&out),
        );
    }
    out
}

/// Copies a model bundle's files from `src` into `dst` (created if missing), to alter them.
pub fn copy_bundle(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for f in std::fs::read_dir(src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dst.join(f.file_name().unwrap())).unwrap();
    }
}
