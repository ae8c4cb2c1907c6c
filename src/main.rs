//! The clipsight command line: the only place that knows the CLI, files and backends.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use clipsight::bank::Bank;
use clipsight::build_bank::{build_bank, Phase};
use clipsight::bundle::Bundle;
use clipsight::calibrate::{read_references, DEFAULT_Z};
use clipsight::capture::{FolderSource, FrameSource};
use clipsight::config::RunConfig;
use clipsight::controls::Controls;
use clipsight::decide::{LabelInfo, Verbosity};
use clipsight::decode::{decode_file, DecodeLimits};
use clipsight::embedder::ImageEmbedder;
use clipsight::encode::{check_device, Device, TractImageEncoder, TractTextEncoder};
use clipsight::home::observer::HomeObserver;
use clipsight::home::{HomeMonitor, HomeSecrets};
use clipsight::matching::classify;
use clipsight::pipeline::{Control, Observer, Pipeline};
use clipsight::prompts::PromptSet;
use clipsight::speech::{speaker_chain, SpeakerKind, SpeechThread};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "clipsight",
    version,
    about = "Assistive vision with CLIP-family models"
)]
struct Cli {
    /// More log output (-v info, -vv debug). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rank a prompt bank's labels for each image.
    Classify(ClassifyArgs),
    /// Embed a prompt set with a model, calibrate it on labelled photos, write a bank.
    EmbedPrompts(EmbedArgs),
    /// The live pipeline: capture → encode → match → decide → speak.
    Run(RunArgs),
    /// Send a command word to a running instance's control socket.
    Control(ControlArgs),
    /// Time an image encoder per stage, replay the pipeline, compare with an fp32 reference.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// A TOML config file; the flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The model bundle directory.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A prompt bank (repeatable: objects, hazards, …).
    #[arg(long = "bank")]
    banks: Vec<PathBuf>,
    /// `camera`, `camera:N`, `/dev/videoN`, or a folder of images to replay.
    #[arg(long)]
    source: Option<String>,
    /// Replay rate of a folder source, frames per second.
    #[arg(long)]
    fps: Option<f64>,
    /// Speech backend.
    #[arg(long, value_enum)]
    speaker: Option<SpeakerKind>,
    /// Where the wav speaker writes its files (created if missing).
    #[arg(long)]
    speech_dir: Option<PathBuf>,
    /// hazards, new or all.
    #[arg(long, value_enum)]
    verbosity: Option<Verbosity>,
    /// Print stats as JSON lines on stdout.
    #[arg(long)]
    stats_json: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Where the image encoder runs (`cuda` needs a build with the `cuda` feature).
    #[arg(long, value_enum)]
    device: Option<Device>,
}

