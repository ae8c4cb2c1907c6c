//! The service paths through the real binary: systemd notifications, SIGTERM, the control
//! socket and `clipsight control`, darkness, and the earcon before a hazard. Each runs
//! `clipsight run --config` on replayed real photos with the WAV speaker, whose transcript and
//! files are read back.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clipsight::cli::config::RunConfig;
use clipsight::controls::ControlsConfig;
use clipsight::speech::SpeakerKind;
use serde_json::Value;

use crate::common::*;

/// A folder with each photo (a fixture name, or `"black"` for an all-black frame) repeated
/// `count` times, in order.
fn frames(dir: &Path, segments: &[(&str, usize)]) -> PathBuf {
    let out = dir.join("frames");
    std::fs::create_dir(&out).unwrap();
    let mut n = 0;
    for (photo, count) in segments {
        for _ in 0..*count {
            let to = out.join(format!("{n:04}.png"));
            if *photo == "black" {
                image::RgbImage::new(320, 240).save(&to).unwrap();
            } else {
                image::open(fixtures().join("photos").join(photo))
                    .unwrap()
                    .save(&to)
                    .unwrap();
            }
            n += 1;
        }
    }
    out
}

/// Writes `run --config` for the default bundle and the shipped banks on `frames` at 10 fps,
/// speaking into `dir/speech`; `tweak` adjusts the config. Returns the config's path.
fn config(dir: &Path, frames: &Path, tweak: impl FnOnce(&mut RunConfig)) -> PathBuf {
    let mut config = RunConfig {
        model: Some(root().join("models/default")),
        banks: ["objects", "hazards"]
            .iter()
            .map(|b| root().join(format!("prompts/banks/{b}.safetensors")))
            .collect(),
        source: Some(frames.to_string_lossy().into()),
        fps: Some(10.0),
        speaker: Some(SpeakerKind::Wav),
        speech_dir: Some(dir.join("speech")),
        ..Default::default()
    };
    tweak(&mut config);
    let path = dir.join("run.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

fn start(config: &Path) -> Child {
    bin()
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) {
    succeeded(&child.wait_with_output().unwrap());
}

/// The transcript of a run in `dir` (its speech is in `dir/speech`).
fn lines(dir: &Path) -> Vec<Value> {
    transcript(&dir.join("speech"))
}

fn said(dir: &Path) -> Vec<String> {
    spoken(&dir.join("speech"))
}

/// Waits (at most 60 s) until `what` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): READY=1 once the model is loaded, then
/// WATCHDOG=1 about every second while frames flow, and STOPPING=1 at the end.
#[test]
fn notify_socket_gets_ready_then_watchdog_pets_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let frames = frames(dir.path(), &[("dog.jpg", 40)]);
    let config = config(dir.path(), &frames, |_| {});
    let child = bin()
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !got.iter().any(|m| m == "STOPPING=1") && Instant::now() < deadline {
        if let Ok(n) = listener.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    finish(child);
    assert_eq!(got.first().map(String::as_str), Some("READY=1"), "{got:?}");
    assert_eq!(
        got.last().map(String::as_str),
        Some("STOPPING=1"),
        "{got:?}"
    );
    // 4 s of frames: a pet at the start and about one a second.
    let pets = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pets >= 3, "{pets} pets: {got:?}");
}

/// SIGTERM (systemctl stop) ends a run that would go on for a minute: exit 0 within 1 s.
#[test]
fn sigterm_stops_the_run_within_a_second_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let frames = frames(dir.path(), &[("dog.jpg", 600)]);
    let config = config(dir.path(), &frames, |_| {});
    let child = start(&config);
    // Running: the first frames have been looked at and "Ready." said.
    wait_until("Ready.", || said(dir.path()).iter().any(|s| s == "Ready."));
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took <= Duration::from_secs(1), "stopped after {took:?}");
    // It had started speaking; nothing is said after the stop.
    assert!(said(dir.path()).iter().any(|s| s == "Dog."));
}

/// `clipsight control --socket … describe` reaches the running instance: a describe
/// sentence is said (and `ok` is printed back).
#[test]
fn control_subcommand_asks_a_running_instance_to_describe() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let frames = frames(dir.path(), &[("dog.jpg", 80)]);
    let config = config(dir.path(), &frames, |c| {
        c.controls = ControlsConfig {
            socket: Some(socket.clone()),
            ..Default::default()
        };
    });
    let child = start(&config);
    wait_until("Dog.", || said(dir.path()).iter().any(|s| s == "Dog."));
    let before = lines(dir.path()).len();
    let out = bin()
        .args(["control", "--socket"])
        .arg(&socket)
        .arg("describe")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    wait_until("the describe sentence", || {
        lines(dir.path())[before..]
            .iter()
            .any(|l| l["priority"] == "describe")
    });
    let line = lines(dir.path())[before..]
        .iter()
        .find(|l| l["priority"] == "describe")
        .cloned()
        .unwrap();
    assert!(line["text"] == "I see a dog.", "{line}");
    finish(child);
}

/// Darkness through the real pipeline: dark frames are said once as "I can't see: too
/// dark.", and "I can see again." when light comes back; nothing is named from a dark frame.
#[test]
fn a_dark_replay_says_it_cannot_see_then_that_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let frames = frames(
        dir.path(),
        &[("dog.jpg", 15), ("black", 25), ("dog.jpg", 25)],
    );
    let config = config(dir.path(), &frames, |_| {});
    finish(start(&config));
    let said = said(dir.path());
    let pos = |s: &str| {
        said.iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s:?} not said: {said:?}"))
    };
    let dark = pos("I can't see: too dark.");
    let again = pos("I can see again.");
    assert!(pos("Dog.") < dark && dark < again, "{said:?}");
    assert_eq!(
        said.iter()
            .filter(|s| *s == "I can't see: too dark.")
            .count(),
        1,
        "{said:?}"
    );
    assert!(said[dark + 1..again].is_empty(), "{said:?}");
}

/// The earcon (880 Hz, 150 ms) leads the hazard's WAV, and an object's WAV has none.
#[test]
fn the_earcon_leads_a_hazard_sentence_and_only_a_hazard() {
    let dir = tempfile::tempdir().unwrap();
    let frames = frames(dir.path(), &[("dog.jpg", 20), ("bus.jpg", 20)]);
    let config = config(dir.path(), &frames, |_| {});
    finish(start(&config));
    let lines = lines(dir.path());
    let wav = |text: &str| {
        let l = lines
            .iter()
            .find(|l| l["text"] == text && !l["wav"].as_str().unwrap_or("").is_empty())
            .unwrap_or_else(|| panic!("{text:?} not said: {lines:?}"));
        let bytes =
            std::fs::read(dir.path().join("speech").join(l["wav"].as_str().unwrap())).unwrap();
        clipsight::speech::Pcm::from_wav(&bytes).unwrap()
    };
    let hazard = wav("Caution: vehicle ahead.");
    let tone = clipsight::speech::earcon(hazard.rate, 880.0, 150);
    assert!(hazard.samples.len() > tone.len());
    assert_eq!(&hazard.samples[..tone.len()], &tone[..], "no earcon first");
    let object = wav("Dog.");
    let n = tone.len().min(object.samples.len());
    assert_ne!(
        &object.samples[..n],
        &tone[..n],
        "an earcon before an object"
    );
}
