//! Speech: utterances → sound, on a thread of its own.
//!
//! Input: [`Utterance`]s and [`SpeechCommand`]s over a channel. Output: speech through a
//! [`Speaker`]: speech-dispatcher (the system voice, feature `speechd`), espeak-ng played
//! through ALSA, a WAV recorder (numbered WAV files plus `transcript.jsonl`), or the log.
//! Hazards jump the queue and interrupt; stale chatter is dropped rather than said late;
//! muting silences objects and people, never hazards or device status. If a backend fails,
//! the next one in the chain takes over and the failure is logged; the log speaker, last in
//! every chain, cannot fail, so no hazard is ever silently dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

use crate::decide::{Kind, Utterance};

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("{backend}: {message}")]
    Backend { backend: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    pub earcon_hz: f32,
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
    fn name(&self) -> &'static str;
    fn say(&mut self, u: &Utterance) -> Result<(), SpeechError>;
    fn is_speaking(&mut self) -> bool;
    fn stop(&mut self);
    /// Why the last utterance failed after it started (a player that died), if it did.
    fn take_failure(&mut self) -> Option<String> {
        None
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

/// Mono 16-bit PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<i16>,
}

impl Pcm {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.rate.max(1)))
    }

    /// A canonical WAV file with correct lengths.
    pub fn to_wav(&self) -> Vec<u8> {
        let data_len = (self.samples.len() * 2) as u32;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&self.rate.to_le_bytes());
        out.extend_from_slice(&(self.rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in &self.samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Parses a mono 16-bit WAV (espeak-ng's `--stdout` writes lengths as 0xFFFFFFFF when
    /// streaming, so the data chunk runs to the end of the bytes).
    pub fn from_wav(bytes: &[u8]) -> Option<Pcm> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return None;
        }
        let mut at = 12;
        let mut rate = None;
        while at + 8 <= bytes.len() {
            let id = &bytes[at..at + 4];
            let len =
                u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
                    as usize;
            let body = at + 8;
            if id == b"fmt " && body + 16 <= bytes.len() {
                let channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
                let bits = u16::from_le_bytes([bytes[body + 14], bytes[body + 15]]);
                if channels != 1 || bits != 16 {
                    return None;
                }
                rate = Some(u32::from_le_bytes([
                    bytes[body + 4],
                    bytes[body + 5],
                    bytes[body + 6],
                    bytes[body + 7],
                ]));
            } else if id == b"data" {
                let end = body.saturating_add(len).min(bytes.len());
                let samples = bytes[body..end]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Some(Pcm {
                    rate: rate?,
                    samples,
                });
            }
            at = body.saturating_add(len + (len & 1));
        }
        None
    }

    /// Root-mean-square amplitude.
    pub fn rms(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self.samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / self.samples.len() as f64).sqrt()
    }
}

/// A soft sine tone followed by a short gap.
pub fn earcon(rate: u32, hz: f32, ms: u32) -> Vec<i16> {
    const AMPLITUDE: f32 = 9000.0;
    const GAP_MS: u32 = 60;
    let n = (rate * ms / 1000) as usize;
    let fade = (n / 8).max(1);
    let mut out: Vec<i16> = (0..n)
        .map(|i| {
            let env = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
            let phase = 2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32;
            (AMPLITUDE * env * phase.sin()) as i16
        })
        .collect();
    out.extend(std::iter::repeat(0).take((rate * GAP_MS / 1000) as usize));
    out
}

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

fn with_earcon(voice: &VoiceConfig, u: &Utterance, mut pcm: Pcm) -> Pcm {
    if u.earcon && voice.earcon {
        let mut samples = earcon(pcm.rate, voice.earcon_hz, voice.earcon_ms);
        samples.append(&mut pcm.samples);
        pcm.samples = samples;
    }
    pcm
}

/// Plays a WAV through the player command; returns the running child.
fn play(voice: &VoiceConfig, wav: Vec<u8>) -> Result<Child, SpeechError> {
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
}

/// One line of `transcript.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// Seconds since the run started.
    pub t: f64,
    pub text: String,
    /// The utterance's kind: hazard, checkin, status, describe, person, object.
    pub priority: String,
    /// The label priority from the bank (0 for status).
    pub rank: u8,
    pub wav: String,
    /// Seconds of audio.
    pub duration: f64,
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
        if self.is_speaking() {
            if let Some(cut) = self.current.take() {
                self.write_line(&TranscriptLine {
                    t,
                    text: String::new(),
                    priority: "interrupt".into(),
                    rank: 0,
                    wav: String::new(),
                    duration: 0.0,
                    interrupted: Some(cut),
                })?;
            }
        }
        let pcm = with_earcon(&self.voice, u, espeak_synth(&self.voice, &u.text)?);
        self.count += 1;
        let name = format!("{:04}.wav", self.count);
        let path = self.dir.join(&name);
        std::fs::write(&path, pcm.to_wav()).map_err(|source| SpeechError::Io { path, source })?;
        let duration = pcm.duration();
        self.write_line(&TranscriptLine {
            t,
            text: u.text.clone(),
            priority: u.kind.as_str().into(),
            rank: u.priority,
            wav: name.clone(),
            duration: duration.as_secs_f64(),
            interrupted: None,
        })?;
        self.busy_until = Some(Instant::now() + duration);
        self.current = Some(name);
        Ok(())
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
    fn stop(&mut self) {
        self.busy_until = None;
    }
}

