//! The `run` configuration file (TOML): every command-line flag has a key here, and the
//! stage settings live in sections. Unknown keys are refused, and the error names the key.
//! Relative paths are taken relative to the config file's folder.
//!
//! This is the "what the user wrote" phase; [`RunConfig::apply`] merges the flags over it and
//! gives the validated [`RuntimeConfig`] that `run` starts from.

use crate::file_error::FileError;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::capture::SourceSpec;
use crate::cli::args::RunArgs;
use crate::controls::ControlsConfig;
use crate::decide::people::PeopleConfig;
use crate::decide::DecisionConfig;
use crate::home::HomeConfig;
use crate::pipeline::personal::PersonalConfig;
use crate::pipeline::PipelineConfig;
use crate::speech::{SpeakerKind, VoiceConfig};
use crate::vision::encoder::{Backend, Device, EncoderOptions, OrtOptions};
use crate::vision::gate::{DarkConfig, GateConfig};

/// Why the run configuration could not be loaded or completed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read, is not valid TOML, has an unknown key, or a value is
    /// out of range.
    #[error(transparent)]
    File(#[from] FileError),
    /// A setting that neither the file nor the flags give.
    #[error("no {what}: give --{flag} or `{key}` in the config")]
    Missing {
        /// What is missing, in words ("model", "prompt bank", "source").
        what: &'static str,
        /// The flag that gives it, without the dashes.
        flag: &'static str,
        /// The config key that gives it.
        key: &'static str,
    },
    /// The source name is malformed (e.g. `camera:x`).
    #[error("{0}")]
    Source(String),
}

/// `[camera]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    /// Requested frame width, in pixels (default 640).
    pub width: u32,
    /// Requested frame height, in pixels (default 480).
    pub height: u32,
    /// Requested frame rate, in frames per second (default 15).
    pub fps: u32,
    /// First reconnect delay after the camera is lost, seconds; it doubles up to the max.
    pub reconnect_initial_s: f64,
    /// The longest reconnect delay, in seconds (default 5).
    pub reconnect_max_s: f64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            width: 640,
            height: 480,
            fps: 15,
            reconnect_initial_s: 0.25,
            reconnect_max_s: 5.0,
        }
    }
}

/// The replay rate of a folder source when neither flag nor config gives one.
pub const DEFAULT_REPLAY_FPS: f64 = 5.0;

