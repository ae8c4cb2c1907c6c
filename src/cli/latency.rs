//! `bench --hazard-photo`: the latency a user feels, from a hazard's first frame to the first
//! audio sample of its warning.
//!
//! A folder of frames is made in a temporary directory: a calm scene, then the hazard photo
//! for a few seconds, again and again, each time after the hazard's cooldown has passed so that
//! every appearance is warned of. It is replayed at `fps` through the real pipeline with a
//! profile's settings (gate, darkness check, decision), the real speech thread and the wav
//! speaker (espeak-ng synthesis included). For each appearance, the latency runs from the moment
//! its first frame leaves the source to the moment the wav speaker would start playing the
//! warning (`audio_t` in its transcript). Audio output latency after that (ALSA, Bluetooth,
//! bone conduction) is not in it.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::capture::decode::DecodeLimits;
use crate::capture::{CaptureError, FolderSource, FrameSource, SourceEvent};
use crate::pipeline::metrics::{Latency, Percentiles};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::prompts::bank::Bank;
use crate::speech::{speaker_chain, SpeakerKind, SpeechThread, TranscriptLine, VoiceConfig};
use crate::types::{Command, Frame, Kind};
use crate::vision::ImageEmbedder;

/// How long the hazard stays in view at each appearance, in seconds.
const HAZARD_S: f64 = 3.0;

/// What to replay.
#[derive(Debug, Clone)]
pub struct LatencySpec {
    /// A photo the loaded banks warn of (a bus: "Caution: vehicle ahead.").
    pub hazard: PathBuf,
    /// A photo without the hazard.
    pub calm: PathBuf,
    /// How many times the hazard appears.
    pub appearances: usize,
    /// Replay rate, frames per second.
    pub fps: f64,
    /// The profile's pipeline settings.
    pub profile: PipelineConfig,
}

/// The measured latency, hazard first frame → first audio sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HazardLatency {
    /// Times the hazard came into view.
    pub appearances: usize,
    /// Appearances warned of (the rest are missed: a failure of the run, not a slow one).
    pub warned: usize,
    /// The warning said.
    pub sentence: String,
    /// Replay rate, frames per second.
    pub fps: f64,
    /// Median, in ms.
    pub p50_ms: f32,
    /// 95th percentile, in ms.
    pub p95_ms: f32,
    /// The slowest, in ms.
    pub max_ms: f32,
}

/// A frame source that notes when each frame leaves it.
struct Stamped {
    inner: FolderSource,
    stamps: Arc<Mutex<Vec<Instant>>>,
}

