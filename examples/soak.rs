//! Soak benchmark: the whole live pipeline (`Pipeline::run`: capture thread → newest-frame
//! channel → preprocess → encode → match → decide → speech thread) for many frames, sampling
//! the resident memory (VmRSS) as it goes. A leak of a few bytes per frame shows as growth.
//!
//! ```text
//! cargo run --release --example soak -- --model tests/fixtures/tiny-clip \
//!     --bank /tmp/tiny-objects.safetensors --frames 100000
//! ```
//!
//! The source cycles a few photos decoded once at the start (each held for `--hold` frames,
//! so the decision engine sees scenes come and go and speaks), on a virtual clock of
//! `--fps`, without sleeping. It is paced to the encoder: it hands over the next frame only
//! after the pipeline has finished the previous one (an observer sends a token per frame),
//! so the pipeline's newest-frame-wins channel drops nothing and every frame is processed;
//! the run checks that. The change gate is off, so every frame is encoded. Speech goes to the
//! real speech thread with the log speaker (no logger is installed, so it prints nothing).
//!
//! Output: a table of RSS samples, then RSS after warm-up (`--warmup` of the run) and at the
//! end, the growth between them, and the frames per second.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use image::RgbImage;

use clipsight::capture::decode::{decode_file, DecodeLimits};
use clipsight::capture::{CaptureError, FrameSource};
use clipsight::model::Bundle;
use clipsight::pipeline::{Observation, Observer, Pipeline, PipelineConfig, POLL};
use clipsight::prompts::bank::Bank;
use clipsight::speech::{LogSpeaker, SpeechThread, VoiceConfig};
use clipsight::types::Command;
use clipsight::types::Frame;
use clipsight::types::Utterance;
use clipsight::vision::gate::GateConfig;
use clipsight::vision::tract::TractImageEncoder;
use clipsight::vision::ImageEmbedder;

#[derive(Parser)]
#[command(about = "Soak the live pipeline and watch its memory")]
struct Args {
    /// The model bundle directory.
    #[arg(long)]
    model: PathBuf,
    /// A prompt bank made with this model (repeatable).
    #[arg(long = "bank", required = true)]
    banks: Vec<PathBuf>,
    /// Frames to process.
    #[arg(long, default_value_t = 100_000)]
    frames: u64,
    /// Photos to cycle.
    #[arg(long = "photo", default_values = [
        "tests/fixtures/photos/bus.jpg",
        "tests/fixtures/photos/dog.jpg",
        "tests/fixtures/photos/giraffe.jpg",
        "tests/fixtures/photos/person.jpg",
    ])]
    photos: Vec<PathBuf>,
    /// Frames each photo stays in view.
    #[arg(long, default_value_t = 30)]
    hold: u64,
    /// Frame rate of the virtual clock the decision engine sees.
    #[arg(long, default_value_t = 10.0)]
    fps: f64,
    /// RSS samples over the run.
    #[arg(long, default_value_t = 20)]
    samples: u64,
    /// The share of the run after which memory counts as warmed up.
    #[arg(long, default_value_t = 0.1)]
    warmup: f64,
}

/// One RSS sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    frame: u64,
    seconds: f64,
    rss_kib: u64,
}

/// The resident set size of this process, KiB, from `/proc/self/status`.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Cycles decoded photos; waits for a token (the previous frame is done) before each frame.
struct CycleSource {
    photos: Vec<RgbImage>,
    hold: u64,
    fps: f64,
    total: u64,
    seq: u64,
    done: Receiver<()>,
    stop: Arc<AtomicBool>,
}