/// The system voice through speech-dispatcher.
#[cfg(all(feature = "speechd", target_os = "linux"))]
pub struct SpeechDispatcherSpeaker {
    tts: tts::Tts,
    voice: VoiceConfig,
}

#[cfg(all(feature = "speechd", target_os = "linux"))]
impl SpeechDispatcherSpeaker {
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

#[cfg(all(feature = "speechd", target_os = "linux"))]
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
}

/// Which backend to speak with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SpeakerKind {
    Speechd,
    Espeak,
    Wav,
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

/// Messages to the speech thread.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechCommand {
    Say(Utterance),
    /// Mute or unmute objects and people (`None` toggles).
    Mute(Option<bool>),
    RepeatLast,
    /// Say what is queued, then stop.
    Finish,
    /// Stop now.
    Stop,
}

/// Counters of the speech thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpeechStats {
    pub spoken: u64,
    pub interrupted: u64,
    pub dropped_stale: u64,
    pub muted: u64,
    pub backend_failures: u64,
}

/// How often the speech loop wakes to poll the backend, at most.
const SPEECH_POLL: Duration = Duration::from_millis(20);
/// The longest the speech thread waits for a sentence to finish when asked to finish.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

struct SpeechLoop {
    chain: Vec<Box<dyn Speaker>>,
    active: usize,
    queue: VecDeque<(Utterance, Instant)>,
    current: Option<Utterance>,
    last: Option<Utterance>,
    muted: bool,
    stale_after: Duration,
    stats: SpeechStats,
}

impl SpeechLoop {
    fn speaking(&mut self) -> bool {
        let speaking = self.chain[self.active].is_speaking();
        if !speaking {
            let current = self.current.take();
            if let Some(why) = self.chain[self.active].take_failure() {
                // The backend died while speaking: say it again on the next one.
                self.stats.backend_failures += 1;
                if self.active + 1 < self.chain.len() {
                    let failed = self.chain[self.active].name();
                    self.active += 1;
                    log::error!(
                        "speech backend {failed} failed: {why}; falling back to {}",
                        self.chain[self.active].name()
                    );
                    if let Some(u) = current {
                        self.speak(u);
                        return self.chain[self.active].is_speaking();
                    }
                }
            }
        }
        speaking
    }

    fn enqueue(&mut self, u: Utterance) {
        if self.muted && matches!(u.kind, Kind::Object | Kind::Person) {
            self.stats.muted += 1;
            return;
        }
        if u.interrupt {
            let more_urgent_playing = self.current.as_ref().is_some_and(|c| c.kind > u.kind);
            if !more_urgent_playing && self.speaking() {
                self.chain[self.active].stop();
                self.stats.interrupted += 1;
                self.current = None;
            }
        }
        // Keep the queue ordered by urgency; equal kinds keep their order.
        let pos = self
            .queue
            .iter()
            .position(|(q, _)| q.kind < u.kind)
            .unwrap_or(self.queue.len());
        self.queue.insert(pos, (u, Instant::now()));
    }

    /// Speaks `u`, falling back along the chain. The last speaker (the log) cannot fail.
    fn speak(&mut self, u: Utterance) {
        loop {
            match self.chain[self.active].say(&u) {
                Ok(()) => {
                    self.stats.spoken += 1;
                    self.current = Some(u.clone());
                    if u.kind != Kind::Status || self.last.is_none() {
                        self.last = Some(u);
                    }
                    return;
                }
                Err(e) => {
                    self.stats.backend_failures += 1;
                    let failed = self.chain[self.active].name();
                    if self.active + 1 < self.chain.len() {
                        self.active += 1;
                        log::error!(
                            "speech backend {failed} failed: {e}; falling back to {}",
                            self.chain[self.active].name()
                        );
                    } else {
                        log::error!("could not speak {:?}: {e}", u.text);
                        return;
                    }
                }
            }
        }
    }

