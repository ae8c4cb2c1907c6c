//! What the user typed: the clap definitions of every subcommand. Library enums are parsed
//! by their serde names ([`parse_name`]), so the library itself knows nothing of clap.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::decide::Verbosity;
use crate::prompts::calibrate::PrecisionRule;
use crate::speech::SpeakerKind;
use crate::vision::encoder::{Backend, Device, ExecutionProvider, ProviderPolicy};

/// Parses a library enum from its config-file name (`"cuda"`, `"wav"`, …).
pub fn parse_name<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

#[derive(Parser)]
#[command(
    name = "clipsight",
    version,
    about = "Assistive vision with CLIP-family models"
)]
/// The command line: global flags and one subcommand.
pub struct Cli {
    /// More log output (-v info, -vv debug). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
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
    /// Measure what the device would say on labelled photos (precision, recall, alarms).
    Eval(EvalArgs),
    /// Teach a label of your own ("my keys") from a few photos of it, into a personal bank.
    Teach(TeachArgs),
}

/// `clipsight teach`: a label of the user's own from photos of it.
#[derive(clap::Args)]
pub struct TeachArgs {
    /// The model bundle directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The label, exactly as it will be reported ("my keys").
    #[arg(long, required_unless_present = "rebuild")]
    pub label: Option<String>,
    /// What to say when it comes into view (default: "my keys" → "Your keys.").
    #[arg(long)]
    pub say: Option<String>,
    /// What kind of thing it is.
    #[arg(long, default_value = "object", value_parser = ["object", "hazard"])]
    pub category: String,
    /// Labelled photos that do not show it, for its threshold (a folder with labels.tsv).
    #[arg(long, default_value = "prompts/calibration")]
    pub calibration: PathBuf,
    /// Add these photos to what was taught before under the label, instead of replacing it.
    #[arg(long)]
    pub add: bool,
    /// Keep copies of the photos beside the bank (`BANK.photos/`), so that `--rebuild` can
    /// teach them again to another model. Without it no photo is kept.
    #[arg(long)]
    pub keep_photos: bool,
    /// Teach every label of the bank again with `--model`, from its kept photos (after a
    /// model update). Labels without kept photos are named and left out.
    #[arg(long, conflicts_with_all = ["label", "add", "photos"])]
    pub rebuild: bool,
    /// Where and how the image encoder runs.
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// The personal bank to write (created if needed; mode 0600).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Photos of the thing (several angles and lights work best).
    #[arg(required_unless_present = "rebuild")]
    pub photos: Vec<PathBuf>,
}

/// `clipsight eval`: what the device would say on labelled photos, scored.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// The model bundle directory.
    #[arg(long)]
    pub model: PathBuf,
    /// A prompt bank made with this model (repeatable: objects, hazards, …).
    #[arg(long = "bank", required = true)]
    pub banks: Vec<PathBuf>,
    /// A folder of labelled photos: `labels.tsv` (`file<TAB>label,label,…`, or a header row
    /// with `file` and `class` columns, where the classes fallen, upright, sitting and lying_bed
    /// also count as showing a person) and, optionally, `dominant.tsv`. With `--teach`: the
    /// calibration photos (`file<TAB>label,…`; default prompts/calibration), named like the
    /// data set's photos so that test photos are left out of calibration.
    #[arg(long, required_unless_present = "teach")]
    pub labels: Option<PathBuf>,
    /// Cross-validate: recalibrate the banks on K−1 folds and score the held-out one.
    #[arg(long)]
    pub folds: Option<usize>,
    /// How thresholds are chosen where this command calibrates (as `embed-prompts` does): the
    /// folds' banks with `--folds`, both methods with `--teach`. Without either, the banks'
    /// own thresholds are scored and these flags change nothing.
    #[command(flatten)]
    pub rule: RuleArgs,
    /// A person/pose bundle (`models/person`): also score people, posture and `fallen`
    /// against the classes fallen, upright, sitting, lying_bed and empty.
    #[arg(long)]
    pub person_model: Option<PathBuf>,
    /// One JSON object with every figure.
    #[arg(long)]
    pub json: bool,
    /// Also list what was said on each photo.
    #[arg(long)]
    pub per_photo: bool,
    /// Instead of the report: the few-shot teaching study on a YOLO data set (`images/`,
    /// `labels/`, `classes.txt`): labels taught from 1, 3, 5 crops against their text prompts.
    #[arg(long, value_name = "DATASET", conflicts_with_all = ["folds", "person_model", "per_photo"])]
    pub teach: Option<PathBuf>,
    /// With `--teach`: also teach and test the class `person` (left out by default).
    #[arg(long, requires = "teach")]
    pub teach_person: bool,
    /// With `--teach`: random splits (a fixed seed: the same figures every run).
    #[arg(long, default_value_t = 200, requires = "teach")]
    pub teach_splits: usize,
    /// With `--teach`: labels taught per split.
    #[arg(long, default_value_t = 8, requires = "teach")]
    pub teach_labels: usize,
    /// With `--teach`: the numbers of shots to teach from.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 3, 5], requires = "teach")]
    pub teach_shots: Vec<usize>,
    /// Where and how the image encoder runs.
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

