//! The command line's edge: what the user typed ([`args`]), the config file ([`config`]), and
//! one module per subcommand. Only this module and `main.rs` know flags and files; the stages
//! take typed configs. Errors are `anyhow` here, printed whole by `main`.

pub mod args;
pub mod bench;
pub mod classify;
pub mod config;
pub mod embed;
pub mod eval;
pub mod latency;
pub mod run;
pub mod teach;

use crate::vision::pose::{PersonBundle, PoseEstimator};
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

pub use args::{Cli, Command};

use crate::model::Bundle;
use crate::prompts::bank::Bank;
use crate::vision::encoder::{EncoderOptions, OrtOptions};
use crate::vision::ImageEmbedder;

/// Runs one subcommand.
pub fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Classify(args) => classify::run(args),
        Command::EmbedPrompts(args) => embed::run(args),
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run_command(args),
        Command::Eval(args) => eval::run(args),
        Command::Teach(args) => teach::run(args),
        Command::Control(args) => {
            let reply = crate::controls::send_command(&args.socket, &args.command.join(" "))
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.socket.display()))?;
            println!("{reply}");
            Ok(if reply == "ok" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// The encoder options of the flags (or a config's keys), with onnxruntime's library from
/// `ORT_DYLIB_PATH` (read here, at the edge).
pub fn encoder_options(e: &args::EncoderArgs) -> EncoderOptions {
    let base = EncoderOptions::default();
    EncoderOptions {
        backend: e.backend.unwrap_or(base.backend),
        device: e.device.unwrap_or(base.device),
        threads: e.threads.unwrap_or(base.threads).max(1),
        ort_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        ort: ort_options(e, None),
    }
}

/// `--ep` and `--ep-policy` over a config's `[ort]` section; `None` when neither gives any.
pub fn ort_options(e: &args::EncoderArgs, file: Option<OrtOptions>) -> Option<OrtOptions> {
    if e.ep.is_empty() && e.ep_policy.is_none() {
        return file;
    }
    let base = file.unwrap_or_default();
    Some(OrtOptions {
        providers: if e.ep.is_empty() {
            base.providers
        } else {
            e.ep.clone()
        },
        provider_policy: e.ep_policy.unwrap_or(base.provider_policy),
    })
}

/// What every image command loads: the bundle, its banks (each checked against the model),
/// and the image embedder on the runtime `options` name.
pub fn load_model(
    model: &std::path::Path,
    banks: &[PathBuf],
    options: &EncoderOptions,
) -> anyhow::Result<(Bundle, Vec<Bank>, ImageEmbedder)> {
    crate::vision::encoder::check_device(options.device)?;
    let bundle = Bundle::load(model)?;
    let banks = banks
        .iter()
        .map(|b| Bank::load_for(b, &bundle.identity()))
        .collect::<Result<Vec<_>, _>>()?;
    let embedder = crate::vision::select::load_embedder(&bundle, options)?;
    Ok((bundle, banks, embedder))
}

/// The person/pose stage of `--person-model DIR`, on the image encoder's runtime and threads
/// (`--backend`, `--threads`, `--ep`); none without one.
pub fn load_person_model(
    dir: Option<&std::path::Path>,
    options: &EncoderOptions,
) -> anyhow::Result<Option<PoseEstimator>> {
    Ok(match dir {
        Some(dir) => Some(PoseEstimator::load_with(
            &PersonBundle::load(dir)?,
            options,
        )?),
        None => None,
    })
}

/// A progress bar for a long job (on stderr; hidden when it is not a terminal).
pub(crate) fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
