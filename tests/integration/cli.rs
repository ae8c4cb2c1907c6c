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
    copy_bundle(&tiny_model(), dir.path());
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
    copy_bundle(&tiny_model(), dir.path());
    let onnx = dir.path().join("image.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&onnx, bytes).unwrap();
    let err = clipsight::model::Bundle::load(dir.path())
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
    let bank = clipsight::prompts::bank::Bank::load(&bank_path).unwrap();
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
    }
    // The sentences: the default one for each category, or the entry's own `say`.
    let says: Vec<_> = bank.entries.iter().map(|e| e.say.as_str()).collect();
    assert_eq!(
        says,
        [
            "Dog.",
            "Caution: stairs going down.",
            "Someone is lying on the floor."
        ]
    );
    assert_eq!(bank.entries[1].category, clipsight::types::Category::Hazard);
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

/// A PNG whose header claims 100000 × 100000 pixels (a decompression bomb): a few bytes on
/// disk, 30 GB if decoded.
fn bomb_png() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc.to_be_bytes());
    // One small IDAT (an empty zlib stream): decoders read the header only when they reach it.
    let mut idat = b"IDAT".to_vec();
    idat.extend_from_slice(&[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    png.extend_from_slice(&8u32.to_be_bytes());
    png.extend_from_slice(&idat);
    png.extend_from_slice(&crc32(&idat).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0]);
    png.extend_from_slice(b"IEND\xaeB`\x82");
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Peak resident memory of the children this process has waited for, in bytes.
fn children_max_rss() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn classify_names_every_bad_input_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty.jpg"), b"").unwrap();
    std::fs::write(d.join("notes.jpg"), b"shopping list: milk, eggs\n").unwrap();
    std::fs::create_dir(d.join("folder.jpg")).unwrap();
    std::fs::write(d.join("bomb.png"), bomb_png()).unwrap();
    let jpg = std::fs::read(photo("bus.jpg")).unwrap();
    std::fs::write(d.join("truncated.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    // A JPEG start, garbage where the headers should be, and a proper end marker.
    let mut corrupt = vec![0xFF, 0xD8, 0xFF, 0xE0];
    corrupt.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    corrupt.extend_from_slice(&[0xFF, 0xD9]);
    std::fs::write(d.join("corrupt.jpg"), &corrupt).unwrap();
    let cases = [
        ("empty.jpg", "empty file"),
        ("notes.jpg", "not a recognized image format"),
        ("folder.jpg", "is a directory"),
        ("bomb.png", "image too large: 100000×100000"),
        ("truncated.jpg", "truncated"),
        ("corrupt.jpg", "cannot decode"),
        ("missing.jpg", "cannot read"),
    ];
    let mut cmd = bin();
    cmd.args(["classify", "--json", "--model"])
        .arg(root().join("models/default"))
        .arg("--bank")
        .arg(root().join("prompts/banks/coco80.safetensors"));
    for (f, _) in &cases {
        cmd.arg(d.join(f));
    }
    cmd.arg(photo("dog.jpg"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "an error exit, not a crash");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len() + 1, "{stdout}");
    for ((file, want), line) in cases.iter().zip(&lines) {
        let err = line["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: {line}"));
        assert!(err.contains(file) && err.contains(want), "{file}: {err}");
    }
    assert_eq!(lines[cases.len()]["labels"][0]["label"], "dog");
    // A garbage bank, and a manifest with an unknown key: named errors, no panic.
    std::fs::write(
        d.join("garbage.safetensors"),
        b"\x10\0\0\0\0\0\0\0{not json at all",
    )
    .unwrap();
    let out = bin()
        .args(["classify", "--model"])
        .arg(root().join("models/default"))
        .arg("--bank")
        .arg(d.join("garbage.safetensors"))
        .arg(photo("dog.jpg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("garbage.safetensors: not a clipsight prompt bank"),
        "{stderr}"
    );
    let model = d.join("model");
    copy_bundle(&root().join("models/default"), &model);
    let manifest = model.join("model.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("[embedding]", "[embedding]\nnormalise = true");
    std::fs::write(&manifest, text).unwrap();
    let out = bin()
        .args(["classify", "--model"])
        .arg(&model)
        .arg("--bank")
        .arg(root().join("prompts/banks/coco80.safetensors"))
        .arg(photo("dog.jpg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("model.toml") && stderr.contains("normalise"),
        "{stderr}"
    );
    // Every run above (and any other test's child so far): bounded memory.
    assert!(
        children_max_rss() < 1_500_000_000,
        "peak RSS {} bytes",
        children_max_rss()
    );
}

#[test]
fn run_refuses_an_unknown_config_key_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wearable.toml");
    std::fs::write(&config, "model = \"m\"\n[voice]\nvolume = 80\nspeed = 2\n").unwrap();
    let out = bin()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("wearable.toml") && stderr.contains("speed"),
        "{stderr}"
    );
}

/// `bench --kernels`: every matrix product of the shipped encoder and of the tiny one is named
/// with the kernel tract picks on this CPU, and none runs slower than the CPU allows.
#[test]
fn bench_kernels_names_the_kernel_of_every_matrix_product() {
    // (bundle, matrix products in its graph: a fact of the model, not of the CPU)
    for (model, products) in [(tiny_model(), 14), (root().join("models/default"), 36)] {
        let out = bin()
            .args(["bench", "--kernels", "--json", "--model"])
            .arg(&model)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: {stdout} {}",
                model.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let rows = report["products"].as_array().unwrap();
        assert_eq!(rows.len(), products, "{}: {report}", model.display());
        for row in rows {
            assert!(!row["kernel"].as_str().unwrap().is_empty(), "{row}");
            assert!(row["accumulator"] == "f32", "{row}");
            assert!(row["problem"].is_null(), "{}: {row}", model.display());
        }
        assert_eq!(report["unlowered"], serde_json::json!([]));
        assert!(out.status.success(), "{}", model.display());
        assert!(report["cpu"]
            .as_str()
            .unwrap()
            .starts_with(std::env::consts::ARCH));
    }
}

/// The int8 form of the tiny encoder (`models/quantize`): every product with a constant weight
/// runs on an int8 kernel (none falls back to float), and none is slower than the CPU allows.
#[test]
fn bench_kernels_shows_an_int8_encoder_on_int8_kernels() {
    let out = bin()
        .args(["bench", "--kernels", "--json", "--model"])
        .arg(tiny_model())
        .arg("--onnx")
        .arg(fixtures().join("tiny-clip-int8.onnx"))
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let rows = report["products"].as_array().unwrap();
    let int8 = rows.iter().filter(|r| r["accumulator"] == "i32").count();
    // 10 weight products (patch embedding, 2 × 4 per layer, projection); the 4 attention
    // products multiply two activations and stay in f32.
    assert_eq!((rows.len(), int8), (14, 10), "{report}");
    for row in rows {
        assert!(row["problem"].is_null(), "{row}");
    }
    assert!(out.status.success());
}
