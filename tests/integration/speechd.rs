//! The speech-dispatcher backend for real: the binary speaks through a private
//! speech-dispatcher (autospawned by libspeechd, espeak-ng module, ALSA's `null` device, so it
//! runs headless), and the daemon's own log must show the sentences it received.

use std::path::Path;

use crate::common::*;

/// A private speech-dispatcher setup under `dir`: the system configuration with audio to
/// ALSA's null device and a log that records each message.
fn private_speechd(dir: &Path) {
    let system = Path::new("/etc/speech-dispatcher/speechd.conf");
    let base = std::fs::read_to_string(system).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: install speech-dispatcher and speech-dispatcher-espeak-ng \
             (sudo .ci/setup)",
            system.display()
        )
    });
    let conf = dir.join("config/speech-dispatcher");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("speechd.conf"),
        format!(
            "{base}\nAudioOutputMethod \"alsa\"\nAudioALSADevice \"null\"\n\
             DefaultModule espeak-ng\nLogLevel 5\n"
        ),
    )
    .unwrap();
}

#[test]
fn speechd_backend_speaks_through_a_real_speech_dispatcher() {
    let dir = tempfile::tempdir().unwrap();
    private_speechd(dir.path());
    let out = bin()
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_RUNTIME_DIR", dir.path())
        .env_remove("SPEECHD_ADDRESS")
        .args(["run", "--model"])
        .arg(root().join("models/default"))
        .arg("--bank")
        .arg(root().join("prompts/banks/objects.safetensors"))
        .arg("--bank")
        .arg(root().join("prompts/banks/hazards.safetensors"))
        .arg("--source")
        .arg(root().join("examples/frames"))
        .args(["--fps", "2", "--speaker", "speechd"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The daemon (started by libspeechd for this test) exits on its own when idle; stop it now.
    let socket = dir.path().join("speech-dispatcher/speechd.sock");
    let _ = std::process::Command::new("pkill")
        .arg("-f")
        .arg(format!("speech-dispatcher.*{}", socket.display()))
        .status();
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("falling back"),
        "speech-dispatcher was not used:\n{stderr}"
    );
    let log = dir
        .path()
        .join("speech-dispatcher/log/speech-dispatcher.log");
    let log = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", log.display()));
    let received: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("Queueing message |").map(|(_, m)| m))
        .collect();
    // examples/frames: a dog, then a bus (a hazard: "Caution: vehicle ahead."), then a bench.
    assert!(
        received.iter().any(|m| m.to_lowercase().contains("dog")),
        "{received:?}"
    );
    assert!(
        received.iter().any(|m| m.contains("Caution")),
        "{received:?}"
    );
}
