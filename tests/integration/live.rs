//! The live pipeline end to end: the real binary, the default bundle, the shipped banks,
//! replayed real photos, and the WAV speaker (espeak-ng), whose files are read back.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

/// The default smoothing window (`decision.window_s`): a hazard is confirmed once the median
/// of its scores over this window passes the threshold, i.e. after about half of it.
const WINDOW_S: f64 = 0.6;
/// What the issue allows on top of the smoothing window.
const HAZARD_LATENCY_S: f64 = 0.5;

fn default_model() -> PathBuf {
    root().join("models/default")
}

fn bank(name: &str) -> PathBuf {
    root()
        .join("prompts/banks")
        .join(format!("{name}.safetensors"))
}

/// A folder with `photo` repeated `count` times per segment, in order.
fn replay(segments: &[(&str, usize)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for (photo, count) in segments {
        for _ in 0..*count {
            std::fs::copy(
                fixtures().join("photos").join(photo),
                dir.path().join(format!("{n:04}.jpg")),
            )
            .unwrap();
            n += 1;
        }
    }
    dir
}

struct Run {
    transcript: Vec<Value>,
    stats: Value,
    speech_dir: tempfile::TempDir,
}

fn run(frames: &Path, fps: f64, banks: &[&str], extra: &[&str]) -> Run {
    let speech_dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["run", "--model"]).arg(default_model());
    for b in banks {
        cmd.arg("--bank").arg(bank(b));
    }
    let out = cmd
        .arg("--source")
        .arg(frames)
        .args([
            "--fps",
            &fps.to_string(),
            "--speaker",
            "wav",
            "--stats-json",
            "--speech-dir",
        ])
        .arg(speech_dir.path())
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stats: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let transcript = std::fs::read_to_string(speech_dir.path().join("transcript.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Run {
        transcript,
        stats,
        speech_dir,
    }
}

fn spoken(run: &Run) -> Vec<&Value> {
    run.transcript
        .iter()
        .filter(|l| !l["wav"].as_str().unwrap_or("").is_empty())
        .collect()
}

/// Reads a 16-bit mono WAV's samples.
fn wav_samples(path: &Path) -> (u32, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    let pcm = clipsight::speech::Pcm::from_wav(&bytes).unwrap();
    (pcm.rate, pcm.samples)
}

#[test]
fn wearable_scene_hazard_scene_through_the_real_pipeline() {
    // 2 s of a dog, 2 s of a bus (a vehicle: hazard), 2 s of giraffes, at 4 fps.
    let fps = 4.0;
    let frames = replay(&[("dog.jpg", 8), ("bus.jpg", 8), ("giraffe.jpg", 8)]);
    let hazard_appears = 8.0 / fps;
    let r = run(frames.path(), fps, &["objects", "hazards"], &[]);
    let lines = spoken(&r);
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    eprintln!("{:#?}", r.transcript);

    // The hazard is said, early enough.
    let hazard = lines
        .iter()
        .find(|l| l["priority"] == "hazard")
        .unwrap_or_else(|| panic!("no hazard said: {texts:?}"));
    let t_hazard = hazard["t"].as_f64().unwrap();
    assert!(
        t_hazard >= hazard_appears - 0.05,
        "hazard before the bus: {t_hazard}"
    );
    let latency = t_hazard - hazard_appears;
    assert!(
        latency <= HAZARD_LATENCY_S + WINDOW_S,
        "hazard {latency:.2} s late"
    );
    assert!(hazard["text"].as_str().unwrap().starts_with("Caution"));

    // It comes before, or interrupts, what the bus scene's objects say.
    let objects_in_bus_scene: Vec<&&Value> = lines
        .iter()
        .filter(|l| {
            let t = l["t"].as_f64().unwrap();
            matches!(l["priority"].as_str(), Some("object" | "person"))
                && t >= hazard_appears
                && t < hazard_appears + 2.0
        })
        .collect();
    for o in &objects_in_bus_scene {
        assert!(
            o["t"].as_f64().unwrap() >= t_hazard,
            "{o} before the hazard"
        );
    }
    // If something else was still being spoken when the hazard came, the hazard cut it: the
    // transcript line just before the hazard's is an interrupt line, at the hazard's time
    // (written by the speaker's stop, just before the hazard is said), naming that WAV.
    let spoken_when_hazard_came = lines.iter().find(|l| {
        let (t, d) = (l["t"].as_f64().unwrap(), l["duration"].as_f64().unwrap());
        l["priority"] != "hazard" && t < t_hazard && t + d > t_hazard
    });
    if let Some(cut) = spoken_when_hazard_came {
        let at = r
            .transcript
            .iter()
            .position(|l| l["wav"] == hazard["wav"])
            .unwrap();
        let before = at
            .checked_sub(1)
            .map(|i| &r.transcript[i])
            .unwrap_or_else(|| panic!("the hazard waited for {cut}"));
        assert_eq!(
            before["priority"], "interrupt",
            "the hazard waited for {cut}"
        );
        assert_eq!(
            before["interrupted"], cut["wav"],
            "the wrong line was cut: {before}"
        );
        let dt = t_hazard - before["t"].as_f64().unwrap();
        assert!(
            (0.0..0.2).contains(&dt),
            "cut {dt:.3} s before the hazard: {before}"
        );
    }

    // The scenes were named, and nothing was said twice (the run is shorter than any cooldown).
    assert!(texts.iter().any(|t| t.contains("Dog")), "{texts:?}");
    let mut seen = std::collections::HashSet::new();
    for t in texts.iter().filter(|t| **t != "Ready.") {
        assert!(seen.insert(*t), "{t:?} repeated: {texts:?}");
    }

    // Every WAV holds real speech of a plausible length.
    for l in &lines {
        let text = l["text"].as_str().unwrap();
        let (rate, samples) = wav_samples(&r.speech_dir.path().join(l["wav"].as_str().unwrap()));
        let secs = samples.len() as f64 / f64::from(rate);
        let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
            / samples.len() as f64)
            .sqrt();
        assert!(rms > 300.0, "{text:?}: silent (rms {rms:.0})");
        let chars = text.chars().count() as f64;
        assert!(
            secs >= 0.03 * chars && secs <= 1.0 + 0.2 * chars,
            "{text:?}: {secs:.2} s"
        );
    }
    assert_eq!(r.stats["frames"]["bad"], 0);
}

#[test]
fn a_static_scene_is_said_once_and_barely_encoded() {
    // 5 s of the same photo at 10 fps: the gate lets a frame through at the start and then
    // once per 3 s re-check, so at most 3 encoder calls for 50 frames.
    let frames = replay(&[("dog.jpg", 50)]);
    let r = run(frames.path(), 10.0, &["objects", "hazards"], &[]);
    let processed = r.stats["frames"]["processed"].as_u64().unwrap();
    let skipped = r.stats["frames"]["skipped_unchanged"].as_u64().unwrap();
    assert!(
        (1..=3).contains(&processed),
        "{processed} encoder calls: {}",
        r.stats
    );
    assert!(skipped >= 40, "{}", r.stats);
    let said: Vec<&str> = spoken(&r)
        .iter()
        .filter(|l| l["priority"] != "status")
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
}