/// How a label's threshold is chosen from calibration photos ([`PrecisionRule`]); the same
/// flags for `embed-prompts` and `eval --folds`.
#[derive(clap::Args, Debug, Clone)]
pub struct RuleArgs {
    /// The precision each label's threshold aims at on the calibration photos.
    #[arg(long, default_value_t = PrecisionRule::default().target_precision)]
    pub target_precision: f32,
    /// No threshold below this many standard deviations above a label's negatives.
    #[arg(long, default_value_t = PrecisionRule::default().floor_z)]
    pub floor_z: f32,
    /// Calibration photos that must show a label for it to be validated.
    #[arg(long, default_value_t = PrecisionRule::default().min_positives)]
    pub min_positives: usize,
}

impl RuleArgs {
    /// The rule these flags give.
    pub fn rule(&self) -> PrecisionRule {
        PrecisionRule {
            target_precision: self.target_precision,
            floor_z: self.floor_z,
            min_positives: self.min_positives,
            ..PrecisionRule::default()
        }
    }
}

/// Where and how the image encoder runs; the same flags for every command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EncoderArgs {
    /// The runtime of the image encoder and the person model: `tract` (default) or `ort`
    /// (onnxruntime from ORT_DYLIB_PATH).
    #[arg(long, value_parser = parse_name::<Backend>)]
    pub backend: Option<Backend>,
    /// Where tract runs the encoder: `cpu` or `cuda` (needs the `cuda` feature).
    #[arg(long, value_parser = parse_name::<Device>)]
    pub device: Option<Device>,
    /// Threads for the encoder's matrix products.
    #[arg(long)]
    pub threads: Option<usize>,
    /// With `--backend ort`: an onnxruntime execution provider, in order of preference
    /// (repeatable): tensorrt, cuda, `openvino[:DEVICE]`, qnn, xnnpack, acl, cpu (default cpu).
    #[arg(long = "ep", value_name = "NAME", value_parser = parse_name::<ExecutionProvider>)]
    pub ep: Vec<ExecutionProvider>,
    /// With `--backend ort`: `prefer` (default: skip a provider the library lacks, with a
    /// warning) or `require` (stop with an error naming it).
    #[arg(long, value_parser = parse_name::<ProviderPolicy>)]
    pub ep_policy: Option<ProviderPolicy>,
}

/// `clipsight run`: flags that override the config file.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A TOML config file; the flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The person/pose model bundle (people, posture, falls), e.g. `models/person`.
    #[arg(long)]
    pub person_model: Option<PathBuf>,
    /// The model bundle directory.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A prompt bank (repeatable: objects, hazards, …).
    #[arg(long = "bank")]
    pub banks: Vec<PathBuf>,
    /// `camera`, `camera:N`, `/dev/videoN`, or a folder of images to replay.
    #[arg(long)]
    pub source: Option<String>,
    /// Replay rate of a folder source, frames per second.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Speech backend: speechd, espeak, wav or log.
    #[arg(long, value_parser = parse_name::<SpeakerKind>)]
    pub speaker: Option<SpeakerKind>,
    /// Where the wav speaker writes its files (created if missing).
    #[arg(long)]
    pub speech_dir: Option<PathBuf>,
    /// The personal bank of taught labels (`teach` on the device writes it; default: the
    /// service's state directory, or `~/.local/share/clipsight/personal.safetensors`).
    #[arg(long)]
    pub personal_bank: Option<PathBuf>,
    /// hazards, new or all.
    #[arg(long, value_parser = parse_name::<Verbosity>)]
    pub verbosity: Option<Verbosity>,
    /// Print stats as JSON lines on stdout.
    #[arg(long)]
    pub stats_json: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Where and how the image encoder runs.
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

