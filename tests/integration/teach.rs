//! Your own things (issue 18): `clipsight teach` through the real CLI, and `teach`, `list`,
//! `find` and `forget` on a running device through its control socket, with the default
//! bundle, a folder source and the wav speaker. The "photos of my thing" are crops of one
//! fixture photo (a dog), as when the user holds it up to the camera; the unseen photo is the
//! whole photo.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clipsight::prompts::bank::{Bank, Source};

use crate::common::*;

fn default_model() -> PathBuf {
    root().join("models/default")
}

/// Three views of the fixture dog (left, right mirrored, centre), as photos of "my dog".
fn dog_views(dir: &Path) -> Vec<PathBuf> {
    let img = image::open(fixtures().join("photos/dog.jpg")).unwrap();
    let (w, h) = (img.width() as f32, img.height() as f32);
    [
        (0.0, 0.0, 0.8, 0.9),
        (0.2, 0.1, 1.0, 1.0),
        (0.1, 0.05, 0.9, 0.95),
    ]
    .iter()
    .enumerate()
    .map(|(i, &(l, t, r, b))| {
        let mut view = img.crop_imm(
            (l * w) as u32,
            (t * h) as u32,
            ((r - l) * w) as u32,
            ((b - t) * h) as u32,
        );
        if i == 1 {
            view = view.fliph();
        }
        let path = dir.join(format!("view{i}.jpg"));
        view.save(&path).unwrap();
        path
    })
    .collect()
}

/// `classify --json` lines for `images` with `banks`.
fn classify(banks: &[&Path], images: &[PathBuf]) -> Vec<serde_json::Value> {
    let mut cmd = bin();
    cmd.args(["classify", "--json", "--model"])
        .arg(default_model());
    for b in banks {
        cmd.arg("--bank").arg(b);
    }
    let out = run_ok(cmd.args(images));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn label<'a>(line: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    line["labels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == name)
        .unwrap_or_else(|| panic!("{name} not in {line}"))
}

#[test]
fn a_label_taught_from_photos_is_found_in_an_unseen_photo_of_it_and_not_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let views = dog_views(dir.path());
    let bank = dir.path().join("state/personal.safetensors");
    let out = run_ok(
        bin()
            .args(["teach", "--model"])
            .arg(default_model())
            .args(["--label", "my dog", "-o"])
            .arg(&bank)
            .arg("--calibration")
            .arg(root().join("prompts/calibration"))
            .args(&views),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("\"Your dog.\""), "{said}");
    // Personal data: the owner's only, and embeddings, not pictures.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bank).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!dir
        .path()
        .join("state/personal.safetensors.photos")
        .exists());
    let loaded = Bank::load(&bank).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded.entries[0].label, "my dog");
    assert!(matches!(
        loaded.entries[0].source,
        Source::Image { shots: 3, ref photos } if photos.is_empty()
    ));

    let lines = classify(
        &[&bank],
        &[
            fixtures().join("photos/dog.jpg"),
            fixtures().join("photos/bus.jpg"),
        ],
    );
    let (dog, bus) = (label(&lines[0], "my dog"), label(&lines[1], "my dog"));
    assert_eq!(dog["above_threshold"], true, "{dog}");
    assert_eq!(bus["above_threshold"], false, "{bus}");
    assert!(dog["z"].as_f64().unwrap() > bus["z"].as_f64().unwrap() + 2.0);
    let said: Vec<&str> = lines[0]["said"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sentence"].as_str().unwrap())
        .collect();
    assert_eq!(said, ["Your dog."]);

    // Teaching the same label again replaces it; --add extends it.
    run_ok(
        bin()
            .args(["teach", "--model"])
            .arg(default_model())
            .args(["--label", "my dog", "--add", "-o"])
            .arg(&bank)
            .arg(&views[0]),
    );
    let again = Bank::load(&bank).unwrap();
    assert_eq!(again.len(), 1);
    assert!(matches!(
        again.entries[0].source,
        Source::Image { shots: 4, .. }
    ));
}

