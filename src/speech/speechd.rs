//! The system voice through speech-dispatcher (the `tts` crate; feature `speechd`).

use super::espeak::play;
use super::pcm::{earcon, Pcm};
use super::{Speaker, SpeechError, VoiceConfig};
use crate::types::Utterance;

/// The system voice through speech-dispatcher.
pub struct SpeechDispatcherSpeaker {
    tts: tts::Tts,
    voice: VoiceConfig,
}

impl SpeechDispatcherSpeaker {
    /// Connects to speech-dispatcher and applies the rate, volume and voice.
    pub fn new(voice: VoiceConfig) -> Result<Self, SpeechError> {
        let fail = |e: tts::Error| SpeechError::Backend {
            backend: "speech-dispatcher".into(),
            message: e.to_string(),
        };
        let mut tts = tts::Tts::new(tts::Backends::SpeechDispatcher).map_err(fail)?;
        // speech-dispatcher's rate is -100..100 around its default (about 180 wpm).
        let rate = ((voice.rate_wpm as f32 - 180.0) / 2.0).clamp(-100.0, 100.0);
        tts.set_rate(rate).map_err(fail)?;
        tts.set_volume(f32::from(voice.volume.min(100)) * 2.0 - 100.0)
            .map_err(fail)?;
        if !voice.voice.is_empty() {
            let voices = tts.voices().map_err(fail)?;
            match voices
                .iter()
                .find(|v| v.name() == voice.voice || v.id() == voice.voice)
            {
                Some(v) => tts.set_voice(v).map_err(fail)?,
                None => log::warn!(
                    "speech-dispatcher has no voice {:?}; using the default",
                    voice.voice
                ),
            }
        }
        Ok(SpeechDispatcherSpeaker { tts, voice })
    }
}

impl Speaker for SpeechDispatcherSpeaker {
    fn name(&self) -> &'static str {
        "speechd"
    }
    fn say(&mut self, u: &Utterance) -> Result<(), SpeechError> {
        if u.earcon && self.voice.earcon {
            // A tone through the player, then the sentence; the tone is short (≈0.2 s).
            let pcm = Pcm {
                rate: 22_050,
                samples: earcon(22_050, self.voice.earcon_hz, self.voice.earcon_ms),
            };
            match play(&self.voice, pcm.to_wav()) {
                Ok(mut child) => {
                    let _ = child.wait();
                }
                Err(e) => log::warn!("earcon: {e}"),
            }
        }
        self.tts
            .speak(u.text.as_str(), true)
            .map(|_| ())
            .map_err(|e| SpeechError::Backend {
                backend: "speech-dispatcher".into(),
                message: e.to_string(),
            })
    }
    fn is_speaking(&mut self) -> bool {
        self.tts.is_speaking().unwrap_or(false)
    }
    fn stop(&mut self) {
        let _ = self.tts.stop();
    }
    fn tone(&mut self, tone: &super::Tone) -> Result<(), SpeechError> {
        // Through the player, as the earcon; short enough to wait for.
        let mut child = play(&self.voice, tone.pcm(22_050).to_wav())?;
        let _ = child.wait();
        Ok(())
    }
}
