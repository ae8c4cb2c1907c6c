//! `clipsight bench`: how fast, how big and how faithful an image encoder is on this machine.
//!
//! Input: a [`BenchSpec`] (an encoder: a bundle's or a bare ONNX file; the runtime and its
//! threads; optionally an fp32 reference encoder and prompt banks; a folder of real photos).
//! Output: a [`BenchReport`]:
//! - load + optimize time of the encoder under test;
//! - per-stage p50/p95 over `iters` frames: decode, preprocess, encode, match;
//! - the preprocessing time of a 640×480 frame on its own;
//! - encoder-only frames/s, and the frames/s of the real [`Pipeline`] replaying the photo
//!   folder (change gate off, darkness check off, a log speaker), fed a little faster than the
//!   encoder can go so the encoder is the bottleneck;
//! - peak resident memory (`VmHWM`, reset after the reference encoder is dropped when the
//!   kernel allows it);
//! - with a reference: the cosine of each photo's embedding against the reference's, and with
//!   banks, how often both pick the same top-1 label.
//!
//! Timings are measurements, never assertions. Failures are errors with context (this is the command's edge); a photo that
//! cannot be decoded is skipped and counted, as in the pipeline.

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::decode::{decode_file, DecodeLimits};
use crate::capture::{image_files, FolderSource};
use crate::matching::Matcher;
use crate::model::{Bundle, ModelIdentity};
use crate::pipeline::metrics::{Latency, Percentiles};
use crate::pipeline::{Pipeline, PipelineConfig, PipelineError};
use crate::prompts::bank::{Bank, BankEntry};
use crate::speech::{LogSpeaker, SpeechThread, VoiceConfig};
use crate::types::Category;
use crate::types::Command;
use crate::types::RgbView;
use crate::types::Scores;
use crate::vision::encoder::{EncoderOptions, ImageGraph};
use crate::vision::gate::{DarkConfig, GateConfig};
use crate::vision::pose::PoseEstimator;
use crate::vision::preprocess::{PreprocessSpec, Preprocessor};
use crate::vision::select::load_image_encoder;
use crate::vision::ImageEmbedder;

/// The pipeline replay is fed this much faster than the encoder-only rate, so that the encoder
/// (not the replay clock) limits it.
pub const REPLAY_OVERSPEED: f64 = 1.25;
/// Labels of the stand-in bank used for the match stage when no bank is given (COCO's count).
pub const SYNTHETIC_LABELS: usize = 80;
/// The size of the frame whose preprocessing is timed on its own (a VGA camera frame).
pub const CAMERA_FRAME: (u32, u32) = (640, 480);
/// How many times that frame is preprocessed.
const CAMERA_FRAME_RUNS: usize = 200;

/// Which encoder to measure.
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderSource {
    /// A bundle's image tower.
    Bundle(PathBuf),
    /// Another ONNX image encoder (a re-quantized copy of a bundle's tower): the bundle's
    /// preprocessing and tensor names apply. Nothing about a model is assumed.
    File {
        /// The ONNX file.
        path: PathBuf,
        /// The bundle whose preprocessing and tensor names apply.
        bundle: PathBuf,
    },
}

/// Whether and how to run the real pipeline on the photo folder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PipelineRun {
    /// No replay.
    Off,
    /// Replay the photos at this rate; `None`: [`REPLAY_OVERSPEED`] × the encoder-only rate.
    Replay {
        /// Replay rate, in frames per second.
        fps: Option<f64>,
    },
}

/// What to measure (what the user asked for, before anything is loaded).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSpec {
    /// The encoder under test.
    pub encoder: EncoderSource,
    /// Its runtime, device and threads (the reference runs the same way).
    pub options: EncoderOptions,
    /// The fp32 encoder the one under test is compared with (same input and output).
    pub reference: Option<PathBuf>,
    /// Prompt banks made with the reference model, for top-1 agreement and the match stage.
    pub banks: Vec<PathBuf>,
    /// A folder of real photos.
    pub photos: PathBuf,
    /// Timed frames.
    pub iters: usize,
    /// Untimed frames first (the accuracy pass over every photo also warms up).
    pub warmup: usize,
    /// Whether to replay the photos through the real pipeline.
    pub pipeline: PipelineRun,
    /// A person/pose bundle: its stage is timed on the photos and runs in the replay.
    pub person_model: Option<PathBuf>,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchPhase {
    /// Embedding every photo with the reference encoder.
    Reference,
    /// Comparing with the reference over every photo, or the untimed warm-up frames.
    Accuracy,
    /// The timed frames.
    Timing,
    /// The pipeline replay.
    Pipeline,
}