/// What a run starts from: the file with the flags over it, checked.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The model bundle directory.
    pub model: PathBuf,
    /// The person/pose bundle, if any.
    pub person_model: Option<PathBuf>,
    /// The prompt banks (at least one).
    pub banks: Vec<PathBuf>,
    /// Where frames come from.
    pub source: SourceSpec,
    /// Replay rate of a folder source.
    pub fps: f64,
    /// The speech backend (default speechd).
    pub speaker: SpeakerKind,
    /// Where the wav speaker writes its files.
    pub speech_dir: Option<PathBuf>,
    /// Print stats as JSON lines on stdout.
    pub stats_json: bool,
    /// Stop after this many seconds; 0 runs until stopped.
    pub duration_s: f64,
    /// Where and how the image encoder runs.
    pub encoder: EncoderOptions,
    /// The pipeline's settings (decision, gate, darkness, timings).
    pub pipeline: PipelineConfig,
    /// Voice settings.
    pub voice: VoiceConfig,
    /// Camera format and reconnect timing.
    pub camera: CameraConfig,
    /// Keys, control socket and stdin.
    pub controls: ControlsConfig,
    /// People with their place, from the pose stage (`[people]`).
    pub people: PeopleConfig,
    /// The home monitor; `None`: off.
    pub home: Option<HomeConfig>,
    /// The personal bank of taught labels (loaded at start if it exists).
    pub personal_bank: PathBuf,
    /// Teaching and find mode (`[personal]`).
    pub personal: PersonalConfig,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The model bundle directory (`--model`).
    pub model: Option<PathBuf>,
    /// Where the image encoder runs: `cpu` or `cuda` (`--device`; `cuda` needs the feature).
    pub device: Device,
    /// The runtime of the image encoder and the person model: `tract` or `ort` (`--backend`).
    pub backend: Backend,
    /// The person/pose model bundle (`--person-model`): people, posture and falls.
    pub person_model: Option<PathBuf>,
    /// Threads for the image encoder's matrix products (`--threads`; default 1).
    pub threads: Option<usize>,
    /// Prompt banks (`--bank`, repeatable).
    pub banks: Vec<PathBuf>,
    /// `camera`, `camera:N`, `/dev/videoN`, or an image folder (`--source`).
    pub source: Option<String>,
    /// Replay rate of a folder source (`--fps`).
    pub fps: Option<f64>,
    /// `speechd`, `espeak`, `wav` or `log` (`--speaker`).
    pub speaker: Option<SpeakerKind>,
    /// Where the wav speaker writes (`--speech-dir`).
    pub speech_dir: Option<PathBuf>,
    /// Print stats as JSON lines on stdout (`--stats-json`).
    pub stats_json: bool,
    /// Stop after this many seconds (`--duration`); 0 runs until stopped.
    pub duration_s: f64,
    /// No frame for this many seconds means the camera is lost.
    pub stall_s: Option<f64>,
    /// Stats in the log every this many seconds (0: at the end only).
    pub stats_interval_s: Option<f64>,
    /// Say "vision error" after this many failed frames in a row.
    pub failures_before_telling: Option<u32>,
    /// `[decision]`: when labels are announced.
    pub decision: DecisionConfig,
    /// `[gate]`: the change gate.
    pub gate: GateConfig,
    /// `[dark]`: when a frame is too dark to judge.
    pub dark: DarkConfig,
    /// `[voice]`: voice settings.
    pub voice: VoiceConfig,
    /// `[camera]`: camera format and reconnect timing.
    pub camera: CameraConfig,
    /// `[controls]`: keys, control socket and stdin.
    pub controls: ControlsConfig,
    /// `[people]`: how people are announced with a person model.
    pub people: PeopleConfig,
    /// The home monitor (fall escalation, caregiver alerts); absent: off.
    pub home: Option<HomeConfig>,
    /// The personal bank that `teach` writes and every run loads (`--personal-bank`;
    /// default: the service's state directory, or `~/.local/share/clipsight/`).
    pub personal_bank: Option<PathBuf>,
    /// `[personal]`: teaching and find mode.
    pub personal: PersonalConfig,
    /// `[ort]`: onnxruntime's execution providers, with `backend = "ort"` (ignored with
    /// tract). `providers = ["cuda", "cpu"]`: tried in order among tensorrt, cuda,
    /// openvino (or `openvino:NPU`, `openvino:GPU`), qnn, xnnpack, acl and cpu (default
    /// `["cpu"]`; cpu, if listed, comes last). `provider_policy = "prefer"` (default) skips one
    /// the library lacks with a warning; `"require"` stops. `--ep` and `--ep-policy` override.
    pub ort: Option<OrtOptions>,
}

