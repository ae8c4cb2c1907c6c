//! espeak-ng: synthesis into memory, played through a player command (ALSA's `aplay`).
//! Fails with a [`SpeechError`] naming espeak-ng or the player.

use std::io::Write;
use std::process::{Child, Command, Stdio};

use super::pcm::{earcon, Pcm};
use super::{Speaker, SpeechError, VoiceConfig};
use crate::types::Utterance;

/// Synthesizes `text` with espeak-ng into memory.
pub fn espeak_synth(voice: &VoiceConfig, text: &str) -> Result<Pcm, SpeechError> {
    let fail = |message: String| SpeechError::Backend {
        backend: "espeak-ng".into(),
        message,
    };
    let mut cmd = Command::new(&voice.espeak);
    cmd.arg("--stdout")
        .arg("-s")
        .arg(voice.rate_wpm.to_string())
        .arg("-a")
        .arg((u32::from(voice.volume.min(100)) * 2).to_string());
    if !voice.voice.is_empty() {
        cmd.arg("-v").arg(&voice.voice);
    }
    // `--` so a sentence starting with '-' is not an option.
    let out = cmd
        .arg("--")
        .arg(text)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| fail(format!("cannot run {}: {e}", voice.espeak)))?;
    if !out.status.success() {
        return Err(fail(format!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Pcm::from_wav(&out.stdout).ok_or_else(|| fail("produced no usable WAV".into()))
}

pub(super) fn with_earcon(voice: &VoiceConfig, u: &Utterance, mut pcm: Pcm) -> Pcm {
    if u.earcon && voice.earcon {
        let mut samples = earcon(pcm.rate, voice.earcon_hz, voice.earcon_ms);
        samples.append(&mut pcm.samples);
        pcm.samples = samples;
    }
    pcm
}

/// Plays a WAV through the player command; returns the running child.
pub(super) fn play(voice: &VoiceConfig, wav: Vec<u8>) -> Result<Child, SpeechError> {
    let fail = |message: String| SpeechError::Backend {
        backend: "player".into(),
        message,
    };
    let (prog, args) = voice
        .player
        .split_first()
        .ok_or_else(|| fail("no player command configured".into()))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run {prog}: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin".into()))?;
    // Feed the player from a thread so a long sentence never blocks the speech loop.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&wav);
    });
    Ok(child)
}

/// espeak-ng synthesis played through ALSA (or any `player` command).
pub struct EspeakSpeaker {
    voice: VoiceConfig,
    child: Option<Child>,
    failure: Option<String>,
}

impl EspeakSpeaker {
    /// A speaker that runs `voice.espeak` and pipes its WAV to `voice.player`.
    pub fn new(voice: VoiceConfig) -> Self {
        EspeakSpeaker {
            voice,
            child: None,
            failure: None,
        }
    }
}

impl Speaker for EspeakSpeaker {
    fn name(&self) -> &'static str {
        "espeak"
    }
    fn say(&mut self, u: &Utterance) -> Result<(), SpeechError> {
        self.stop();
        let pcm = with_earcon(&self.voice, u, espeak_synth(&self.voice, &u.text)?);
        self.child = Some(play(&self.voice, pcm.to_wav())?);
        Ok(())
    }
    fn is_speaking(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                if !status.success() {
                    self.failure = Some(format!(
                        "the player {:?} exited with {status}",
                        self.voice.player
                    ));
                }
                self.child = None;
                false
            }
            Some(Err(_)) | None => false,
        }
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }
    fn tone(&mut self, tone: &super::Tone) -> Result<(), SpeechError> {
        self.stop();
        self.child = Some(play(&self.voice, tone.pcm(22_050).to_wav())?);
        Ok(())
    }
}