#[derive(clap::Args)]
struct ControlArgs {
    /// The control socket of the running instance.
    #[arg(long)]
    socket: PathBuf,
    /// describe, mute, repeat, verbosity, ok, ack or quit.
    command: String,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// The model bundle directory.
    #[arg(long)]
    model: PathBuf,
    /// A prompt bank made with this model by `embed-prompts`.
    #[arg(long)]
    bank: PathBuf,
    /// How many labels to print per image.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Add each image's embedding to its JSON line (`"embedding": [...]`).
    #[arg(long, requires = "json")]
    embeddings: bool,
    /// Where the image encoder runs (`cuda` needs a build with the `cuda` feature).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct EmbedArgs {
    /// The model bundle directory.
    #[arg(long)]
    model: PathBuf,
    /// The prompt set (TOML).
    #[arg(long)]
    prompts: PathBuf,
    /// A folder of labelled reference photos with a labels.tsv, for the thresholds.
    #[arg(long)]
    calibration: PathBuf,
    /// Thresholds sit this many standard deviations above each label's negatives.
    #[arg(long, default_value_t = DEFAULT_Z)]
    z: f32,
    /// The bank file to write (safetensors).
    #[arg(short, long)]
    output: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // What the speaker says is always shown (the log speaker writes it at info level).
    let level = match cli.verbose {
        0 => "warn,clipsight::speech=info",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let result = match cli.command {
        Command::Classify(args) => run_classify(args),
        Command::EmbedPrompts(args) => run_embed(args),
        Command::Run(args) => run_live(args),
        Command::Bench(args) => run_bench(args),
        Command::Control(args) => clipsight::controls::send_command(&args.socket, &args.command)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.socket.display()))
            .map(|reply| {
                println!("{reply}");
                if reply == "ok" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_embedder(bundle: &Bundle, device: Device) -> Result<ImageEmbedder> {
    let encoder = TractImageEncoder::load_on(bundle, device)?;
    Ok(ImageEmbedder::new(
        (&bundle.manifest.image).into(),
        Box::new(encoder),
    )?)
}

fn run_classify(args: ClassifyArgs) -> Result<ExitCode> {
    check_device(args.device)?;
    let bundle = Bundle::load(&args.model)?;
    let bank = Bank::load_for(&args.bank, &bundle.identity())?;
    let mut embedder = load_embedder(&bundle, args.device)?;
    let scale = bundle.manifest.embedding.logit_scale;
    let limits = DecodeLimits::default();
    let (mut cos, mut probs) = (Vec::new(), Vec::new());
    let mut failed = 0usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in &args.images {
        let result = decode_file(path, limits)
            .map_err(anyhow::Error::from)
            .and_then(|img| Ok(embedder.embed((&img).into())?.to_vec()));
        match result {
            Ok(embedding) => {
                let ranked = classify(&bank, &embedding, scale, args.top, &mut cos, &mut probs);
                if args.json {
                    let labels: Vec<_> = ranked
                        .iter()
                        .map(|r| {
                            let e = &bank.entries[r.index];
                            let z = e.z(cos[r.index]);
                            serde_json::json!({
                                "label": r.label,
                                "score": r.score,
                                "z": z,
                                "above_threshold": z >= e.z_threshold(),
                            })
                        })
                        .collect();
                    let mut line = serde_json::json!({"image": path, "labels": labels});
                    if args.embeddings {
                        line["embedding"] = serde_json::json!(embedding);
                    }
                    writeln!(out, "{line}")?;
                } else {
                    let labels: Vec<String> = ranked
                        .iter()
                        .map(|r| format!("{} {:.3}", r.label, r.score))
                        .collect();
                    writeln!(out, "{}: {}", path.display(), labels.join(", "))?;
                }
            }
            Err(e) => {
                failed += 1;
                let message = format!("{e:#}");
                if args.json {
                    let line = serde_json::json!({"image": path, "error": message});
                    writeln!(out, "{line}")?;
                } else {
                    out.flush()?;
                    eprintln!("error: {message}");
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} images failed", args.images.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn run_embed(args: EmbedArgs) -> Result<ExitCode> {
    let bundle = Bundle::load(&args.model)?;
    let set = PromptSet::load(&args.prompts)?;
    let refs = read_references(&args.calibration)?;
    let mut text = TractTextEncoder::load(&bundle)?;
    let mut images = load_embedder(&bundle, Device::Cpu)?;
    let n_texts: usize = set.prompts.iter().map(|p| p.texts.len()).sum();
    let prompts_bar = progress_bar(n_texts, "prompts");
    let photos_bar = progress_bar(refs.len(), "photos");
    let (bank, stats) = build_bank(
        &bundle,
        &mut text,
        &mut images,
        &set,
        &refs,
        args.z,
        &mut |phase, done, _| match phase {
            Phase::Prompts => prompts_bar.set_position(done as u64),
            Phase::Photos => photos_bar.set_position(done as u64),
        },
    )?;
    prompts_bar.finish();
    photos_bar.finish();
    bank.save(&args.output)?;
    for (p, s) in set.prompts.iter().zip(&stats) {
        let hits = if s.positives > 0 {
            format!(
                "{}/{} calibration photos showing it pass",
                s.hits, s.positives
            )
        } else {
            "no calibration photo shows it".to_string()
        };
        log::info!(
            "{:<28} threshold {:.4} (negatives {:.4} ± {:.4}, {} above); {hits}",
            p.label,
            s.threshold,
            s.neg_mean,
            s.neg_std,
            s.false_hits
        );
    }
    println!(
        "wrote {} ({} labels, {} prompts, model {})",
        args.output.display(),
        bank.len(),
        n_texts,
        bank.model
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds the frame source a `--source` value names.
fn open_source(source: &str, config: &RunConfig) -> Result<Box<dyn FrameSource>> {
    let camera_index = if source == "camera" {
        Some(0)
    } else if let Some(n) = source.strip_prefix("camera:") {
        Some(
            n.parse::<u32>()
                .map_err(|_| anyhow::anyhow!("--source {source}: bad camera number"))?,
        )
    } else if let Some(n) = source.strip_prefix("/dev/video") {
        Some(
            n.parse::<u32>()
                .map_err(|_| anyhow::anyhow!("--source {source}: bad device"))?,
        )
    } else {
        None
    };
    match camera_index {
        None => {
            let fps = config.fps.unwrap_or(DEFAULT_REPLAY_FPS);
            Ok(Box::new(FolderSource::open(
                std::path::Path::new(source),
                fps,
                DecodeLimits::default(),
            )?))
        }
        Some(index) => open_camera(index, config),
    }
}

/// The replay rate of a folder source when neither flag nor config gives one.
const DEFAULT_REPLAY_FPS: f64 = 5.0;

#[cfg(all(feature = "camera", target_os = "linux"))]
fn open_camera(index: u32, config: &RunConfig) -> Result<Box<dyn FrameSource>> {
    use clipsight::camera::{CameraRequest, NokhwaCamera};
    use clipsight::capture::{Backoff, RealSleeper, Reconnecting};
    let c = &config.camera;
    let device = NokhwaCamera::new(CameraRequest {
        index,
        width: c.width,
        height: c.height,
        fps: c.fps,
    });
    let backoff = Backoff {
        initial: Duration::from_secs_f64(c.reconnect_initial_s),
        max: Duration::from_secs_f64(c.reconnect_max_s.max(c.reconnect_initial_s)),
        stall: Duration::from_secs_f64(config.pipeline().stall_s),
    };
    Ok(Box::new(Reconnecting::new(device, RealSleeper, backoff)))
}

#[cfg(not(all(feature = "camera", target_os = "linux")))]
fn open_camera(_index: u32, _config: &RunConfig) -> Result<Box<dyn FrameSource>> {
    anyhow::bail!("camera support is not compiled in (cargo feature `camera`, Linux only)")
}

fn run_live(args: RunArgs) -> Result<ExitCode> {
    let start = Instant::now();
    let mut config = match &args.config {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::default(),
    };
    // Flags override the file.
    if args.model.is_some() {
        config.model = args.model;
    }
    if !args.banks.is_empty() {
        config.banks = args.banks;
    }
    if args.source.is_some() {
        config.source = args.source;
    }
    if args.fps.is_some() {
        config.fps = args.fps;
    }
    if args.speaker.is_some() {
        config.speaker = args.speaker;
    }
    if args.speech_dir.is_some() {
        config.speech_dir = args.speech_dir;
    }
    if let Some(v) = args.verbosity {
        config.decision.verbosity = v;
    }
    if let Some(d) = args.duration {
        config.duration_s = d;
    }
    if let Some(d) = args.device {
        config.device = d;
    }
    config.stats_json |= args.stats_json;
    let model = config
        .model
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no model: give --model or `model` in the config"))?;
    if config.banks.is_empty() {
        anyhow::bail!("no prompt bank: give --bank or `banks` in the config");
    }
    let source_name = config
        .source
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no source: give --source or `source` in the config"))?;

    check_device(config.device)?;
    let bundle = Bundle::load(&model)?;
    let identity = bundle.identity();
    let banks = config
        .banks
        .iter()
        .map(|b| Bank::load_for(b, &identity))
        .collect::<Result<Vec<_>, _>>()?;
    let embedder = load_embedder(&bundle, config.device)?;
    log::info!(
        "model {identity} ready on {} in {:.2?}",
        config.device,
        start.elapsed()
    );

    let kind = config.speaker.unwrap_or(SpeakerKind::Speechd);
    // Transcript times count from here: the models are loaded and the source starts next.
    let chain = speaker_chain(
        kind,
        &config.voice,
        config.speech_dir.as_deref(),
        Instant::now(),
    )?;
    let speech = SpeechThread::spawn(chain, &config.voice)?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    }
    let (control_tx, control_rx) = crossbeam_channel::bounded::<Control>(16);
    let controls = Controls::start(&config.controls, control_tx, stop.clone())?;
    if config.duration_s > 0.0 {
        let (stop, d) = (stop.clone(), Duration::from_secs_f64(config.duration_s));
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        });
    }

    let observer: Option<Box<dyn Observer>> = match &config.home {
        Some(home) => {
            let labels = LabelInfo::from_banks(&banks);
            if !labels.iter().any(|l| l.label == home.fall_label) {
                anyhow::bail!(
                    "home.fall_label {:?} is not a label of the loaded banks ({})",
                    home.fall_label,
                    labels
                        .iter()
                        .map(|l| l.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let secrets = HomeSecrets::load(home)?;
            let monitor = HomeMonitor::start(home.clone(), secrets)?;
            Some(Box::new(HomeObserver::new(
                monitor,
                home.fall_label.clone(),
            )))
        }
        None => None,
    };
    let source = open_source(&source_name, &config)?;
    let mut pipeline = Pipeline::new(config.pipeline(), embedder, banks, observer)?;
    let json = config.stats_json;
    // Under systemd (Type=notify): the model is loaded and the source is open.
    clipsight::notify::ready();
    let result = pipeline.run(
        source,
        &speech.tx,
        &control_rx,
        stop.clone(),
        &mut |stats| {
            if json {
                println!("{}", serde_json::to_string(stats).unwrap_or_default());
            }
        },
    );
    clipsight::notify::stopping();
    if let Some(observer) = pipeline.take_observer() {
        observer.finish();
    }
    let interrupted = stop.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    // A folder that ran out: say what is queued. A stop request: stop now.
    let speech_stats = if interrupted {
        speech.stop()
    } else {
        speech.finish()
    };
    controls.join();
    let mut stats = result?;
    stats.speech = speech_stats;
    stats.elapsed_s = start.elapsed().as_secs_f64();
    eprintln!("{}", stats.summary());
    if json {
        println!("{}", serde_json::to_string(&stats)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A model bundle: its image tower, preprocessing and names.
    #[arg(long, required_unless_present = "onnx")]
    model: Option<PathBuf>,
    /// A bare image encoder (1×3×224×224 in, CLIP mean/std); with --model, that bundle's
    /// preprocessing and names apply instead.
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Input name of a bare encoder.
    #[arg(long, default_value = "pixel_values")]
    input: String,
    /// Output name of a bare encoder.
    #[arg(long, default_value = "image_embeds")]
    output: String,
    /// The fp32 encoder to compare embeddings with (same input and output).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// A prompt bank made with the reference model, for top-1 agreement (repeatable).
    #[arg(long = "bank")]
    banks: Vec<PathBuf>,
    /// A folder of real photos.
    #[arg(long, default_value = "prompts/calibration")]
    photos: PathBuf,
    /// The runtime. `ort` opens onnxruntime from ORT_DYLIB_PATH (or the system's).
    #[arg(long, value_enum, default_value_t = clipsight::encode::Backend::Tract)]
    backend: clipsight::encode::Backend,
    /// Threads for the encoder's matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Where tract runs the encoder (`cuda` needs the `cuda` feature).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// Timed frames.
    #[arg(long, default_value_t = 50)]
    iters: usize,
    /// Untimed frames first (without --reference).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Pipeline replay rate (default: 1.25 × the encoder-only rate); 0 skips the replay.
    #[arg(long)]
    replay_fps: Option<f64>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

fn run_bench(args: BenchArgs) -> Result<ExitCode> {
    use clipsight::bench::{BenchSpec, EncoderSource, PipelineRun};
    let encoder = match (args.onnx, args.model) {
        (Some(path), bundle) => EncoderSource::File {
            path,
            bundle,
            input: args.input,
            output: args.output,
        },
        (None, Some(dir)) => EncoderSource::Bundle(dir),
        (None, None) => anyhow::bail!("give --model or --onnx"),
    };
    let spec = BenchSpec {
        encoder,
        options: clipsight::encode::EncoderOptions {
            backend: args.backend,
            device: args.device,
            threads: args.threads,
            ort_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        },
        reference: args.reference,
        banks: args.banks,
        photos: args.photos,
        iters: args.iters,
        warmup: args.warmup,
        pipeline: match args.replay_fps {
            Some(fps) if fps <= 0.0 => PipelineRun::Off,
            fps => PipelineRun::Replay { fps },
        },
    };
    let bar = progress_bar(0, "loading");
    let report = clipsight::bench::run(&spec, &mut |phase, done, total| {
        bar.set_message(phase.as_str());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