/// `clipsight control`: one command word for a running instance.
#[derive(clap::Args)]
pub struct ControlArgs {
    /// The control socket of the running instance.
    #[arg(long)]
    pub socket: PathBuf,
    /// describe, mute, repeat, verbosity, ok, ack, quit, list, or teach|find|forget LABEL
    /// (the words after the first are the label: `teach my keys`).
    #[arg(required = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// `clipsight classify`: rank bank labels for image files.
#[derive(clap::Args)]
pub struct ClassifyArgs {
    /// The model bundle directory.
    #[arg(long)]
    pub model: PathBuf,
    /// A prompt bank made with this model by `embed-prompts` (repeatable).
    #[arg(long = "bank", required = true)]
    pub banks: Vec<PathBuf>,
    /// How many labels to print per image and bank.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Add each image's embedding to its JSON line (`"embedding": [...]`).
    #[arg(long, requires = "json")]
    pub embeddings: bool,
    /// A person/pose bundle (`models/person`): adds the people in view (box, score, posture,
    /// direction, keypoints) and the pose-only `fallen` flag to each line.
    #[arg(long)]
    pub person_model: Option<PathBuf>,
    /// Where and how the image encoder runs.
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// `clipsight embed-prompts`: build a calibrated prompt bank.
#[derive(clap::Args)]
pub struct EmbedArgs {
    /// The model bundle directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt set (TOML).
    #[arg(long)]
    pub prompts: PathBuf,
    /// A folder of labelled reference photos with a labels.tsv, for the thresholds.
    #[arg(long)]
    pub calibration: PathBuf,
    /// How each label's threshold is chosen.
    #[command(flatten)]
    pub rule: RuleArgs,
    /// A prompt set of a broad vocabulary (`prompts/vocabulary.toml`) stored in the bank for
    /// matching's gate; without it the bank has no gate.
    #[arg(long)]
    pub vocabulary: Option<PathBuf>,
    /// The bank file to write (safetensors).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `clipsight bench`: encoder timing, pipeline replay and fp32 comparison.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A model bundle: its image tower, preprocessing and names.
    #[arg(long)]
    pub model: PathBuf,
    /// Another ONNX image encoder to measure in place of the bundle's (a re-quantized copy of
    /// its tower): the bundle's preprocessing and tensor names apply.
    #[arg(long)]
    pub onnx: Option<PathBuf>,
    /// The fp32 encoder to compare embeddings with (same input and output).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// A prompt bank made with the reference model, for top-1 agreement (repeatable).
    #[arg(long = "bank")]
    pub banks: Vec<PathBuf>,
    /// A folder of real photos.
    #[arg(long, default_value = "prompts/calibration")]
    pub photos: PathBuf,
    /// Where and how the image encoder runs.
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Timed frames.
    #[arg(long, default_value_t = 50)]
    pub iters: usize,
    /// Untimed frames first (without --reference).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// A person/pose bundle (`models/person`): its stage is timed and runs in the replay.
    #[arg(long)]
    pub person_model: Option<PathBuf>,
    /// Pipeline replay rate (default: 1.25 × the encoder-only rate); 0 skips the replay.
    #[arg(long)]
    pub replay_fps: Option<f64>,
    /// Also measure hazard first frame → first audio sample of its warning (wav speaker):
    /// a photo the banks warn of (e.g. tests/fixtures/photos/bus.jpg with the hazards bank).
    #[arg(long, requires = "banks")]
    pub hazard_photo: Option<PathBuf>,
    /// The calm scene between the hazard's appearances.
    #[arg(long, default_value = "prompts/calibration/000000000510.jpg")]
    pub calm_photo: PathBuf,
    /// How many times the hazard appears.
    #[arg(long, default_value_t = 8)]
    pub appearances: usize,
    /// The run config whose settings (decision, gate, darkness) the latency replay uses.
    #[arg(long, default_value = "deploy/wearable.toml")]
    pub profile: PathBuf,
    /// The latency replay's rate, frames per second.
    #[arg(long, default_value_t = 4.0)]
    pub latency_fps: f64,
    /// Instead of timing: the kernel tract picks for each matrix product of the encoder on this
    /// CPU, and every product that runs slower than the CPU allows (exit status 1 if any).
    #[arg(long)]
    pub kernels: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_rule(extra: &[&str]) -> PrecisionRule {
        let base = [
            "clipsight",
            "eval",
            "--model",
            "m",
            "--bank",
            "b",
            "--labels",
            "l",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra)).expect("parses");
        match cli.command {
            Command::Eval(args) => args.rule.rule(),
            _ => panic!("not eval"),
        }
    }

    #[test]
    fn eval_folds_recalibrate_with_the_rule_embed_prompts_uses() {
        assert_eq!(eval_rule(&[]), PrecisionRule::default());
        let rule = eval_rule(&[
            "--folds",
            "5",
            "--target-precision",
            "0.6",
            "--floor-z",
            "0.5",
        ]);
        assert_eq!((rule.target_precision, rule.floor_z), (0.6, 0.5));
        assert_eq!(rule.fallback_z, PrecisionRule::default().fallback_z);
    }
}