impl FrameSource for CycleSource {
    fn next(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.seq == self.total {
            return Ok(None);
        }
        if self.seq > 0 {
            loop {
                match self.done.recv_timeout(POLL) {
                    Ok(()) => break,
                    Err(RecvTimeoutError::Timeout) if !self.stop.load(Ordering::Relaxed) => {}
                    Err(_) => return Ok(None),
                }
            }
        }
        let seq = self.seq;
        self.seq += 1;
        let photo = &self.photos[(seq / self.hold) as usize % self.photos.len()];
        Ok(Some(Frame {
            seq,
            t: seq as f64 / self.fps,
            image: photo.clone(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{} photos cycled in memory, {} frames each, paced to the encoder",
            self.photos.len(),
            self.hold
        )
    }
}

/// Counts finished frames, releases the source for the next one, samples RSS.
struct SoakObserver {
    done: Sender<()>,
    frames: u64,
    every: u64,
    start: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl SoakObserver {
    fn sample(&self) {
        if let (Some(rss_kib), Ok(mut samples)) = (rss_kib(), self.samples.lock()) {
            samples.push(Sample {
                frame: self.frames,
                seconds: self.start.elapsed().as_secs_f64(),
                rss_kib,
            });
        }
    }
}

impl Observer for SoakObserver {
    fn observe(&mut self, _obs: &Observation<'_>) -> Vec<Utterance> {
        self.frames += 1;
        if self.frames.is_multiple_of(self.every) {
            self.sample();
        }
        let _ = self.done.send(());
        Vec::new()
    }

    fn control(&mut self, _command: Command, _t: f64) -> Vec<Utterance> {
        Vec::new()
    }

    fn tick(&mut self, _t: f64) -> Vec<Utterance> {
        Vec::new()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.frames == 0
        || args.samples == 0
        || args.hold == 0
        || args.fps.is_nan()
        || args.fps <= 0.0
    {
        bail!("--frames, --samples, --hold and --fps must be positive");
    }
    let load = Instant::now();
    let bundle = Bundle::load(&args.model)?;
    let identity = bundle.identity();
    let banks = args
        .banks
        .iter()
        .map(|b| Bank::load_for(b, &identity))
        .collect::<Result<Vec<_>, _>>()?;
    let encoder = TractImageEncoder::load(&bundle)?;
    let embedder = ImageEmbedder::new((&bundle.manifest.image).into(), Box::new(encoder))?;
    let photos = args
        .photos
        .iter()
        .map(|p| decode_file(p, DecodeLimits::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let labels: usize = banks.iter().map(Bank::len).sum();
    println!(
        "soak: model {identity}, {} banks ({labels} labels), {} photos, {} frames; loaded in {:.2?}",
        banks.len(),
        photos.len(),
        args.frames,
        load.elapsed()
    );

    let config = PipelineConfig {
        gate: GateConfig {
            enabled: false,
            ..GateConfig::default()
        },
        stall_s: 60.0,
        stats_interval_s: 0.0,
        ..PipelineConfig::default()
    };
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let observer = SoakObserver {
        done: done_tx,
        frames: 0,
        every: (args.frames / args.samples).max(1),
        start,
        samples: samples.clone(),
    };
    observer.sample();
    let mut pipeline = Pipeline::new(config, embedder, banks, Some(Box::new(observer)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let source = CycleSource {
        photos,
        hold: args.hold,
        fps: args.fps,
        total: args.frames,
        seq: 0,
        done: done_rx,
        stop: stop.clone(),
    };
    let voice = VoiceConfig::default();
    let speech = SpeechThread::spawn(vec![Box::new(LogSpeaker)], &voice)?;
    let (_controls_tx, controls) = crossbeam_channel::bounded::<Command>(1);
    let stats = pipeline
        .run(Box::new(source), &speech.tx, &controls, stop, &mut |_| {})
        .context("the pipeline failed")?;
    let speech_stats = speech.finish();
    let elapsed = start.elapsed().as_secs_f64();

    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    println!("\n{:>9} {:>9} {:>10}", "frame", "seconds", "RSS MiB");
    for s in &samples {
        println!("{:>9} {:>9.1} {:>10.1}", s.frame, s.seconds, mib(s.rss_kib));
    }
    let counts = stats.frames;
    let warm_frame = (args.frames as f64 * args.warmup).round() as u64;
    let warm = samples.iter().find(|s| s.frame >= warm_frame.max(1));
    let end = samples.last();
    println!(
        "\nframes: {} in, {} processed, {} dropped, {} bad, {} failed, {} dark; speech: {} spoken, {} stale",
        counts.frames_in,
        counts.processed,
        counts.dropped,
        counts.bad,
        counts.failed,
        counts.dark,
        speech_stats.spoken,
        speech_stats.dropped_stale
    );
    let p = &stats.latency_ms;
    println!(
        "latency ms (p50/p95): preprocess {:.2}/{:.2}, encode {:.2}/{:.2}, match {:.3}/{:.3}",
        p.preprocess.p50_ms,
        p.preprocess.p95_ms,
        p.encode.p50_ms,
        p.encode.p95_ms,
        p.matching.p50_ms,
        p.matching.p95_ms
    );
    if let (Some(w), Some(e)) = (warm, end) {
        let growth = (e.rss_kib as f64 - w.rss_kib as f64) / w.rss_kib as f64 * 100.0;
        println!(
            "\n| frames | seconds | fps | RSS after warm-up (frame {}) | RSS at end | growth |",
            w.frame
        );
        println!("|---|---|---|---|---|---|");
        println!(
            "| {} | {elapsed:.1} | {:.1} | {:.1} MiB | {:.1} MiB | {growth:+.2} % |",
            counts.processed,
            counts.processed as f64 / elapsed,
            mib(w.rss_kib),
            mib(e.rss_kib)
        );
    }
    if counts.processed != args.frames || counts.dropped != 0 {
        bail!(
            "expected {} processed frames and none dropped, got {} processed, {} dropped",
            args.frames,
            counts.processed,
            counts.dropped
        );
    }
    Ok(())
}