    fn pump(&mut self) {
        if self.speaking() {
            return;
        }
        while let Some((u, queued)) = self.queue.pop_front() {
            let urgent = matches!(u.kind, Kind::Hazard | Kind::CheckIn | Kind::Status);
            if !urgent && queued.elapsed() > self.stale_after {
                self.stats.dropped_stale += 1;
                log::debug!("dropped stale: {}", u.text);
                continue;
            }
            self.speak(u);
            return;
        }
    }
}

/// The speech thread's handle.
pub struct SpeechThread {
    pub tx: Sender<SpeechCommand>,
    handle: JoinHandle<SpeechStats>,
}

impl SpeechThread {
    /// Starts the thread with a speaker chain (see [`speaker_chain`]).
    pub fn spawn(chain: Vec<Box<dyn Speaker>>, voice: &VoiceConfig) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let mut state = SpeechLoop {
            chain,
            active: 0,
            queue: VecDeque::new(),
            current: None,
            last: None,
            muted: false,
            stale_after: Duration::from_secs_f64(voice.stale_after_s.max(0.0)),
            stats: SpeechStats::default(),
        };
        if state.chain.is_empty() {
            state.chain.push(Box::new(LogSpeaker));
        }
        let handle = std::thread::Builder::new()
            .name("speech".into())
            .spawn(move || run_loop(state, rx))?;
        Ok(SpeechThread { tx, handle })
    }

    /// Asks the thread to say what is queued and waits for it.
    pub fn finish(self) -> SpeechStats {
        let _ = self.tx.send(SpeechCommand::Finish);
        self.handle.join().unwrap_or_default()
    }

    /// Stops the thread at once.
    pub fn stop(self) -> SpeechStats {
        let _ = self.tx.send(SpeechCommand::Stop);
        self.handle.join().unwrap_or_default()
    }
}