#[test]
fn kept_photos_rebuild_a_personal_bank_for_a_new_model_and_the_device_says_what_needs_teaching() {
    let dir = tempfile::tempdir().unwrap();
    let views = dog_views(dir.path());
    let bank = dir.path().join("personal.safetensors");
    let teach = |label: &str, keep: bool| {
        let mut cmd = bin();
        cmd.args(["teach", "--model"])
            .arg(default_model())
            .args(["--label", label, "-o"])
            .arg(&bank)
            .args(&views);
        if keep {
            cmd.arg("--keep-photos");
        }
        run_ok(&mut cmd);
    };
    teach("my dog", true);
    teach("my other dog", false);
    assert!(dir
        .path()
        .join("personal.safetensors.photos/my-dog/001.jpg")
        .exists());

    // A run with another model refuses the bank, keeps it, and says so once.
    let speech = dir.path().join("speech");
    run_ok(
        bin()
            .args(["run", "--model"])
            .arg(tiny_model())
            .arg("--bank")
            .arg(tiny_bank("tests/fixtures/prompts-small.toml"))
            .arg("--source")
            .arg(fixtures().join("photos"))
            .args(["--fps", "20", "--speaker", "wav", "--speech-dir"])
            .arg(&speech)
            .arg("--personal-bank")
            .arg(&bank),
    );
    assert!(
        spoken(&speech)
            .contains(&"Your taught things need teaching again: dog, other dog.".to_string()),
        "{:?}",
        spoken(&speech)
    );
    assert_eq!(
        Bank::load(&bank).unwrap().len(),
        2,
        "the bank was not touched"
    );

    // --rebuild teaches the kept label again for the new model and names the other.
    let out = run_ok(
        bin()
            .args(["teach", "--rebuild", "--model"])
            .arg(tiny_model())
            .arg("-o")
            .arg(&bank),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not rebuilt") && text.contains("my other dog"),
        "{text}"
    );
    let rebuilt = Bank::load(&bank).unwrap();
    assert_eq!(rebuilt.entries.len(), 1);
    assert_eq!(rebuilt.entries[0].label, "my dog");
    assert_ne!(
        rebuilt.model,
        Bank::load(&dir.path().join("personal.safetensors.before-rebuild"))
            .unwrap()
            .model
    );
}