impl FrameSource for Stamped {
    fn next(&mut self) -> Result<Option<Frame>, CaptureError> {
        let frame = self.inner.next();
        if let Ok(mut s) = self.stamps.lock() {
            s.push(Instant::now());
        }
        frame
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn take_events(&mut self) -> Vec<SourceEvent> {
        self.inner.take_events()
    }
}

/// The frame sequence: calm, then per appearance the hazard for [`HAZARD_S`] and calm again
/// for longer than the hazard's cooldown and leave time. Returns the files (in replay order)
/// and the index of each appearance's first hazard frame.
fn sequence(spec: &LatencySpec) -> (Vec<&Path>, Vec<usize>) {
    let d = &spec.profile.decision;
    let frames = |s: f64| (s * spec.fps).ceil().max(1.0) as usize;
    let calm = frames(d.hazard_cooldown_s + d.leave_s + d.window_s + 2.0);
    let hazard = frames(HAZARD_S);
    let mut files: Vec<&Path> = vec![spec.calm.as_path(); frames(2.0)];
    let mut firsts = Vec::new();
    for _ in 0..spec.appearances {
        firsts.push(files.len());
        files.extend(std::iter::repeat_n(spec.hazard.as_path(), hazard));
        files.extend(std::iter::repeat_n(spec.calm.as_path(), calm));
    }
    (files, firsts)
}

/// Replays the sequence and measures each appearance's latency.
pub fn hazard_to_audio(
    embedder: ImageEmbedder,
    banks: Vec<Bank>,
    spec: &LatencySpec,
) -> Result<HazardLatency> {
    if spec.appearances == 0 || !spec.fps.is_finite() || spec.fps <= 0.0 {
        bail!("hazard latency: give at least one appearance and a positive fps");
    }
    let work = std::env::temp_dir().join(format!("clipsight-latency-{}", std::process::id()));
    let result = measure(embedder, banks, spec, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn measure(
    embedder: ImageEmbedder,
    banks: Vec<Bank>,
    spec: &LatencySpec,
    work: &Path,
) -> Result<HazardLatency> {
    let (frames_dir, speech_dir) = (work.join("frames"), work.join("speech"));
    std::fs::create_dir_all(&frames_dir)
        .with_context(|| format!("{}: cannot create", frames_dir.display()))?;
    let (files, firsts) = sequence(spec);
    for (i, f) in files.iter().enumerate() {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("jpg");
        let to = frames_dir.join(format!("{i:05}.{ext}"));
        std::fs::copy(f, &to).with_context(|| format!("{}: cannot copy", f.display()))?;
    }
    let stamps = Arc::new(Mutex::new(Vec::with_capacity(files.len())));
    let source = Stamped {
        inner: FolderSource::open(&frames_dir, spec.fps, DecodeLimits::default())?,
        stamps: stamps.clone(),
    };
    let start = Instant::now();
    let voice = VoiceConfig::default();
    let chain = speaker_chain(SpeakerKind::Wav, &voice, Some(&speech_dir), start)?;
    let speech = SpeechThread::spawn(chain, &voice)?;
    let (_controls_tx, controls) = crossbeam_channel::bounded::<Command>(1);
    let mut pipeline = Pipeline::new(spec.profile, embedder, banks, None)?;
    let stats = pipeline.run(
        Box::new(source),
        &speech.tx,
        &controls,
        Arc::new(AtomicBool::new(false)),
        &mut |_| {},
    );
    speech.finish();
    stats?;
    let text = std::fs::read_to_string(speech_dir.join("transcript.jsonl"))
        .context("the wav speaker wrote no transcript")?;
    let warnings: Vec<(Instant, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<TranscriptLine>(l).ok())
        .filter(|l| l.priority == Kind::Hazard.as_str())
        .filter_map(|l| Some((start + Duration::from_secs_f64(l.audio_t?), l.text)))
        .collect();
    let stamps = stamps
        .lock()
        .map_err(|_| anyhow::anyhow!("stamps poisoned"))?;
    let mut lat = Latency::default();
    let (mut warned, mut sentence) = (0, String::new());
    for (k, &first) in firsts.iter().enumerate() {
        let Some(&seen) = stamps.get(first) else {
            continue;
        };
        let until = firsts
            .get(k + 1)
            .and_then(|&n| stamps.get(n).copied())
            .unwrap_or(start + Duration::from_secs(86_400));
        if let Some((at, text)) = warnings.iter().find(|(at, _)| *at >= seen && *at < until) {
            lat.record(*at - seen);
            warned += 1;
            sentence.clone_from(text);
        }
    }
    if warned == 0 {
        bail!(
            "{}: never warned of in {} appearances; is it a hazard for the loaded banks?",
            spec.hazard.display(),
            spec.appearances
        );
    }
    let Percentiles {
        p50_ms,
        p95_ms,
        max_ms,
        ..
    } = lat.percentiles();
    Ok(HazardLatency {
        appearances: spec.appearances,
        warned,
        sentence,
        fps: spec.fps,
        p50_ms,
        p95_ms,
        max_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_appearance_comes_after_the_cooldown_has_passed() {
        let spec = LatencySpec {
            hazard: "bus.jpg".into(),
            calm: "bench.jpg".into(),
            appearances: 3,
            fps: 4.0,
            profile: PipelineConfig::default(),
        };
        let (files, firsts) = sequence(&spec);
        assert_eq!(firsts.len(), 3);
        let cooldown = spec.profile.decision.hazard_cooldown_s;
        for w in firsts.windows(2) {
            assert!((w[1] - w[0]) as f64 / spec.fps > cooldown + HAZARD_S);
        }
        for &f in &firsts {
            assert_eq!(files[f], Path::new("bus.jpg"));
            assert_eq!(files[f - 1], Path::new("bench.jpg"));
        }
    }
}
