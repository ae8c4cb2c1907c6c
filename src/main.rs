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
use clipsight::decode::{decode_file, DecodeLimits};
use clipsight::embedder::ImageEmbedder;
use clipsight::encode::{TractImageEncoder, TractTextEncoder};
use clipsight::matching::classify;
use clipsight::prompts::PromptSet;

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
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let result = match cli.command {
        Command::Classify(args) => run_classify(args),
        Command::EmbedPrompts(args) => run_embed(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_embedder(bundle: &Bundle) -> Result<ImageEmbedder> {
    let encoder = TractImageEncoder::load(bundle)?;
    Ok(ImageEmbedder::new(
        (&bundle.manifest.image).into(),
        Box::new(encoder),
    )?)
}

fn run_classify(args: ClassifyArgs) -> Result<ExitCode> {
    let bundle = Bundle::load(&args.model)?;
    let bank = Bank::load_for(&args.bank, &bundle.identity())?;
    let mut embedder = load_embedder(&bundle)?;
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
                        .map(|r| serde_json::json!({"label": r.label, "score": r.score}))
                        .collect();
                    let line = serde_json::json!({"image": path, "labels": labels});
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
    let mut images = load_embedder(&bundle)?;
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
        DecodeLimits::default(),
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