impl BenchPhase {
    /// The phase's name for the progress bar ("reference", "accuracy", "timing", "pipeline").
    pub fn as_str(self) -> &'static str {
        match self {
            BenchPhase::Reference => "reference",
            BenchPhase::Accuracy => "accuracy",
            BenchPhase::Timing => "timing",
            BenchPhase::Pipeline => "pipeline",
        }
    }
}

/// Per-stage latencies of the timed frames, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stages {
    /// Decoding the photo file.
    pub decode: Percentiles,
    /// Resize, crop and normalize.
    pub preprocess: Percentiles,
    /// The image encoder.
    pub encode: Percentiles,
    /// Cosines against every bank and the top-1 pick (JSON key `match`).
    #[serde(rename = "match")]
    pub matching: Percentiles,
}

/// The pipeline replay's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PipelineReport {
    /// The rate the photos were fed at, in frames per second.
    pub replay_fps: f64,
    /// Frames the folder source delivered.
    pub frames_in: u64,
    /// Frames encoded.
    pub processed: u64,
    /// Frames replaced by a newer one before the encoder got to them.
    pub dropped: u64,
    /// Replay run time, in seconds.
    pub elapsed_s: f64,
    /// Frames encoded per second of the replay.
    pub fps: f64,
}

/// Everything a run measured. Serialized as the `--json` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// The ONNX file under test.
    pub model: PathBuf,
    /// The runtime ("tract", "ort").
    pub backend: &'static str,
    /// The onnxruntime execution provider that ran the graph ("CPU", "CUDA"); none for tract.
    pub execution_provider: Option<&'static str>,
    /// Threads for the matrix products.
    pub threads: usize,
    /// Photos in the folder.
    pub photos: usize,
    /// Photos that could not be decoded in the accuracy or warm-up pass.
    pub bad_photos: usize,
    /// Timed frames.
    pub iters: usize,
    /// The encoder's embedding size.
    pub dim: usize,
    /// Load + optimize time of the encoder under test.
    pub load_ms: f64,
    /// Per-stage latencies of the timed frames.
    pub stages: Stages,
    /// Median encode time, in ms (the same as `stages.encode.p50_ms`).
    pub encode_ms_p50: f32,
    /// 95th-percentile encode time, in ms.
    pub encode_ms_p95: f32,
    /// Preprocessing of one 640×480 frame (decode excluded): median, in ms.
    pub preprocess_640x480_ms_p50: f32,
    /// …and its 95th percentile, in ms.
    pub preprocess_640x480_ms_p95: f32,
    /// 1 / mean encode time of the timed frames.
    pub encoder_fps: f64,
    /// The pose stage on the photos (with a person model): median, in ms.
    pub pose_ms_p50: Option<f32>,
    /// …and its 95th percentile, in ms.
    pub pose_ms_p95: Option<f32>,
    /// The pipeline replay's result, if it ran.
    pub pipeline: Option<PipelineReport>,
    /// Pipeline frames/s ÷ encoder-only frames/s.
    pub pipeline_vs_encoder: Option<f64>,
    /// Pipeline frames/s ÷ (1000 / (encode p50 + pose p50)): what the stages allow, with a
    /// person model.
    pub pipeline_vs_stages: Option<f64>,
    /// Peak resident memory (VmHWM), MiB.
    pub peak_rss_mb: Option<f64>,
    /// Whether the peak was reset after the reference encoder was dropped.
    pub peak_rss_excludes_reference: bool,
    /// Hazard first frame → first audio sample of its warning (`--hazard-photo`).
    pub hazard_to_audio_ms: Option<crate::cli::latency::HazardLatency>,
    /// The fp32 reference encoder, if one was given.
    pub reference: Option<PathBuf>,
    /// Mean embedding cosine to the reference over the photos.
    pub cosine_vs_reference: Option<f64>,
    /// The lowest embedding cosine to the reference over the photos.
    pub cosine_vs_reference_min: Option<f64>,
    /// Fraction of (photo, bank) pairs whose top-1 label matches the reference's.
    pub top1_agreement: Option<f64>,
    /// (photo, bank) pairs compared for top-1 agreement.
    pub top1_compared: usize,
}

