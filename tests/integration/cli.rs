//! The `classify` and `embed-prompts` commands, driven as a user would.

use crate::common::*;

fn photo(name: &str) -> std::path::PathBuf {
    fixtures().join("photos").join(name)
}

#[test]
fn classify_reports_bad_files_and_classifies_the_rest() {
    let bank = tiny_bank("prompts/coco80.toml");
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.jpg");
    let bytes = std::fs::read(photo("dog.jpg")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let missing = dir.path().join("missing.jpg");
    let out = bin()
        .args(["classify", "--json", "--top", "2", "--model"])
        .arg(tiny_model())
        .arg("--bank")
        .arg(&bank)
        .arg(&truncated)
        .arg(&missing)
        .arg(photo("bus.jpg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let err0 = lines[0]["error"].as_str().unwrap();
    assert!(err0.contains("truncated.jpg"), "{err0}");
    let err1 = lines[1]["error"].as_str().unwrap();
    assert!(err1.contains("missing.jpg"), "{err1}");
    let labels = lines[2]["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 2);
    let p0 = labels[0]["score"].as_f64().unwrap();
    let p1 = labels[1]["score"].as_f64().unwrap();
    assert!(p0 >= p1 && p0 > 0.0 && p0 <= 1.0);
}

#[test]
fn classify_text_output_names_each_error() {
    let bank = tiny_bank("prompts/coco80.toml");
    let out = bin()
        .args(["classify", "--model"])
        .arg(tiny_model())
        .arg("--bank")
        .arg(&bank)
        .arg(root().join("Cargo.toml"))
        .arg(photo("giraffe.jpg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("giraffe.jpg: "), "{stdout}");
    assert!(
        stderr.contains("Cargo.toml: not a recognized image format"),
        "{stderr}"
    );
}

#[test]
fn a_bank_from_another_model_is_refused_naming_both() {
    let bank = tiny_bank("prompts/coco80.toml");
    // The same files under another id: a different model as far as banks are concerned.
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(tiny_model()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let manifest = dir.path().join("model.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("id = \"clipsight-tiny-test\"", "id = \"other-model\""),
    )
    .unwrap();
    let out = bin()
        .args(["classify", "--model"])
        .arg(dir.path())
        .arg("--bank")
        .arg(&bank)
        .arg(photo("dog.jpg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("clipsight-tiny-test") && stderr.contains("other-model"),
        "{stderr}"
    );
}

#[test]
fn a_tampered_model_file_is_refused_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(tiny_model()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let onnx = dir.path().join("image.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&onnx, bytes).unwrap();
    let err = clipsight::bundle::Bundle::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image.onnx") && err.contains("sha256 mismatch"),
        "{err}"
    );
}

#[test]
fn embed_prompts_writes_a_calibrated_bank() {
    let bank_path = tiny_bank("tests/fixtures/prompts-small.toml");
    let bank = clipsight::bank::Bank::load(&bank_path).unwrap();
    assert_eq!(bank.model.id, "clipsight-tiny-test");
    let labels: Vec<_> = bank.entries.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(
        labels,
        ["dog", "stairs going down", "person lying on the floor"]
    );
    for (i, e) in bank.entries.iter().enumerate() {
        let norm: f32 = bank.embedding(i).iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(e.threshold > e.neg_mean && e.neg_std > 0.0);
        assert!(e.say.contains(&e.label) || !e.say.is_empty());
    }
    assert_eq!(
        bank.entries[1].category,
        clipsight::prompts::Category::Hazard
    );
    assert!(bank.entries[1].say.contains("stairs going down"));
}

/// ImageNet-covered dominant-object photos of coco-train128 (see the default bundle's model
/// card), as the 224-px copies in prompts/calibration/, with their dominant COCO class.
const COVERED: &[(&str, &str)] = &[
    ("000000000034", "zebra"),
    ("000000000042", "dog"),
    ("000000000073", "motorcycle"),
    ("000000000081", "airplane"),
    ("000000000089", "oven"),
    ("000000000143", "bird"),
    ("000000000194", "pizza"),
    ("000000000208", "sink"),
    ("000000000263", "elephant"),
    ("000000000349", "train"),
    ("000000000387", "laptop"),
    ("000000000400", "boat"),
    ("000000000471", "bus"),
    ("000000000502", "bear"),
    ("000000000510", "bench"),
    ("000000000514", "bed"),
    ("000000000532", "bus"),
    ("000000000575", "cat"),
    ("000000000605", "dining table"),
    ("000000000636", "toilet"),
];

#[test]
fn the_default_bundle_names_real_photos() {
    let mut cmd = bin();
    cmd.args(["classify", "--json", "--top", "3", "--model"])
        .arg(root().join("models/default"))
        .arg("--bank")
        .arg(root().join("prompts/banks/coco80.safetensors"));
    for (id, _) in COVERED {
        cmd.arg(root().join(format!("prompts/calibration/{id}.jpg")));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut top1 = 0;
    for ((id, want), line) in COVERED.iter().zip(stdout.lines()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["image"].as_str().unwrap().contains(id));
        let labels: Vec<&str> = v["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["label"].as_str().unwrap())
            .collect();
        assert!(
            labels.contains(want),
            "{id}: {want} not in the top 3 {labels:?}"
        );
        if labels[0] == *want {
            top1 += 1;
        }
    }
    let rate = top1 as f64 / COVERED.len() as f64;
    eprintln!("top-1 {top1}/{}", COVERED.len());
    assert!(rate >= 0.8, "top-1 {top1}/{}", COVERED.len());
}
