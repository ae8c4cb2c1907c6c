//! The WAV recorder: numbered WAV files and `transcript.jsonl` in a folder, timed as if
//! played in real time. The test and demo speaker.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::espeak::{espeak_synth, with_earcon};
use super::{Speaker, SpeechError, VoiceConfig};
use crate::types::{Kind, Utterance};

/// One line of `transcript.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// Seconds since the run started.
    pub t: f64,
    /// The sentence said (empty on an interrupt line).
    pub text: String,
    /// The utterance's kind: hazard, checkin, status, describe, person, object.
    pub priority: String,
    /// The label priority from the bank (0 for status).
    pub rank: u8,
    /// The WAV file's name in the folder (empty on an interrupt line).
    pub wav: String,
    /// Seconds of audio.
    pub duration: f64,
    /// When its first sample plays, in seconds since the run started: `t` plus the
    /// synthesis time (absent on an interrupt line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_t: Option<f64>,
    /// Set on a later line when this one was cut short by a more urgent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// Writes each utterance as a numbered WAV (espeak-ng) into a folder with a transcript, and
/// behaves as if playing it in real time, so interruption works as on a device.
pub struct WavSpeaker {
    voice: VoiceConfig,
    dir: PathBuf,
    transcript: File,
    start: Instant,
    count: u32,
    busy_until: Option<Instant>,
    current: Option<String>,
}

impl WavSpeaker {
    /// `start` is the run's start; transcript times count from it.
    pub fn new(voice: VoiceConfig, dir: &Path, start: Instant) -> Result<Self, SpeechError> {
        std::fs::create_dir_all(dir).map_err(|source| SpeechError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("transcript.jsonl");
        let transcript = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| SpeechError::Io { path, source })?;
        Ok(WavSpeaker {
            voice,
            dir: dir.to_path_buf(),
            transcript,
            start,
            count: 0,
            busy_until: None,
            current: None,
        })
    }

    /// Writes `pcm` as the next numbered WAV with its transcript line, and plays it for its
    /// duration.
    fn record(
        &mut self,
        t: f64,
        pcm: &super::Pcm,
        text: String,
        kind: Kind,
        rank: u8,
    ) -> Result<(), SpeechError> {
        self.count += 1;
        let name = format!("{:04}.wav", self.count);
        let path = self.dir.join(&name);
        std::fs::write(&path, pcm.to_wav()).map_err(|source| SpeechError::Io { path, source })?;
        let duration = pcm.duration();
        // It would start playing now, the sound synthesized and written.
        let audio_t = self.start.elapsed().as_secs_f64();
        self.write_line(&TranscriptLine {
            t,
            audio_t: Some(audio_t),
            text,
            priority: kind.as_str().into(),
            rank,
            wav: name.clone(),
            duration: duration.as_secs_f64(),
            interrupted: None,
        })?;
        self.busy_until = Some(Instant::now() + duration);
        self.current = Some(name);
        Ok(())
    }

    fn write_line(&mut self, line: &TranscriptLine) -> Result<(), SpeechError> {
        let path = self.dir.join("transcript.jsonl");
        let mut text = serde_json::to_string(line).map_err(|e| SpeechError::Backend {
            backend: "wav".into(),
            message: e.to_string(),
        })?;
        text.push('\n');
        self.transcript
            .write_all(text.as_bytes())
            .and_then(|_| self.transcript.flush())
            .map_err(|source| SpeechError::Io { path, source })
    }
}

impl Speaker for WavSpeaker {
    fn name(&self) -> &'static str {
        "wav"
    }
    fn say(&mut self, u: &Utterance) -> Result<(), SpeechError> {
        let t = self.start.elapsed().as_secs_f64();
        self.cut_short(t)?;
        let pcm = with_earcon(&self.voice, u, espeak_synth(&self.voice, &u.text)?);
        self.record(t, &pcm, u.text.clone(), u.kind, u.priority)
    }
    fn is_speaking(&mut self) -> bool {
        match self.busy_until {
            Some(until) if Instant::now() < until => true,
            _ => {
                self.busy_until = None;
                self.current = None;
                false
            }
        }
    }
    fn tone(&mut self, tone: &super::Tone) -> Result<(), SpeechError> {
        let t = self.start.elapsed().as_secs_f64();
        let text = format!("(tone {:.0} Hz)", tone.hz);
        self.record(t, &tone.pcm(22_050), text, Kind::Find, 0)
    }
    fn stop(&mut self) {
        // The speech queue stops the speaker before it says the more urgent sentence: the cut
        // is written here, or the transcript would never show it.
        let t = self.start.elapsed().as_secs_f64();
        if let Err(e) = self.cut_short(t) {
            log::warn!("wav speaker: {e}");
        }
        self.busy_until = None;
    }
}

impl WavSpeaker {
    /// Writes an interrupt line naming the sentence still playing at `t`, if one is.
    fn cut_short(&mut self, t: f64) -> Result<(), SpeechError> {
        if self.is_speaking() {
            if let Some(cut) = self.current.take() {
                self.write_line(&TranscriptLine {
                    t,
                    text: String::new(),
                    priority: "interrupt".into(),
                    audio_t: None,
                    rank: 0,
                    wav: String::new(),
                    duration: 0.0,
                    interrupted: Some(cut),
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Kind;

    #[test]
    fn a_stop_while_speaking_writes_the_interrupt_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WavSpeaker::new(VoiceConfig::default(), dir.path(), Instant::now()).unwrap();
        let u = |text: &str, kind| Utterance {
            text: text.into(),
            kind,
            priority: 0,
            t: 0.0,
            interrupt: kind == Kind::Hazard,
            earcon: false,
        };
        w.say(&u(
            "A long sentence that takes a few seconds to say aloud.",
            Kind::Object,
        ))
        .unwrap();
        assert!(w.is_speaking());
        w.stop();
        w.say(&u("Caution: stairs.", Kind::Hazard)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("transcript.jsonl")).unwrap();
        let lines: Vec<TranscriptLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1].priority, "interrupt");
        assert_eq!(lines[1].interrupted.as_deref(), Some("0001.wav"));
        assert_eq!(lines[2].text, "Caution: stairs.");
        // Stopping cuts the hazard in turn; a second stop, with nothing playing, writes nothing.
        w.stop();
        w.stop();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("transcript.jsonl"))
                .unwrap()
                .lines()
                .count(),
            4
        );
    }
}