impl BenchReport {
    /// A human-readable summary, one fact per line.
    pub fn to_text(&self) -> String {
        let p = |p: &Percentiles| format!("p50 {:8.2} ms   p95 {:8.2} ms", p.p50_ms, p.p95_ms);
        let mut lines = vec![
            format!(
                "model      {} ({}{}, {} thread{}, dim {})",
                self.model.display(),
                self.backend,
                self.execution_provider
                    .map(|p| format!(" on {p}"))
                    .unwrap_or_default(),
                self.threads,
                if self.threads == 1 { "" } else { "s" },
                self.dim
            ),
            format!(
                "photos     {} ({} unreadable), {} timed frames",
                self.photos, self.bad_photos, self.iters
            ),
            format!("load       {:.0} ms (load + optimize)", self.load_ms),
            format!("decode     {}", p(&self.stages.decode)),
            format!("preprocess {}", p(&self.stages.preprocess)),
            format!("encode     {}", p(&self.stages.encode)),
            format!("match      {}", p(&self.stages.matching)),
            format!(
                "640x480    preprocess p50 {:.2} ms, p95 {:.2} ms",
                self.preprocess_640x480_ms_p50, self.preprocess_640x480_ms_p95
            ),
            format!("encoder    {:.2} frames/s", self.encoder_fps),
        ];
        if let (Some(p50), Some(p95)) = (self.pose_ms_p50, self.pose_ms_p95) {
            lines.push(format!("pose       p50 {p50:8.2} ms   p95 {p95:8.2} ms"));
        }
        if let (Some(pl), Some(r)) = (&self.pipeline, self.pipeline_vs_encoder) {
            lines.push(format!(
                "pipeline   {:.2} frames/s = {:.2}× encoder-only ({} of {} frames encoded, \
                 replay at {:.1} fps)",
                pl.fps, r, pl.processed, pl.frames_in, pl.replay_fps
            ));
        }
        if let Some(r) = self.pipeline_vs_stages {
            lines.push(format!(
                "pipeline   {r:.2}× what encode + pose allow (1000 / (encode p50 + pose p50))"
            ));
        }
        if let Some(mb) = self.peak_rss_mb {
            lines.push(format!(
                "peak RSS   {mb:.0} MiB{}",
                if self.peak_rss_excludes_reference || self.reference.is_none() {
                    ""
                } else {
                    " (includes the reference encoder)"
                }
            ));
        }
        if let (Some(mean), Some(min)) = (self.cosine_vs_reference, self.cosine_vs_reference_min) {
            lines.push(format!(
                "cosine     mean {mean:.5}, min {min:.5} vs the reference"
            ));
        }
        if let Some(a) = self.top1_agreement {
            lines.push(format!(
                "top-1      {:.1}% agreement with the reference ({} photo×bank pairs)",
                100.0 * a,
                self.top1_compared
            ));
        }
        if let Some(h) = &self.hazard_to_audio_ms {
            lines.push(format!(
                "hazard     first frame → first audio sample: p50 {:.0} ms, p95 {:.0} ms, max \
                 {:.0} ms ({} of {} appearances warned at {} fps: {:?})",
                h.p50_ms, h.p95_ms, h.max_ms, h.warned, h.appearances, h.fps, h.sentence
            ));
        }
        lines.join("\n")
    }
}

/// The peak resident set size of this process (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident set size to the current one (Linux: `clear_refs` 5).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The photos of a folder, in file-name order.
pub fn list_photos(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let files =
        image_files(dir).with_context(|| format!("{}: cannot list photos", dir.display()))?;
    if files.is_empty() {
        return Err(anyhow::anyhow!(format!(
            "{}: no photos in the folder",
            dir.display()
        )));
    }
    Ok(files)
}

/// The encoder under test resolved: graph and preprocessing.
struct Resolved {
    graph: ImageGraph,
    spec: PreprocessSpec,
}