fn run_loop(mut s: SpeechLoop, rx: Receiver<SpeechCommand>) -> SpeechStats {
    let mut finishing: Option<Instant> = None;
    loop {
        match rx.recv_timeout(SPEECH_POLL) {
            Ok(SpeechCommand::Say(u)) => s.enqueue(u),
            Ok(SpeechCommand::Mute(m)) => {
                s.muted = m.unwrap_or(!s.muted);
                let text = if s.muted { "Muted." } else { "Unmuted." };
                s.enqueue(Utterance {
                    interrupt: true,
                    ..Utterance::status(text, 0.0)
                });
            }
            Ok(SpeechCommand::RepeatLast) => {
                let again = s
                    .last
                    .clone()
                    .unwrap_or_else(|| Utterance::status("Nothing said yet.", 0.0));
                s.enqueue(Utterance {
                    interrupt: true,
                    kind: again.kind.max(Kind::Describe),
                    ..again
                });
            }
            Ok(SpeechCommand::Finish) => finishing = Some(Instant::now()),
            Ok(SpeechCommand::Stop) | Err(RecvTimeoutError::Disconnected) => {
                if finishing.is_none() {
                    s.chain[s.active].stop();
                    return s.stats;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        s.pump();
        if let Some(since) = finishing {
            if (s.queue.is_empty() && !s.speaking()) || since.elapsed() > FINISH_TIMEOUT {
                return s.stats;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what it was asked to say; "speaks" for a fixed time; can be made to fail.
    struct Fake {
        said: Arc<Mutex<Vec<String>>>,
        busy_until: Option<Instant>,
        length: Duration,
        fail: bool,
    }

    impl Speaker for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn say(&mut self, u: &Utterance) -> Result<(), SpeechError> {
            if self.fail {
                return Err(SpeechError::Backend {
                    backend: "fake".into(),
                    message: "died".into(),
                });
            }
            self.said.lock().unwrap().push(u.text.clone());
            self.busy_until = Some(Instant::now() + self.length);
            Ok(())
        }
        fn is_speaking(&mut self) -> bool {
            self.busy_until.is_some_and(|t| Instant::now() < t)
        }
        fn stop(&mut self) {
            self.said.lock().unwrap().push("<stop>".into());
            self.busy_until = None;
        }
    }

    fn fake(length_ms: u64, fail: bool) -> (Box<dyn Speaker>, Arc<Mutex<Vec<String>>>) {
        let said = Arc::new(Mutex::new(Vec::new()));
        let s = Fake {
            said: said.clone(),
            busy_until: None,
            length: Duration::from_millis(length_ms),
            fail,
        };
        (Box::new(s), said)
    }

    fn u(text: &str, kind: Kind) -> Utterance {
        Utterance {
            text: text.into(),
            kind,
            priority: 0,
            t: 0.0,
            interrupt: kind == Kind::Hazard,
            earcon: kind == Kind::Hazard,
        }
    }

    #[test]
    fn a_hazard_interrupts_and_jumps_the_queue() {
        let (speaker, said) = fake(300, false);
        let th = SpeechThread::spawn(vec![speaker], &VoiceConfig::default()).unwrap();
        th.tx
            .send(SpeechCommand::Say(u("chair", Kind::Object)))
            .unwrap();
        th.tx
            .send(SpeechCommand::Say(u("table", Kind::Object)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        th.tx
            .send(SpeechCommand::Say(u("stairs!", Kind::Hazard)))
            .unwrap();
        let stats = th.finish();
        let said = said.lock().unwrap().clone();
        assert_eq!(said, ["chair", "<stop>", "stairs!", "table"]);
        assert_eq!(stats.interrupted, 1);
    }

    #[test]
    fn a_dying_backend_falls_back_and_the_hazard_is_still_said() {
        let (broken, _) = fake(0, true);
        let (backup, said) = fake(0, false);
        let th = SpeechThread::spawn(vec![broken, backup], &VoiceConfig::default()).unwrap();
        th.tx
            .send(SpeechCommand::Say(u("car coming!", Kind::Hazard)))
            .unwrap();
        let stats = th.finish();
        assert_eq!(said.lock().unwrap().clone(), ["car coming!"]);
        assert_eq!(stats.backend_failures, 1);
    }

    /// Accepts every sentence, then reports that its player died.
    struct Dying(bool);
    impl Speaker for Dying {
        fn name(&self) -> &'static str {
            "dying"
        }
        fn say(&mut self, _: &Utterance) -> Result<(), SpeechError> {
            self.0 = true;
            Ok(())
        }
        fn is_speaking(&mut self) -> bool {
            false
        }
        fn stop(&mut self) {}
        fn take_failure(&mut self) -> Option<String> {
            std::mem::take(&mut self.0).then(|| "player exited with 1".into())
        }
    }

    #[test]
    fn a_player_dying_mid_sentence_is_replaced_and_the_sentence_said_again() {
        let (backup, said) = fake(0, false);
        let th = SpeechThread::spawn(
            vec![Box::new(Dying(false)), backup],
            &VoiceConfig::default(),
        )
        .unwrap();
        th.tx
            .send(SpeechCommand::Say(u("stairs!", Kind::Hazard)))
            .unwrap();
        th.tx
            .send(SpeechCommand::Say(u("chair", Kind::Object)))
            .unwrap();
        let stats = th.finish();
        assert_eq!(said.lock().unwrap().clone(), ["stairs!", "chair"]);
        assert_eq!(stats.backend_failures, 1);
    }

    #[test]
    fn mute_silences_objects_not_hazards_and_repeat_works() {
        let (speaker, said) = fake(0, false);
        let th = SpeechThread::spawn(vec![speaker], &VoiceConfig::default()).unwrap();
        th.tx
            .send(SpeechCommand::Say(u("door", Kind::Object)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        th.tx.send(SpeechCommand::Mute(Some(true))).unwrap();
        th.tx
            .send(SpeechCommand::Say(u("cup", Kind::Object)))
            .unwrap();
        th.tx
            .send(SpeechCommand::Say(u("knife!", Kind::Hazard)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        th.tx.send(SpeechCommand::RepeatLast).unwrap();
        let stats = th.finish();
        let said = said.lock().unwrap().clone();
        assert_eq!(said.first().map(String::as_str), Some("door"));
        assert!(said.contains(&"Muted.".to_string()));
        assert!(!said.contains(&"cup".to_string()));
        assert_eq!(
            said.iter().filter(|s| *s == "knife!").count(),
            2,
            "{said:?}"
        );
        assert_eq!(stats.muted, 1);
    }

    #[test]
    fn stale_chatter_is_dropped() {
        let (speaker, said) = fake(400, false);
        let voice = VoiceConfig {
            stale_after_s: 0.2,
            ..Default::default()
        };
        let th = SpeechThread::spawn(vec![speaker], &voice).unwrap();
        th.tx
            .send(SpeechCommand::Say(u("one", Kind::Object)))
            .unwrap();
        th.tx
            .send(SpeechCommand::Say(u("two", Kind::Object)))
            .unwrap();
        th.tx
            .send(SpeechCommand::Say(u("ready", Kind::Status)))
            .unwrap();
        let stats = th.finish();
        assert_eq!(said.lock().unwrap().clone(), ["one", "ready"]);
        assert_eq!(stats.dropped_stale, 1);
    }

    #[test]
    fn wav_round_trip_and_earcon() {
        let pcm = Pcm {
            rate: 16_000,
            samples: earcon(16_000, 880.0, 100),
        };
        assert!(pcm.rms() > 1000.0);
        let back = Pcm::from_wav(&pcm.to_wav()).unwrap();
        assert_eq!(back, pcm);
        assert!(Pcm::from_wav(b"RIFF....WAVEjunk").is_none());
        assert!((pcm.duration().as_secs_f64() - 0.16).abs() < 0.01);
    }
}
