//! Precision-first announcements: what `classify --json` says a still photo would make the
//! device say is what `run` says on it; unvalidated labels stay silent by default; the banks
//! in `prompts/banks/` are what `prompts/make-banks.sh` writes, and the README lists what they
//! say and keep silent.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::*;

fn bank(name: &str) -> PathBuf {
    root()
        .join("prompts/banks")
        .join(format!("{name}.safetensors"))
}

fn said_by_classify(photo: &PathBuf, banks: &[&str]) -> Vec<Value> {
    said_by_classify_with(photo, banks, &[])
}

fn said_by_classify_with(photo: &PathBuf, banks: &[&str], extra: &[&str]) -> Vec<Value> {
    let mut cmd = bin();
    cmd.args(["classify", "--json", "--top", "1", "--model"])
        .arg(root().join("models/default"))
        .args(extra);
    for b in banks {
        cmd.arg("--bank").arg(bank(b));
    }
    let out = cmd.arg(photo).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    line["said"].as_array().unwrap().clone()
}

/// The sentences `run` speaks on a folder holding `photo` repeated, with the wav speaker.
fn said_by_run(photo: &PathBuf, banks: &[&str], extra: &[&str]) -> Vec<String> {
    let frames = tempfile::tempdir().unwrap();
    for i in 0..8 {
        std::fs::copy(photo, frames.path().join(format!("{i:02}.jpg"))).unwrap();
    }
    let speech = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["run", "--model"])
        .arg(root().join("models/default"));
    for b in banks {
        cmd.arg("--bank").arg(bank(b));
    }
    run_ok(
        cmd.arg("--source")
            .arg(frames.path())
            .args(["--fps", "4", "--speaker", "wav", "--speech-dir"])
            .arg(speech.path())
            .args(extra),
    );
    sentences(speech.path())
}

/// The sentences of a wav transcript, device status and interrupt lines left out.
fn sentences(speech_dir: &std::path::Path) -> Vec<String> {
    transcript(speech_dir)
        .iter()
        .filter(|l| l["priority"] != "status" && l["wav"] != "")
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect()
}