impl RunConfig {
    /// Reads, parses and validates a config file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::file_error::read_to_string(path)?;
        let mut config = Self::parse(&text, path)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: RunConfig = crate::file_error::parse_toml(text, path)?;
        config
            .validate()
            .map_err(|message| FileError::invalid(path, message))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name}: expected a number ≥ 0, found {v}"))
            }
        };
        if let Some(fps) = self.fps {
            if !(fps.is_finite() && fps > 0.0) {
                return Err(format!("fps: expected a positive number, found {fps}"));
            }
        }
        positive("duration_s", self.duration_s)?;
        let d = &self.decision;
        for (name, v) in [
            ("decision.window_s", d.window_s),
            ("decision.dwell_s", d.dwell_s),
            ("decision.hazard_dwell_s", d.hazard_dwell_s),
            ("decision.leave_s", d.leave_s),
            ("decision.cooldown_s", d.cooldown_s),
            ("decision.hazard_cooldown_s", d.hazard_cooldown_s),
            ("decision.dark_after_s", d.dark_after_s),
            ("gate.recheck_s", self.gate.recheck_s),
            ("voice.stale_after_s", self.voice.stale_after_s),
            (
                "camera.reconnect_initial_s",
                self.camera.reconnect_initial_s,
            ),
            ("camera.reconnect_max_s", self.camera.reconnect_max_s),
            ("people.dwell_s", self.people.dwell_s),
            ("people.cooldown_s", self.people.cooldown_s),
            ("people.lying_dwell_s", self.people.lying_dwell_s),
            ("people.lying_cooldown_s", self.people.lying_cooldown_s),
            ("personal.teach_s", self.personal.teach_s),
            ("personal.find_timeout_s", self.personal.find_timeout_s),
        ] {
            positive(name, v)?;
        }
        for (name, template, field) in [
            ("people.one", &self.people.one, "{where}"),
            ("people.many", &self.people.many, "{count}"),
            ("people.lying", &self.people.lying, "{where}"),
        ] {
            if !template.contains(field) {
                return Err(format!(
                    "{name}: expected a sentence with {field}, found {template:?}"
                ));
            }
        }
        if let Some(v) = self.stall_s {
            positive("stall_s", v)?;
        }
        if let Some(v) = self.stats_interval_s {
            positive("stats_interval_s", v)?;
        }
        if !d.hysteresis_z.is_finite() || d.hysteresis_z < 0.0 {
            return Err(format!(
                "decision.hysteresis_z: expected ≥ 0, found {}",
                d.hysteresis_z
            ));
        }
        if self.voice.volume > 100 {
            return Err(format!(
                "voice.volume: expected 0–100, found {}",
                self.voice.volume
            ));
        }
        if !(80..=500).contains(&self.voice.rate_wpm) {
            return Err(format!(
                "voice.rate_wpm: expected 80–500, found {}",
                self.voice.rate_wpm
            ));
        }
        if let Some(ort) = &self.ort {
            if ort.providers.is_empty() {
                return Err("ort.providers: expected at least one provider".into());
            }
            ort.accelerators()
                .map_err(|e| format!("ort.providers: {e}"))?;
        }
        Ok(())
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(m) = self.model.as_mut() {
            fix(m);
        }
        if let Some(m) = self.person_model.as_mut() {
            fix(m);
        }
        self.banks.iter_mut().for_each(fix);
        if let Some(d) = self.speech_dir.as_mut() {
            fix(d);
        }
        if let Some(p) = self.personal_bank.as_mut() {
            fix(p);
        }
        fix(&mut self.personal.calibration);
        if let Some(s) = self.controls.socket.as_mut() {
            fix(s);
        }
        if let Some(src) = self.source.as_mut() {
            if let Ok(SourceSpec::Folder(p)) = SourceSpec::parse(src) {
                if p.is_relative() {
                    *src = dir.join(p).to_string_lossy().into_owned();
                }
            }
        }
    }

    /// The flags of `run` over this file: the settings a run starts from, with what it
    /// cannot do without checked.
    pub fn apply(mut self, args: RunArgs) -> Result<RuntimeConfig, ConfigError> {
        if args.model.is_some() {
            self.model = args.model;
        }
        if !args.banks.is_empty() {
            self.banks = args.banks;
        }
        if args.source.is_some() {
            self.source = args.source;
        }
        if args.person_model.is_some() {
            self.person_model = args.person_model;
        }
        if args.fps.is_some() {
            self.fps = args.fps;
        }
        if args.speaker.is_some() {
            self.speaker = args.speaker;
        }
        if args.speech_dir.is_some() {
            self.speech_dir = args.speech_dir;
        }
        if args.personal_bank.is_some() {
            self.personal_bank = args.personal_bank;
        }
        if let Some(v) = args.verbosity {
            self.decision.verbosity = v;
        }
        if let Some(d) = args.duration {
            self.duration_s = d;
        }
        self.stats_json |= args.stats_json;
        let e = args.encoder;
        let backend = e.backend.unwrap_or(self.backend);
        let file_ort = self.ort.take().filter(|_| backend == Backend::Ort);
        let encoder = EncoderOptions {
            backend,
            device: e.device.unwrap_or(self.device),
            threads: e.threads.or(self.threads).unwrap_or(1).max(1),
            ort_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
            ort: crate::cli::ort_options(&e, file_ort),
        };
        let missing = |what, flag, key| ConfigError::Missing { what, flag, key };
        let model = self
            .model
            .take()
            .ok_or(missing("model", "model", "model"))?;
        if self.banks.is_empty() {
            return Err(missing("prompt bank", "bank", "banks"));
        }
        let source = self
            .source
            .as_deref()
            .ok_or(missing("source", "source", "source"))?;
        let source = SourceSpec::parse(source).map_err(ConfigError::Source)?;
        Ok(RuntimeConfig {
            pipeline: self.pipeline(),
            model,
            person_model: self.person_model,
            banks: std::mem::take(&mut self.banks),
            source,
            fps: self.fps.unwrap_or(DEFAULT_REPLAY_FPS),
            speaker: self.speaker.unwrap_or(SpeakerKind::Speechd),
            speech_dir: self.speech_dir,
            stats_json: self.stats_json,
            duration_s: self.duration_s,
            encoder,
            voice: self.voice,
            camera: self.camera,
            controls: self.controls,
            people: self.people,
            home: self.home,
            personal_bank: self.personal_bank.unwrap_or_else(|| {
                crate::pipeline::personal::default_bank_path(
                    std::env::var_os("STATE_DIRECTORY").as_deref(),
                    std::env::var_os("XDG_DATA_HOME").as_deref(),
                    std::env::var_os("HOME").as_deref(),
                )
            }),
            personal: self.personal,
        })
    }

    /// The pipeline's settings.
    pub fn pipeline(&self) -> PipelineConfig {
        let base = PipelineConfig::default();
        PipelineConfig {
            decision: self.decision,
            gate: self.gate,
            dark: self.dark,
            stall_s: self.stall_s.unwrap_or(base.stall_s),
            stats_interval_s: self.stats_interval_s.unwrap_or(base.stats_interval_s),
            failures_before_telling: self
                .failures_before_telling
                .unwrap_or(base.failures_before_telling),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Verbosity;

    /// The profiles the package installs as /etc/clipsight/*.toml load (an unknown key would
    /// stop the service at start), and the home profile really runs the fall monitor on a
    /// label its bank has.
    #[test]
    fn the_shipped_profiles_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let wearable = RunConfig::load(&root.join("deploy/wearable.toml")).unwrap();
        assert!(wearable.home.is_none());
        let home = RunConfig::load(&root.join("deploy/home.toml")).unwrap();
        let monitor = home.home.expect("deploy/home.toml has a [home] section");
        monitor.validate().unwrap();
        assert!(!monitor.snapshots);
        let prompts = crate::prompts::PromptSet::load(&root.join("prompts/home.toml")).unwrap();
        assert!(
            prompts
                .prompts
                .iter()
                .any(|p| p.label == monitor.fall_label),
            "{} is not in prompts/home.toml",
            monitor.fall_label
        );
        assert!(home.banks.iter().any(|b| b.ends_with("home.safetensors")));
        // The shipped profile sees falls with the shipped person/pose model.
        assert!(home
            .person_model
            .as_ref()
            .is_some_and(|p| p.ends_with("models/person")));
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        let c = RunConfig::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c, RunConfig::default());
        assert_eq!(c.pipeline().decision.verbosity, Verbosity::New);
    }

    #[test]
    fn sections_and_paths() {
        let c = RunConfig::parse(
            "model = \"m\"\ndevice = \"cuda\"\nbanks = [\"a.safetensors\"]\nsource = \"frames\"\nspeaker = \"wav\"\n\
             [decision]\nverbosity = \"hazards\"\ncooldown_s = 5\n[gate]\nenabled = false\n\
             [voice]\nearcon = false\n[controls]\nsocket = \"ctl.sock\"\n[controls.keys]\ndescribe = [1, 2]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.speaker, Some(SpeakerKind::Wav));
        assert_eq!(c.device, Device::Cuda);
        assert_eq!(c.decision.verbosity, Verbosity::Hazards);
        assert_eq!(c.decision.cooldown_s, 5.0);
        assert!(!c.gate.enabled && !c.voice.earcon);
        assert_eq!(c.controls.keys.describe, vec![1, 2]);
        let mut c = c;
        c.resolve_paths(Path::new("/etc/clipsight"));
        assert_eq!(c.model.unwrap(), PathBuf::from("/etc/clipsight/m"));
        assert_eq!(c.source.unwrap(), "/etc/clipsight/frames");
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("modle = \"x\"\n", "modle"),
            ("[decision]\ncooldown = 3\n", "cooldown"),
            ("[voice]\nrate = 3\n", "rate"),
            ("[gate]\nenabled = true\nthreshhold = 1\n", "threshhold"),
        ] {
            let msg = RunConfig::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(key) && msg.starts_with("c.toml: "),
                "{key}: {msg}"
            );
        }
    }

    #[test]
    fn the_ort_section_gives_the_providers() {
        use crate::vision::encoder::{ExecutionProvider, ProviderPolicy};
        let c = RunConfig::parse(
            "backend = \"ort\"\n[ort]\nproviders = [\"openvino:NPU\", \"cuda\", \"cpu\"]\n\
             provider_policy = \"require\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let ort = c.ort.unwrap();
        assert_eq!(ort.provider_policy, ProviderPolicy::Require);
        assert_eq!(
            ort.providers,
            [
                ExecutionProvider::OpenVino {
                    device: Some("NPU".into())
                },
                ExecutionProvider::Cuda,
                ExecutionProvider::Cpu
            ]
        );
        let c = RunConfig::parse("[ort]\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.ort, Some(OrtOptions::default()));
    }

    #[test]
    fn the_ort_section_applies_to_the_ort_backend_under_the_flags() {
        use crate::cli::args::{Cli, Command};
        use crate::vision::encoder::{ExecutionProvider, ProviderPolicy};
        use clap::Parser;
        let args = |flags: &[&str]| {
            let base = [
                "clipsight",
                "run",
                "--model",
                "m",
                "--bank",
                "b",
                "--source",
                "f",
            ];
            match Cli::try_parse_from(base.iter().chain(flags))
                .unwrap()
                .command
            {
                Command::Run(a) => a,
                _ => unreachable!("parsed `run`"),
            }
        };
        let file = RunConfig::parse(
            "backend = \"ort\"\n[ort]\nproviders = [\"cuda\", \"cpu\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let ort = |flags: &[&str]| file.clone().apply(args(flags)).unwrap().encoder.ort;
        let from_file = ort(&[]).unwrap();
        assert_eq!(
            from_file.providers,
            [ExecutionProvider::Cuda, ExecutionProvider::Cpu]
        );
        assert_eq!(from_file.provider_policy, ProviderPolicy::Prefer);
        let flagged = ort(&["--ep", "qnn", "--ep-policy", "require"]).unwrap();
        assert_eq!(flagged.providers, [ExecutionProvider::Qnn]);
        assert_eq!(flagged.provider_policy, ProviderPolicy::Require);
        let policy_only = ort(&["--ep-policy", "require"]).unwrap();
        assert_eq!(policy_only.providers, from_file.providers);
        // With tract the section is left out; a flag is kept, for the loader to refuse.
        assert_eq!(ort(&["--backend", "tract"]), None);
        assert!(ort(&["--backend", "tract", "--ep", "cuda"]).is_some());
        assert_eq!(
            RunConfig::default().apply(args(&[])).unwrap().encoder.ort,
            None
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, key) in [
            ("fps = 0\n", "fps"),
            ("[decision]\ncooldown_s = -1\n", "decision.cooldown_s"),
            ("[voice]\nvolume = 300\n", "volume"),
            ("speaker = \"morse\"\n", "morse"),
            ("[ort]\nproviders = [\"npu\"]\n", "npu"),
            ("[ort]\nproviders = []\n", "ort.providers"),
            ("[ort]\nproviders = [\"cpu\", \"cuda\"]\n", "put cpu last"),
            ("[ort]\nprovider_policy = \"maybe\"\n", "maybe"),
            ("[ort]\nprovider = [\"cuda\"]\n", "provider"),
        ] {
            let msg = RunConfig::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{key}: {msg}");
        }
    }
}