fn resolve(source: &EncoderSource) -> anyhow::Result<Resolved> {
    let (dir, file) = match source {
        EncoderSource::Bundle(dir) => (dir, None),
        EncoderSource::File { path, bundle } => (bundle, Some(path)),
    };
    let bundle = Bundle::load(dir)?;
    let mut graph = ImageGraph::of_bundle(&bundle);
    if let Some(path) = file {
        graph.path = path.clone();
    }
    Ok(Resolved {
        graph,
        spec: (&bundle.manifest.image).into(),
    })
}

/// `bench --kernels`: the kernel audit of the encoder under test on this CPU (tract only).
fn kernels(source: &EncoderSource, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let resolved = resolve(source)?;
    let report = crate::vision::kernels::audit(&resolved.graph)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.problems().is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// A deterministic bank of unit vectors, so the match stage has the work of a real one.
fn synthetic_bank(dim: usize) -> anyhow::Result<Bank> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut embeddings = Vec::with_capacity(SYNTHETIC_LABELS * dim);
    let mut entries = Vec::with_capacity(SYNTHETIC_LABELS);
    for i in 0..SYNTHETIC_LABELS {
        let mut row: Vec<f32> = (0..dim).map(|_| next()).collect();
        crate::matching::normalize(&mut row);
        embeddings.extend(row);
        entries.push(BankEntry {
            label: format!("label {i}"),
            category: Category::Object,
            priority: 1,
            say: format!("label {i}"),
            // Never present: the decision engine stays quiet.
            threshold: 2.0,
            neg_mean: 0.0,
            neg_std: 1.0,
            aliases: Vec::new(),
            calibration: crate::prompts::bank::Evidence::UNKNOWN,
            source: Default::default(),
            gate: Vec::new(),
        });
    }
    Bank::new(
        "synthetic".into(),
        ModelIdentity {
            id: "bench".into(),
            fingerprint: "none".into(),
        },
        "none".into(),
        entries,
        dim,
        embeddings,
    )
    .map_err(anyhow::Error::msg)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The index of the largest value (NaN-safe); the top-1 label.
fn argmax(v: &[f32]) -> Option<usize> {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the benchmark. `progress(phase, done, total)` is called as frames go by.
pub fn run(
    spec: &BenchSpec,
    progress: &mut dyn FnMut(BenchPhase, usize, usize),
) -> anyhow::Result<BenchReport> {
    if spec.iters == 0 {
        return Err(anyhow::anyhow!("iters must be at least 1"));
    }
    let resolved = resolve(&spec.encoder)?;
    let photos = list_photos(&spec.photos)?;
    let limits = DecodeLimits::default();
    let loaded_banks = spec
        .banks
        .iter()
        .map(|p| Bank::load(p))
        .collect::<Result<Vec<_>, _>>()?;

    // 1. The reference's embeddings of every photo; then it is dropped.
    let mut reference_embeddings: Vec<Option<Vec<f32>>> = Vec::new();
    if let Some(path) = &spec.reference {
        let graph = ImageGraph {
            path: path.clone(),
            ..resolved.graph.clone()
        };
        let encoder = load_image_encoder(&graph, &spec.options)?;
        let mut embedder = ImageEmbedder::new(resolved.spec.clone(), encoder)?;
        for (i, photo) in photos.iter().enumerate() {
            let e = match decode_file(photo, limits) {
                Ok(img) => Some(embedder.embed((&img).into())?.to_vec()),
                Err(e) => {
                    log::warn!("skipped: {e}");
                    None
                }
            };
            reference_embeddings.push(e);
            progress(BenchPhase::Reference, i + 1, photos.len());
        }
    }
    let peak_reset = reset_peak_rss();

    // 2. The encoder under test.
    let start = Instant::now();
    let encoder = load_image_encoder(&resolved.graph, &spec.options)?;
    let load_ms = ms(start.elapsed());
    let execution_provider = encoder.execution_provider();
    let dim = encoder.dim();
    for b in &loaded_banks {
        if b.dim() != dim {
            return Err(anyhow::anyhow!(format!(
                "bank {} holds {}-dimensional embeddings but the encoder makes {dim}",
                b.name,
                b.dim()
            )));
        }
    }
    let banks = if loaded_banks.is_empty() {
        vec![synthetic_bank(dim)?]
    } else {
        loaded_banks
    };
    let mut embedder = ImageEmbedder::new(resolved.spec.clone(), encoder)?;
    // The match stage as every command runs it: all banks, calibrated scores, precision checks.
    let mut matcher = Matcher::new(banks);
    let (mut scores, mut ref_scores) = (Scores::default(), Scores::default());

    // 3. Accuracy over every photo (with a reference), which also warms up; else `warmup`
    //    untimed frames.
    let mut cosines = Vec::new();
    let (mut agree, mut compared, mut bad) = (0usize, 0usize, 0usize);
    let accuracy_photos = if spec.reference.is_some() {
        photos.len()
    } else {
        spec.warmup.min(photos.len())
    };
    for (i, photo) in photos.iter().take(accuracy_photos).enumerate() {
        let img = match decode_file(photo, limits) {
            Ok(img) => img,
            Err(e) => {
                log::warn!("skipped: {e}");
                bad += 1;
                continue;
            }
        };
        let e = embedder.embed((&img).into())?;
        if let Some(Some(r)) = reference_embeddings.get(i) {
            cosines.push(f64::from(dot(e, r)));
            if !spec.banks.is_empty() {
                matcher.score(e, &mut scores);
                matcher.score(r, &mut ref_scores);
                let mut at = 0;
                for bank in matcher.banks() {
                    let range = at..at + bank.len();
                    at += bank.len();
                    let (c, rc) = (&scores.cosine[range.clone()], &ref_scores.cosine[range]);
                    compared += 1;
                    agree += usize::from(argmax(c) == argmax(rc));
                }
            }
        }
        progress(BenchPhase::Accuracy, i + 1, accuracy_photos);
    }

    // 4. Timed frames: decode, preprocess + encode, match.
    let (mut t_decode, mut t_pre, mut t_enc, mut t_match) = (
        Latency::default(),
        Latency::default(),
        Latency::default(),
        Latency::default(),
    );
    let mut encode_total = Duration::ZERO;
    let mut timed = 0usize;
    let mut attempts = 0usize;
    while timed < spec.iters {
        let photo = &photos[attempts % photos.len()];
        attempts += 1;
        if attempts > spec.iters + photos.len() && timed == 0 {
            return Err(anyhow::anyhow!("no photo could be decoded"));
        }
        let t0 = Instant::now();
        let Ok(img) = decode_file(photo, limits) else {
            continue;
        };
        t_decode.record(t0.elapsed());
        let t1 = Instant::now();
        embedder.preprocess((&img).into())?;
        let t2 = Instant::now();
        let e = embedder.encode()?;
        let t3 = Instant::now();
        matcher.score(e, &mut scores);
        std::hint::black_box(argmax(&scores.z));
        t_match.record(t3.elapsed());
        t_pre.record(t2 - t1);
        t_enc.record(t3 - t2);
        encode_total += t3 - t2;
        timed += 1;
        progress(BenchPhase::Timing, timed, spec.iters);
    }
    let encoder_fps = timed as f64 / encode_total.as_secs_f64().max(f64::MIN_POSITIVE);

    // 5. Preprocessing of a camera-sized frame alone.
    let (pre_p50, pre_p95) = time_camera_frame(&photos, &resolved.spec, limits)?;

    // 6. The pose stage on the photos, as many timed frames as the encoder had.
    let mut pose = crate::cli::load_person_model(spec.person_model.as_deref(), &spec.options)?;
    let pose_times = match pose.as_mut() {
        Some(pose) => Some(time_pose(pose, &photos, timed, limits, progress)?),
        None => None,
    };
    // What the stages allow per frame, in frames/s.
    let stage_fps = 1000.0
        / f64::from(t_enc.percentiles().p50_ms + pose_times.map_or(0.0, |p| p.p50_ms)).max(1e-3);

    // 7. The real pipeline on the photo folder.
    let pipeline = match spec.pipeline {
        PipelineRun::Off => None,
        PipelineRun::Replay { fps } => {
            let fps = fps.unwrap_or(REPLAY_OVERSPEED * encoder_fps.min(stage_fps));
            let mut pipeline =
                Pipeline::new(replay_config(), embedder, matcher.banks().to_vec(), None)?;
            if let Some(pose) = pose {
                pipeline = pipeline.with_pose(pose);
            }
            Some(replay(pipeline, &spec.photos, fps, limits, progress)?)
        }
    };
    let stages = Stages {
        decode: t_decode.percentiles(),
        preprocess: t_pre.percentiles(),
        encode: t_enc.percentiles(),
        matching: t_match.percentiles(),
    };
    let (cos_mean, cos_min) = if cosines.is_empty() {
        (None, None)
    } else {
        (
            Some(cosines.iter().sum::<f64>() / cosines.len() as f64),
            Some(cosines.iter().copied().fold(f64::INFINITY, f64::min)),
        )
    };
    Ok(BenchReport {
        model: resolved.graph.path.clone(),
        backend: spec.options.backend.as_str(),
        execution_provider,
        threads: spec.options.threads.max(1),
        photos: photos.len(),
        bad_photos: bad,
        iters: timed,
        dim,
        load_ms,
        stages,
        encode_ms_p50: stages.encode.p50_ms,
        encode_ms_p95: stages.encode.p95_ms,
        preprocess_640x480_ms_p50: pre_p50,
        preprocess_640x480_ms_p95: pre_p95,
        encoder_fps,
        pose_ms_p50: pose_times.map(|p| p.p50_ms),
        pose_ms_p95: pose_times.map(|p| p.p95_ms),
        pipeline_vs_encoder: pipeline.map(|p| p.fps / encoder_fps),
        pipeline_vs_stages: pipeline
            .filter(|_| pose_times.is_some())
            .map(|p| p.fps / stage_fps),
        pipeline,
        peak_rss_mb: peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
        peak_rss_excludes_reference: peak_reset && spec.reference.is_some(),
        hazard_to_audio_ms: None,
        reference: spec.reference.clone(),
        cosine_vs_reference: cos_mean,
        cosine_vs_reference_min: cos_min,
        top1_agreement: (compared > 0).then(|| agree as f64 / compared as f64),
        top1_compared: compared,
    })
}

/// Preprocesses the first readable photo, resized to 640×480, many times: (p50, p95) in ms.
fn time_camera_frame(
    photos: &[PathBuf],
    spec: &PreprocessSpec,
    limits: DecodeLimits,
) -> anyhow::Result<(f32, f32)> {
    let Some(img) = photos.iter().find_map(|p| decode_file(p, limits).ok()) else {
        return Err(anyhow::anyhow!("no photo could be decoded"));
    };
    let (w, h) = CAMERA_FRAME;
    let frame = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let mut pre = Preprocessor::new(spec.clone());
    let mut out = vec![0f32; pre.output_len()];
    let view = RgbView::from(&frame);
    pre.run(view, &mut out).map_err(anyhow::Error::from)?;
    let mut lat = Latency::default();
    for _ in 0..CAMERA_FRAME_RUNS {
        let t = Instant::now();
        pre.run(view, &mut out).map_err(anyhow::Error::from)?;
        lat.record(t.elapsed());
    }
    let p = lat.percentiles();
    Ok((p.p50_ms, p.p95_ms))
}

/// Times the pose stage on the readable photos, `frames` times after one untimed frame.
fn time_pose(
    pose: &mut PoseEstimator,
    photos: &[PathBuf],
    frames: usize,
    limits: DecodeLimits,
    progress: &mut dyn FnMut(BenchPhase, usize, usize),
) -> anyhow::Result<Percentiles> {
    let images: Vec<_> = photos
        .iter()
        .filter_map(|p| decode_file(p, limits).ok())
        .collect();
    let Some(first) = images.first() else {
        return Err(anyhow::anyhow!("no photo could be decoded"));
    };
    pose.estimate(first.into())?;
    let mut lat = Latency::default();
    for i in 0..frames.max(1) {
        let t = Instant::now();
        std::hint::black_box(pose.estimate((&images[i % images.len()]).into())?);
        lat.record(t.elapsed());
        progress(BenchPhase::Timing, i + 1, frames);
    }
    Ok(lat.percentiles())
}

/// The replay's pipeline settings: every frame judged (gate and darkness check off).
fn replay_config() -> PipelineConfig {
    PipelineConfig {
        gate: GateConfig {
            enabled: false,
            ..GateConfig::default()
        },
        dark: DarkConfig {
            max_mean: -1.0,
            max_contrast: -1.0,
        },
        stats_interval_s: 0.0,
        ..PipelineConfig::default()
    }
}

/// Runs `pipeline` over the photo folder at `fps`.
fn replay(
    mut pipeline: Pipeline,
    dir: &Path,
    fps: f64,
    limits: DecodeLimits,
    progress: &mut dyn FnMut(BenchPhase, usize, usize),
) -> anyhow::Result<PipelineReport> {
    let source = FolderSource::open(dir, fps, limits)?;
    let frames = source.len();
    let speech = SpeechThread::spawn(vec![Box::new(LogSpeaker)], &VoiceConfig::default())
        .map_err(PipelineError::Thread)?;
    let (_control_tx, controls) = crossbeam_channel::bounded::<Command>(1);
    let stop = Arc::new(AtomicBool::new(false));
    progress(BenchPhase::Pipeline, 0, frames);
    let stats = pipeline.run(Box::new(source), &speech.tx, &controls, stop, &mut |_| {});
    speech.stop();
    let stats = stats?;
    progress(BenchPhase::Pipeline, frames, frames);
    Ok(PipelineReport {
        replay_fps: fps,
        frames_in: stats.frames.frames_in,
        processed: stats.frames.processed,
        dropped: stats.frames.dropped,
        elapsed_s: stats.elapsed_s,
        fps: stats.encoded_fps,
    })
}

/// `clipsight bench`: the flags → a [`BenchSpec`], a progress bar, the report as text or JSON.
pub fn run_command(args: crate::cli::args::BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let encoder = match args.onnx {
        Some(path) => EncoderSource::File {
            path,
            bundle: args.model,
        },
        None => EncoderSource::Bundle(args.model),
    };
    if args.kernels {
        return kernels(&encoder, args.json);
    }
    let spec = BenchSpec {
        encoder,
        options: crate::cli::encoder_options(&args.encoder),
        reference: args.reference,
        banks: args.banks,
        photos: args.photos,
        iters: args.iters,
        warmup: args.warmup,
        pipeline: match args.replay_fps {
            Some(fps) if fps <= 0.0 => PipelineRun::Off,
            fps => PipelineRun::Replay { fps },
        },
        person_model: args.person_model,
    };
    let bar = crate::cli::progress_bar(0, "loading");
    let mut report = run(&spec, &mut |phase, done, total| {
        bar.set_message(phase.as_str());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if let Some(hazard) = args.hazard_photo {
        let model = match &spec.encoder {
            EncoderSource::Bundle(dir) | EncoderSource::File { bundle: dir, .. } => dir,
        };
        let (_, banks, embedder) = crate::cli::load_model(model, &spec.banks, &spec.options)?;
        let profile = crate::cli::config::RunConfig::load(&args.profile)?.pipeline();
        eprintln!(
            "hazard latency: {} appearances at {} fps (about {:.0} s)",
            args.appearances,
            args.latency_fps,
            args.appearances as f64
                * (profile.decision.hazard_cooldown_s + profile.decision.leave_s + 6.0)
        );
        let spec = crate::cli::latency::LatencySpec {
            hazard,
            calm: args.calm_photo,
            appearances: args.appearances,
            fps: args.latency_fps,
            profile,
        };
        report.hazard_to_audio_ms = Some(crate::cli::latency::hazard_to_audio(
            embedder, banks, &spec,
        )?);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.to_text());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_is_nan_safe_and_picks_the_largest() {
        assert_eq!(argmax(&[0.1, 0.9, 0.3]), Some(1));
        assert_eq!(argmax(&[]), None);
        assert!(argmax(&[f32::NAN, 0.2]).is_some());
    }

    #[test]
    fn synthetic_bank_rows_are_unit_length_and_deterministic() {
        let a = synthetic_bank(16).unwrap();
        let b = synthetic_bank(16).unwrap();
        assert_eq!(a.len(), SYNTHETIC_LABELS);
        for i in 0..a.len() {
            let n: f32 = a.embedding(i).iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-4);
            assert_eq!(a.embedding(i), b.embedding(i));
        }
    }

    #[test]
    fn peak_rss_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
    }
}