/// `said` of `classify --json` and the transcript of `run` on the same still photo agree:
/// the same sentences in the same order (hazards first).
#[test]
fn classify_said_agrees_with_run_on_a_still_scene() {
    let banks = ["objects", "hazards"];
    let mut spoke_something = false;
    for photo in ["bus.jpg", "dog.jpg"] {
        let photo = fixtures().join("photos").join(photo);
        let said = said_by_classify(&photo, &banks);
        let expected: Vec<String> = {
            // Hazards are separate sentences; objects entering together are one sentence.
            let (hazards, others): (Vec<&Value>, Vec<&Value>) =
                said.iter().partition(|s| s["category"] == "hazard");
            let mut v: Vec<String> = hazards
                .iter()
                .map(|s| s["sentence"].as_str().unwrap().to_string())
                .collect();
            if !others.is_empty() {
                v.push(
                    others
                        .iter()
                        .map(|s| s["sentence"].as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
            v
        };
        let spoken = said_by_run(&photo, &banks, &[]);
        assert_eq!(
            spoken,
            expected,
            "{}: classify said {said:?}",
            photo.display()
        );
        for s in &said {
            let category = s["category"].as_str().unwrap();
            assert!(["object", "hazard", "person"].contains(&category), "{s}");
            assert!(!s["label"].as_str().unwrap().is_empty());
        }
        spoke_something |= !spoken.is_empty();
    }
    assert!(
        spoke_something,
        "neither photo made the device say anything"
    );
}

/// With the person model, as in `run`, people are said by the pose stage ("Person ahead.",
/// and someone lying on the ground as a hazard) instead of the banks' placeless "Person.":
/// `classify --json`'s `said` and `run`'s transcript agree on a standing person and on the
/// same photo turned a quarter.
#[test]
fn with_a_person_model_classify_says_the_people_sentences_that_run_says() {
    let banks = ["objects", "hazards"];
    let person_model = root().join("models/person");
    let extra = ["--person-model", person_model.to_str().unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let standing = fixtures().join("photos/person.jpg");
    let lying = dir.path().join("lying.jpg");
    image::open(&standing)
        .unwrap()
        .rotate90()
        .to_rgb8()
        .save(&lying)
        .unwrap();
    for (photo, hazard) in [(&standing, false), (&lying, true)] {
        let said = said_by_classify_with(photo, &banks, &extra);
        let mut sentences: Vec<String> = said
            .iter()
            .map(|s| s["sentence"].as_str().unwrap().to_string())
            .collect();
        assert!(sentences.contains(&"Person ahead.".to_string()), "{said:?}");
        assert!(!sentences.contains(&"Person.".to_string()), "{said:?}");
        assert_eq!(
            sentences[0] == "Someone is lying on the ground ahead.",
            hazard,
            "{said:?}"
        );
        let mut spoken = said_by_run(photo, &banks, &extra);
        assert_eq!(
            spoken.first(),
            sentences.first(),
            "hazard first: {spoken:?}"
        );
        spoken.sort();
        sentences.sort();
        assert_eq!(spoken, sentences, "{}", photo.display());
    }
}

/// A bank whose hazard no calibration photo shows: with the default config the hazard is
/// never said, however high it scores; with `decision.unvalidated = "hedged"` it is said as a
/// guess.
#[test]
fn an_unvalidated_hazard_is_silent_by_default_and_hedged_on_request() {
    let dir = tempfile::tempdir().unwrap();
    // "a bus on fire" scores high on a bus photo; no calibration photo is labelled with it.
    std::fs::write(
        dir.path().join("set.toml"),
        "name = \"unvalidated\"\n[[prompt]]\nlabel = \"bus on fire\"\ncategory = \"hazard\"\nsay = \"Caution: fire.\"\ntemplates = [\"a photo of a bus.\", \"a bus on the street.\"]\n",
    )
    .unwrap();
    // Calibrated on photos without vehicles: no calibration photo shows the label (it is not
    // validated), and its threshold sits above every one of them, below a bus.
    let calibration = dir.path().join("calibration");
    std::fs::create_dir(&calibration).unwrap();
    let vehicles = ["bus", "car", "truck", "train", "motorcycle", "bicycle"];
    let labels = std::fs::read_to_string(root().join("prompts/calibration/labels.tsv")).unwrap();
    let mut kept = String::new();
    for line in labels.lines().filter(|l| !l.starts_with('#')) {
        let (file, names) = line.split_once('\t').unwrap_or((line, ""));
        if names.split(',').any(|n| vehicles.contains(&n)) || kept.lines().count() >= 40 {
            continue;
        }
        std::fs::copy(
            root().join("prompts/calibration").join(file),
            calibration.join(file),
        )
        .unwrap();
        kept += &format!("{line}\n");
    }
    std::fs::write(calibration.join("labels.tsv"), kept).unwrap();
    let out_bank = dir.path().join("unvalidated.safetensors");
    let out = bin()
        .args(["embed-prompts", "--model"])
        .arg(root().join("models/default"))
        .arg("--prompts")
        .arg(dir.path().join("set.toml"))
        .arg("--calibration")
        .arg(&calibration)
        .arg("-o")
        .arg(&out_bank)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = tempfile::tempdir().unwrap();
    for i in 0..8 {
        std::fs::copy(
            fixtures().join("photos/bus.jpg"),
            frames.path().join(format!("{i:02}.jpg")),
        )
        .unwrap();
    }
    let spoken = |config: Option<&str>| {
        let speech = tempfile::tempdir().unwrap();
        let mut cmd = bin();
        if let Some(text) = config {
            let c = dir.path().join("c.toml");
            std::fs::write(&c, text).unwrap();
            cmd.arg("run").arg("--config").arg(&c);
        } else {
            cmd.arg("run");
        }
        let out = cmd
            .arg("--model")
            .arg(root().join("models/default"))
            .arg("--bank")
            .arg(&out_bank)
            .arg("--source")
            .arg(frames.path())
            .args(["--fps", "4", "--speaker", "wav", "--speech-dir"])
            .arg(speech.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        sentences(speech.path())
    };
    // The label is not validated: nothing shows "bus on fire" in the calibration photos.
    let loaded = clipsight::prompts::bank::Bank::load(&out_bank).unwrap();
    assert!(!loaded.entries[0].calibration.validated);
    assert_eq!(loaded.entries[0].calibration.positives, 0);
    assert_eq!(spoken(None), Vec::<String>::new());
    assert_eq!(
        spoken(Some("[decision]\nunvalidated = \"hedged\"\n")),
        vec!["Possibly bus on fire.".to_string()]
    );
}

/// The committed banks are what `prompts/make-banks.sh` writes: the same labels, thresholds
/// (to float precision), validated flags and learned gate entries, rebuilt here with
/// `embed-prompts` and the same gate vocabulary.
#[test]
fn the_committed_banks_match_what_make_banks_writes() {
    let script = std::fs::read_to_string(root().join("prompts/make-banks.sh")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for set in ["objects", "hazards", "home", "coco80"] {
        assert!(script.contains(set), "make-banks.sh does not build {set}");
        let out = dir.path().join(format!("{set}.safetensors"));
        let status = bin()
            .args(["embed-prompts", "--model"])
            .arg(root().join("models/default"))
            .arg("--prompts")
            .arg(root().join(format!("prompts/{set}.toml")))
            .args([
                "--calibration",
                "prompts/calibration",
                "--vocabulary",
                "prompts/vocabulary.txt",
                "-o",
            ])
            .arg(&out)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let (fresh, committed) = (
            clipsight::prompts::bank::Bank::load(&out).unwrap(),
            clipsight::prompts::bank::Bank::load(&bank(set)).unwrap(),
        );
        assert_eq!(fresh.entries.len(), committed.entries.len(), "{set}");
        for (a, b) in fresh.entries.iter().zip(&committed.entries) {
            assert_eq!(a.label, b.label, "{set}");
            assert_eq!(a.calibration, b.calibration, "{set}: {}", a.label);
            assert_eq!(a.gate, b.gate, "{set}: {} learned gate entries", a.label);
            assert!(
                (a.threshold - b.threshold).abs() < 1e-4,
                "{set}: {} threshold {} vs committed {}",
                a.label,
                a.threshold,
                b.threshold
            );
        }
        assert_eq!(
            fresh.vocabulary().map(<[f32]>::len),
            committed.vocabulary().map(<[f32]>::len)
        );
    }
}

/// The README's "what it can and cannot see" lists come out of the committed banks: every
/// validated label of the objects and hazards banks is in its **said** list and not in its
/// **silent** one, and every other label the other way round.
#[test]
fn the_readme_lists_what_the_committed_banks_say_and_keep_silent() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // A bullet runs from its marker to the end of its last sentence or the next bullet.
    let bullet = |marker: &str| -> String {
        let start = readme
            .find(marker)
            .unwrap_or_else(|| panic!("README has no {marker}"));
        let rest = &readme[start + marker.len()..];
        let end = ["\n  - ", "\n- ", ".\n"]
            .iter()
            .filter_map(|t| rest.find(t))
            .min()
            .unwrap_or(rest.len());
        rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let (said, silent) = (
        bullet("**said** (validated):"),
        bullet("**silent** (not validated"),
    );
    // A label stands in a list as a whole name: "stairs" is not in "stairs going down", but
    // is in "stairs (0)".
    let has = |list: &str, label: &str| {
        list.match_indices(label).any(|(i, _)| {
            let before = list[..i].chars().last();
            let after = &list[i + label.len()..];
            !before.is_some_and(char::is_alphanumeric)
                && (after.is_empty()
                    || after.starts_with([',', ';', '"', ')', '.'])
                    || after.starts_with(" ("))
        })
    };
    for set in ["objects", "hazards"] {
        let b = clipsight::prompts::bank::Bank::load(&bank(set)).unwrap();
        for e in &b.entries {
            let (want, other) = if e.calibration.validated {
                (&said, &silent)
            } else {
                (&silent, &said)
            };
            assert!(
                has(want, &e.label) && !has(other, &e.label),
                "{set}: {} (validated {}) is in the wrong README list",
                e.label,
                e.calibration.validated
            );
        }
    }
}

/// `eval --person-model` counts people as `run` says them: the pose stage's sentence counts as
/// saying "person" (and is checked against the photo's labels like any label), the banks' own
/// "person" stays silent. Five calibration photos, the banks' own calibration.
#[test]
fn eval_with_the_person_model_counts_the_people_sentences_as_person() {
    let dir = tempfile::tempdir().unwrap();
    let calibration = root().join("prompts/calibration");
    let ids = [
        "000000000136",
        "000000000394",
        "000000000370",
        "000000000471",
        "000000000474",
    ];
    let labels = std::fs::read_to_string(calibration.join("labels.tsv")).unwrap();
    let mine: Vec<&str> = labels
        .lines()
        .filter(|l| ids.iter().any(|id| l.starts_with(id)))
        .collect();
    assert_eq!(mine.len(), 5);
    std::fs::write(dir.path().join("labels.tsv"), mine.join("\n") + "\n").unwrap();
    for id in ids {
        let name = format!("{id}.jpg");
        std::fs::copy(calibration.join(&name), dir.path().join(&name)).unwrap();
    }
    let eval = |extra: &[&str]| -> Value {
        let mut cmd = bin();
        cmd.args(["eval", "--json", "--per-photo", "--model"])
            .arg(root().join("models/default"))
            .args(extra)
            .arg("--labels")
            .arg(dir.path());
        for b in ["objects", "hazards"] {
            cmd.arg("--bank").arg(bank(b));
        }
        serde_json::from_slice(&run_ok(&mut cmd).stdout).unwrap()
    };
    let photo = |report: &Value, id: &str, key: &str| -> Vec<String> {
        let p = report["per_photo"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["file"] == format!("{id}.jpg"))
            .unwrap();
        p[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let person_model = root().join("models/person");
    let (without, with) = (
        eval(&[]),
        eval(&["--person-model", person_model.to_str().unwrap()]),
    );
    // A man over broccoli: the banks say nothing; the pose stage says a person.
    assert!(photo(&without, "000000000370", "said").is_empty());
    assert_eq!(photo(&with, "000000000370", "said"), ["person"]);
    // The boy with a glove: among his photo's best gate entries is one that the banks'
    // "person" learned from the calibration photos, so the banks say a person; with the
    // person model the pose stage says it instead, once.
    assert_eq!(photo(&without, "000000000474", "said"), ["person"]);
    assert_eq!(photo(&with, "000000000474", "said"), ["person"]);
    // The bus: the hazard and the bus as before, then the person by the pose stage.
    assert_eq!(
        photo(&with, "000000000471", "said"),
        ["vehicle close ahead", "bus", "person"]
    );
    // The dog photo has no person: the pose stage's false person is counted as wrong.
    assert_eq!(photo(&with, "000000000394", "wrong"), ["person"]);
    assert_eq!(with["precision"]["hits"], 6);
    assert_eq!(with["precision"]["total"], 7);
}
