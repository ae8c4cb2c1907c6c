//! Speech: utterances → sound, on a thread of its own.
//!
//! Input: [`Utterance`]s and [`SpeechCommand`]s over a channel. Output: speech through a
//! [`Speaker`]: speech-dispatcher (the system voice, feature `speechd`), espeak-ng played
//! through ALSA, a WAV recorder (numbered WAV files plus `transcript.jsonl`), or the log.
//! Hazards jump the queue and interrupt; stale chatter is dropped rather than said late;
//! muting silences objects and people, never hazards or device status. If a backend fails,
//! the next one in the chain takes over and the failure is logged; the log speaker, last in
//! every chain, cannot fail, so no hazard is ever silently dropped.

mod espeak;
mod pcm;
mod queue;
#[cfg(all(feature = "speechd", target_os = "linux"))]
mod speechd;
mod wav;

pub use espeak::{espeak_synth, EspeakSpeaker};
pub use pcm::{earcon, Pcm};
pub use queue::{SpeechCommand, SpeechStats, SpeechThread};
#[cfg(all(feature = "speechd", target_os = "linux"))]
pub use speechd::SpeechDispatcherSpeaker;
pub use wav::{TranscriptLine, WavSpeaker};

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::types::Utterance;

/// Why a speech backend could not start or speak.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// A backend failed to start or to synthesize (espeak-ng, speech-dispatcher, a player).
    #[error("{backend}: {message}")]
    Backend {
        /// The backend's name ("espeak-ng", "speech-dispatcher", "wav", …).
        backend: String,
        /// What went wrong.
        message: String,
    },
    /// The WAV speaker cannot create its folder or write a WAV or the transcript.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The backend asked for was left out of this build: (what, cargo feature).
    #[error("{0} support is not compiled in (cargo feature `{1}`)")]
    NotCompiled(&'static str, &'static str),
}

/// Voice settings, shared by the backends that support them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// Words per minute.
    pub rate_wpm: u32,
    /// 0–100.
    pub volume: u8,
    /// A voice name understood by the backend (espeak-ng: "en-us"; speech-dispatcher: a
    /// synthesis voice name). Empty: the backend's default.
    pub voice: String,
    /// Play a short tone before a hazard sentence.
    pub earcon: bool,
    /// The earcon tone's pitch, in Hz (default 880).
    pub earcon_hz: f32,
    /// The earcon tone's length, in ms (default 150).
    pub earcon_ms: u32,
    /// The command that plays a WAV from standard input (espeak backend and earcons).
    pub player: Vec<String>,
    /// The espeak-ng binary.
    pub espeak: String,
    /// Objects and people not yet said after this many seconds are dropped as stale.
    pub stale_after_s: f64,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            rate_wpm: 190,
            volume: 100,
            voice: String::new(),
            earcon: true,
            earcon_hz: 880.0,
            earcon_ms: 150,
            player: vec!["aplay".into(), "-q".into(), "-".into()],
            espeak: "espeak-ng".into(),
            stale_after_s: 4.0,
        }
    }
}

/// A speech backend. `say` starts speaking and returns; `is_speaking` polls.
pub trait Speaker: Send {
    /// The backend's short name for logs ("espeak", "wav", "log", …).
    fn name(&self) -> &'static str;
    /// Starts speaking `u` and returns without waiting; an error means nothing was started.
    fn say(&mut self, u: &Utterance) -> Result<(), SpeechError>;
    /// Whether the last utterance is still being spoken.
    fn is_speaking(&mut self) -> bool;
    /// Cuts the current utterance short (a more urgent one interrupts).
    fn stop(&mut self);
    /// Why the last utterance failed after it started (a player that died), if it did.
    fn take_failure(&mut self) -> Option<String> {
        None
    }
    /// Starts a short tone (find mode's beep) and returns without waiting. The default
    /// only logs it.
    fn tone(&mut self, tone: &Tone) -> Result<(), SpeechError> {
        log::info!("tone: {:.0} Hz, {} ms", tone.hz, tone.ms);
        Ok(())
    }
}

/// A short beep: find mode's Geiger-counter click.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone {
    /// Pitch in Hz.
    pub hz: f32,
    /// Length in ms.
    pub ms: u32,
    /// When it was decided, in the observation clock's seconds.
    pub t: f64,
}

impl Tone {
    /// The tone as PCM at `rate` (a soft sine, as the earcon).
    pub fn pcm(&self, rate: u32) -> Pcm {
        Pcm {
            rate,
            samples: earcon(rate, self.hz, self.ms),
        }
    }
}

/// Says everything into the log at info level. It cannot fail.
pub struct LogSpeaker;

impl Speaker for LogSpeaker {
    fn name(&self) -> &'static str {
        "log"
    }
    fn say(&mut self, u: &Utterance) -> Result<(), SpeechError> {
        log::info!("say [{}]: {}", u.kind.as_str(), u.text);
        Ok(())
    }
    fn is_speaking(&mut self) -> bool {
        false
    }
    fn stop(&mut self) {}
}

/// Which backend to speak with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeakerKind {
    /// `"speechd"`: the system voice through speech-dispatcher, then espeak-ng.
    Speechd,
    /// `"espeak"`: espeak-ng played through the `player` command.
    Espeak,
    /// `"wav"`: numbered WAV files and a transcript in the speech folder.
    Wav,
    /// `"log"`: the log only.
    Log,
}

/// Builds the chain for `kind`: the backend itself, then the fallbacks, ending in the log.
/// A backend that cannot start is logged and skipped.
pub fn speaker_chain(
    kind: SpeakerKind,
    voice: &VoiceConfig,
    speech_dir: Option<&Path>,
    start: Instant,
) -> Result<Vec<Box<dyn Speaker>>, SpeechError> {
    let order: &[SpeakerKind] = match kind {
        SpeakerKind::Speechd => &[SpeakerKind::Speechd, SpeakerKind::Espeak],
        SpeakerKind::Espeak => &[SpeakerKind::Espeak],
        SpeakerKind::Wav => &[SpeakerKind::Wav],
        SpeakerKind::Log => &[],
    };
    let mut chain: Vec<Box<dyn Speaker>> = Vec::new();
    for k in order {
        match k {
            SpeakerKind::Speechd => {
                #[cfg(all(feature = "speechd", target_os = "linux"))]
                match SpeechDispatcherSpeaker::new(voice.clone()) {
                    Ok(s) => chain.push(Box::new(s)),
                    Err(e) if *k == kind => log::warn!("{e}; falling back"),
                    Err(e) => log::warn!("{e}"),
                }
                #[cfg(not(all(feature = "speechd", target_os = "linux")))]
                log::warn!(
                    "{}; falling back",
                    SpeechError::NotCompiled("speech-dispatcher", "speechd")
                );
            }
            SpeakerKind::Espeak => chain.push(Box::new(EspeakSpeaker::new(voice.clone()))),
            SpeakerKind::Wav => {
                let dir = speech_dir.ok_or_else(|| SpeechError::Backend {
                    backend: "wav".into(),
                    message: "needs --speech-dir".into(),
                })?;
                chain.push(Box::new(WavSpeaker::new(voice.clone(), dir, start)?));
            }
            SpeakerKind::Log => {}
        }
    }
    chain.push(Box::new(LogSpeaker));
    Ok(chain)
}