/// Waits until a spoken line satisfies `pred` (panics with the transcript after `limit`).
fn wait_for(speech: &Path, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if spoken(speech).iter().any(|s| pred(s)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never said {what}: {:?}", spoken(speech));
}

#[test]
fn teach_list_find_and_forget_through_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let views = dog_views(p);
    // The scene at 4 fps: the dog held up and turned (3 s); a park bench (16 s); the dog
    // coming into view from the right edge, a third of it (2 s), half (4 s), then most of it
    // (6 s), as when the user turns towards it.
    let frames = p.join("frames");
    std::fs::create_dir(&frames).unwrap();
    let bench = image::open(root().join("prompts/calibration/000000000510.jpg"))
        .unwrap()
        .resize_exact(640, 480, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let dog = image::open(fixtures().join("photos/dog.jpg")).unwrap();
    let dog = dog
        .resize(10_000, 480, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let entering = |share: f32| {
        let visible = (dog.width() as f32 * share) as u32;
        let part = image::imageops::crop_imm(&dog, 0, 0, visible, dog.height()).to_image();
        let mut scene = bench.clone();
        image::imageops::replace(&mut scene, &part, i64::from(640 - visible.min(640)), 0);
        scene
    };
    let mut n = 0;
    let mut frame = |img: &image::RgbImage, count: usize| {
        for _ in 0..count {
            img.save(frames.join(format!("{n:03}.jpg"))).unwrap();
            n += 1;
        }
    };
    for i in 0..12 {
        frame(&image::open(&views[i % 3]).unwrap().to_rgb8(), 1);
    }
    frame(&bench, 64);
    frame(&entering(0.35), 8);
    frame(&entering(0.5), 16);
    frame(&entering(0.65), 24);
    // A small calibration set without dogs keeps the first teach quick.
    let calibration = p.join("calibration");
    std::fs::create_dir(&calibration).unwrap();
    let labels = std::fs::read_to_string(root().join("prompts/calibration/labels.tsv")).unwrap();
    let mut kept = String::new();
    for line in labels
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("dog"))
        .take(24)
    {
        let file = line.split('\t').next().unwrap();
        std::fs::copy(
            root().join("prompts/calibration").join(file),
            calibration.join(file),
        )
        .unwrap();
        kept.push_str(line);
        kept.push('\n');
    }
    std::fs::write(calibration.join("labels.tsv"), kept).unwrap();
    let (speech, socket, bank) = (
        p.join("speech"),
        p.join("control.sock"),
        p.join("state/personal.safetensors"),
    );
    let config = p.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "model = {:?}\nbanks = [{:?}, {:?}]\nsource = {:?}\nfps = 4.0\nspeaker = \"wav\"\n\
             speech_dir = {:?}\npersonal_bank = {:?}\n\
             [personal]\ncalibration = {:?}\nteach_s = 2.5\nfind_timeout_s = 30.0\n\
             [controls]\nsocket = {:?}\n",
            default_model(),
            root().join("prompts/banks/hazards.safetensors"),
            root().join("prompts/banks/objects.safetensors"),
            frames,
            speech,
            bank,
            calibration,
            socket,
        ),
    )
    .unwrap();
    let child = bin()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let control = |words: &str| {
        let out = run_ok(
            bin()
                .args(["control", "--socket"])
                .arg(&socket)
                .args(words.split(' ')),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    };
    let limit = Duration::from_secs(60);
    let start = Instant::now();
    while !socket.exists() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    control("teach my dog");
    wait_for(&speech, limit, "Learned", |s| s == "Learned: my dog.");
    control("list");
    wait_for(&speech, limit, "the list", |s| {
        s == "You taught me: my dog."
    });
    // Once the bench is in view, look for the dog.
    wait_for(&speech, limit, "Bench", |s| s == "Bench.");
    control("find my dog");
    wait_for(&speech, limit, "found", |s| s == "Dog found.");
    control("forget my dog");
    wait_for(&speech, limit, "Forgot", |s| s == "Forgot my dog.");
    control("list");
    wait_for(&speech, limit, "the empty list", |s| {
        s == "You haven't taught me anything yet."
    });
    control("quit");
    let out = child.wait_with_output().unwrap();
    succeeded(&out);

    let lines = transcript(&speech);
    let said: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    let at = |text: &str| said.iter().position(|s| *s == text).unwrap();
    assert!(at("Hold it in front of the camera.") < at("Learned: my dog."));
    // The tones between "Looking for dog." and "Dog found.": recorded, faster and higher
    // as the dog comes into view than over the bench.
    let tones: Vec<(f64, f64)> = lines[at("Looking for dog.")..at("Dog found.")]
        .iter()
        .filter(|l| l["priority"] == "find" && l["text"].as_str().unwrap().starts_with("(tone"))
        .map(|l| {
            let text = l["text"].as_str().unwrap();
            let hz: f64 = text["(tone ".len()..text.len() - " Hz)".len()]
                .parse()
                .unwrap();
            assert!(speech.join(l["wav"].as_str().unwrap()).exists());
            (l["t"].as_f64().unwrap(), hz)
        })
        .collect();
    assert!(tones.len() >= 4, "{tones:?}");
    let gaps: Vec<f64> = tones.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let (first, last) = (tones[0], tones[tones.len() - 1]);
    assert!(last.1 > first.1 + 100.0, "the pitch rises: {tones:?}");
    assert!(
        gaps[gaps.len() - 1] < gaps[0] * 0.8,
        "the tones quicken: {gaps:?}"
    );
    // Find mode held back object announcements; the forgotten label is gone from disk.
    let looking = &said[at("Looking for dog.")..at("Dog found.")];
    assert!(!looking.contains(&"Bench."), "{looking:?}");
    assert!(!bank.exists());
}
