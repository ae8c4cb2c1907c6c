//! Encoders: preprocessed pixels → image embedding, prompts → text embeddings, with tract.
//!
//! Each ONNX graph is loaded once, its inputs are pinned to the manifest's shapes, it is
//! optimized, and the runnable plan is reused for every call. Embeddings come out
//! L2-normalized. The image input tensor is kept and rewritten in place, so encoding a frame
//! allocates nothing in this crate. Failures are [`EncodeError`]s naming the model file.
//!
//! [`crate::vision::select`] picks the runtime of an image encoder ([`Backend`]): tract (the
//! default, [`crate::vision::tract`]) or onnxruntime ([`crate::vision::ort`], behind the `ort`
//! cargo feature), and how many threads its matrix products use.
//! The image tower runs on the CPU, or on an NVIDIA GPU through tract's CUDA backend when the
//! crate is built with the `cuda` feature and [`Device::Cuda`] is asked for; asking for it in
//! a build without the feature is [`EncodeError::NotCompiled`].
//!
//! The onnxruntime backend can hand the graph to one of the library's execution providers
//! ([`ExecutionProvider`]: TensorRT, CUDA, OpenVINO, QNN, XNNPACK, ACL, CPU), in the order of
//! [`OrtOptions::providers`]. Under [`ProviderPolicy::Prefer`] a provider the library lacks is
//! skipped with a warning; under [`ProviderPolicy::Require`] it is an
//! [`EncodeError::ProviderMissing`] naming the provider and the library. Providers asked of the
//! tract backend are [`EncodeError::ProvidersNeedOrt`].

use crate::model::ShapeError;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::Bundle;

/// Why an encoder could not load or run; most variants name the model file.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The ONNX file (or tokenizer, or runtime library) cannot be read, parsed or optimized.
    #[error("{path}: cannot load the model: {message}")]
    Load {
        /// The file that failed.
        path: PathBuf,
        /// The runtime's message.
        message: String,
    },
    /// A graph's input or output does not have the shape the manifest declares.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// Inference failed at run time.
    #[error("{path}: inference failed: {message}")]
    Run {
        /// The model file.
        path: PathBuf,
        /// The runtime's message.
        message: String,
    },
    /// The tokenizer cannot encode a prompt.
    #[error("{path}: cannot tokenize {text:?}: {message}")]
    Tokenize {
        /// The tokenizer file.
        path: PathBuf,
        /// The prompt.
        text: String,
        /// The tokenizer's message.
        message: String,
    },
    /// The pixel tensor or the output buffer has the wrong length.
    #[error("input holds {found} values, expected {expected}")]
    BadInput {
        /// The length the encoder needs.
        expected: usize,
        /// The length it was given.
        found: usize,
    },
    /// The graph's output has a NaN or infinity, or is all zeros, so it cannot be normalized.
    #[error("{path}: the model produced a non-finite embedding")]
    NonFinite {
        /// The model file.
        path: PathBuf,
    },
    /// The requested device or backend was left out of this build.
    #[error("clipsight was not compiled with {what} support (cargo feature `{feature}`)")]
    NotCompiled {
        /// What is missing ("CUDA", "onnxruntime").
        what: &'static str,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// A required onnxruntime execution provider is not in the library that was opened.
    #[error(
        "onnxruntime {library} has no {provider} execution provider (available: {available}); \
         an onnxruntime build with it (deploy/README.md) can be given in ORT_DYLIB_PATH"
    )]
    ProviderMissing {
        /// The provider's name ("CUDA", "OpenVINO").
        provider: &'static str,
        /// The onnxruntime library.
        library: PathBuf,
        /// The providers the library has, of those clipsight knows ("CPU").
        available: String,
    },
    /// A required execution provider is in the library but could not be started (its own
    /// libraries, a driver or the device are missing).
    #[error("onnxruntime {library}: the {provider} execution provider cannot start: {message}")]
    ProviderFailed {
        /// The provider's name, with its device if one was named ("CUDA", "OpenVINO (NPU)").
        provider: String,
        /// The onnxruntime library.
        library: PathBuf,
        /// onnxruntime's message.
        message: String,
    },
    /// Execution providers listed after `cpu`, which takes every node and leaves them none.
    #[error(
        "execution providers after cpu would never run ({after}): onnxruntime gives each node \
         to the first provider that can run it, and cpu runs them all; put cpu last"
    )]
    ProviderOrder {
        /// The providers listed after cpu.
        after: String,
    },
    /// Execution providers were asked of a backend that has none.
    #[error(
        "execution providers (--ep, --ep-policy) belong to the onnxruntime backend, not \
         {backend}; add --backend ort"
    )]
    ProvidersNeedOrt {
        /// The backend in use ("tract").
        backend: &'static str,
    },
    /// The thread pool for the matrix products cannot be started.
    #[error("cannot start {threads} inference threads: {message}")]
    Threads {
        /// The number of threads asked for.
        threads: usize,
        /// The thread-pool builder's message.
        message: String,
    },
}

/// Which runtime runs an image encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// tract, pure Rust (the default).
    #[default]
    Tract,
    /// onnxruntime, loaded at run time from its shared library (cargo feature `ort`).
    Ort,
}

impl Backend {
    /// The backend's name as in the config and on the command line ("tract", "ort").
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::Ort => "ort",
        }
    }
}

/// How to run an image encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderOptions {
    /// The runtime (default tract).
    pub backend: Backend,
    /// Where tract runs it (the ort backend's accelerators are its execution providers,
    /// [`EncoderOptions::ort`]).
    pub device: Device,
    /// Threads for the matrix products; 1 runs everything on the calling thread.
    pub threads: usize,
    /// onnxruntime's shared library, for [`Backend::Ort`]; `None`: `libonnxruntime` from the
    /// system's library path.
    pub ort_library: Option<PathBuf>,
    /// onnxruntime's execution providers, for [`Backend::Ort`]; `None`: not asked for (the
    /// CPU provider). Giving them with another backend is [`EncodeError::ProvidersNeedOrt`].
    pub ort: Option<OrtOptions>,
}

/// An onnxruntime execution provider: the library's route to an accelerator. Written as in the
/// config and on the command line: `tensorrt`, `cuda`, `openvino` (or `openvino:DEVICE`, with
/// OpenVINO's device: `CPU`, `GPU`, `NPU`, `AUTO:NPU,CPU`, …), `qnn`, `xnnpack`, `acl`, `cpu`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ExecutionProvider {
    /// NVIDIA TensorRT (Jetson, desktop GPUs); nodes it cannot build go to the next provider.
    TensorRt,
    /// NVIDIA CUDA.
    Cuda,
    /// Intel OpenVINO on the device it names (`None`: OpenVINO's default, the CPU).
    OpenVino {
        /// OpenVINO's `device_type` (`GPU`, `NPU`, …).
        device: Option<String>,
    },
    /// Qualcomm QNN on the Hexagon NPU (the HTP backend, `libQnnHtp.so`).
    Qnn,
    /// XNNPACK's ARM and x86 kernels.
    Xnnpack,
    /// Arm Compute Library.
    Acl,
    /// onnxruntime's own CPU kernels (always there).
    Cpu,
}

/// The names [`ExecutionProvider`] accepts, for messages.
pub const EXECUTION_PROVIDER_NAMES: &str =
    "tensorrt, cuda, openvino[:DEVICE], qnn, xnnpack, acl, cpu";

impl ExecutionProvider {
    /// The provider with the device it was asked to use, in messages ("CUDA", "OpenVINO (NPU)").
    pub fn describe(&self) -> String {
        match self {
            ExecutionProvider::OpenVino { device: Some(d) } => format!("OpenVINO ({d})"),
            other => other.label().to_string(),
        }
    }

    /// The provider's name in messages ("CUDA", "OpenVINO").
    pub fn label(&self) -> &'static str {
        match self {
            ExecutionProvider::TensorRt => "TensorRT",
            ExecutionProvider::Cuda => "CUDA",
            ExecutionProvider::OpenVino { .. } => "OpenVINO",
            ExecutionProvider::Qnn => "QNN",
            ExecutionProvider::Xnnpack => "XNNPACK",
            ExecutionProvider::Acl => "ACL",
            ExecutionProvider::Cpu => "CPU",
        }
    }
}

impl std::str::FromStr for ExecutionProvider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, device) = match s.split_once(':') {
            Some((name, device)) => (name, Some(device)),
            None => (s, None),
        };
        let provider = match name.to_ascii_lowercase().as_str() {
            "tensorrt" => ExecutionProvider::TensorRt,
            "cuda" => ExecutionProvider::Cuda,
            "openvino" => match device {
                Some("") => return Err(format!("{s:?}: no OpenVINO device after the colon")),
                device => ExecutionProvider::OpenVino {
                    device: device.map(str::to_string),
                },
            },
            "qnn" => ExecutionProvider::Qnn,
            "xnnpack" => ExecutionProvider::Xnnpack,
            "acl" => ExecutionProvider::Acl,
            "cpu" => ExecutionProvider::Cpu,
            _ => {
                return Err(format!(
                    "unknown execution provider {s:?} (expected one of {EXECUTION_PROVIDER_NAMES})"
                ))
            }
        };
        if device.is_some() && !matches!(provider, ExecutionProvider::OpenVino { .. }) {
            return Err(format!(
                "{s:?}: only openvino takes a device (openvino:NPU)"
            ));
        }
        Ok(provider)
    }
}

impl TryFrom<String> for ExecutionProvider {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ExecutionProvider> for String {
    fn from(p: ExecutionProvider) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecutionProvider::TensorRt => f.write_str("tensorrt"),
            ExecutionProvider::Cuda => f.write_str("cuda"),
            ExecutionProvider::OpenVino { device: None } => f.write_str("openvino"),
            ExecutionProvider::OpenVino { device: Some(d) } => write!(f, "openvino:{d}"),
            ExecutionProvider::Qnn => f.write_str("qnn"),
            ExecutionProvider::Xnnpack => f.write_str("xnnpack"),
            ExecutionProvider::Acl => f.write_str("acl"),
            ExecutionProvider::Cpu => f.write_str("cpu"),
        }
    }
}

/// What happens when a listed execution provider is not in the library or cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderPolicy {
    /// Skip it with a warning and try the next; the CPU provider is always the last resort.
    #[default]
    Prefer,
    /// Stop with an error naming the provider and the library.
    Require,
}

/// onnxruntime's execution providers: the config's `[ort]` section, `--ep`, `--ep-policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrtOptions {
    /// The providers in order of preference (default `["cpu"]`); each node of the graph runs
    /// on the first registered provider that supports it, the rest on the CPU.
    pub providers: Vec<ExecutionProvider>,
    /// `prefer` (default): skip a provider the library lacks, with a warning; `require`: stop.
    pub provider_policy: ProviderPolicy,
}

impl Default for OrtOptions {
    fn default() -> Self {
        OrtOptions {
            providers: vec![ExecutionProvider::Cpu],
            provider_policy: ProviderPolicy::Prefer,
        }
    }
}

impl OrtOptions {
    /// The providers to try, in order, up to `cpu` (the implicit last one); providers listed
    /// after `cpu` are [`EncodeError::ProviderOrder`].
    pub fn accelerators(&self) -> Result<&[ExecutionProvider], EncodeError> {
        match self
            .providers
            .iter()
            .position(|p| *p == ExecutionProvider::Cpu)
        {
            Some(i) if i + 1 < self.providers.len() => Err(EncodeError::ProviderOrder {
                after: self.providers[i + 1..]
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            Some(i) => Ok(&self.providers[..i]),
            None => Ok(&self.providers),
        }
    }
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            backend: Backend::Tract,
            device: Device::Cpu,
            threads: 1,
            ort_library: None,
            ort: None,
        }
    }
}

/// A bare image-encoder graph: input `[1, 3, size, size]` f32, output `[1, dim]` f32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageGraph {
    /// The ONNX file.
    pub path: PathBuf,
    /// The pixel input tensor name.
    pub input: String,
    /// The embedding output tensor name.
    pub output: String,
    /// The square input side N, in pixels.
    pub size: usize,
    /// The embedding size; `None`: read it from the graph.
    pub dim: Option<usize>,
}

impl ImageGraph {
    /// The image tower of a bundle.
    pub fn of_bundle(bundle: &Bundle) -> Self {
        let m = &bundle.manifest;
        ImageGraph {
            path: bundle.image_path(),
            input: m.image.input.clone(),
            output: m.image.output.clone(),
            size: m.image.size as usize,
            dim: Some(m.embedding.dim),
        }
    }
}

/// Where an encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// tract on the CPU.
    #[default]
    Cpu,
    /// tract's CUDA backend on an NVIDIA GPU (Jetson Orin, desktop cards); cargo feature `cuda`.
    Cuda,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

/// An image encoder: a preprocessed `3 × N × N` tensor in, a unit-length embedding out.
pub trait ImageEncoder: Send {
    /// The number of input values it takes (`3 × N × N`).
    fn input_len(&self) -> usize;
    /// The embedding size.
    fn dim(&self) -> usize;
    /// Encodes `pixels` into `out` (length [`ImageEncoder::dim`]), L2-normalized.
    fn encode(&mut self, pixels: &[f32], out: &mut [f32]) -> Result<(), EncodeError>;
    /// The onnxruntime execution provider that runs the graph ("CPU", "CUDA"); `None` for a
    /// runtime without providers.
    fn execution_provider(&self) -> Option<&'static str> {
        None
    }
}

pub(crate) fn not_compiled(device: Device) -> EncodeError {
    debug_assert_eq!(device, Device::Cuda);
    EncodeError::NotCompiled {
        what: "CUDA",
        feature: "cuda",
    }
}

/// Refuses a device this build cannot drive, before any model file is read.
pub fn check_device(device: Device) -> Result<(), EncodeError> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda if cfg!(feature = "cuda") => Ok(()),
        Device::Cuda => Err(not_compiled(device)),
    }
}

pub(crate) fn l2_normalize_into(
    src: &[f32],
    out: &mut [f32],
    path: &Path,
) -> Result<(), EncodeError> {
    if src.len() != out.len() {
        return Err(EncodeError::BadInput {
            expected: out.len(),
            found: src.len(),
        });
    }
    out.copy_from_slice(src);
    if crate::matching::normalize(out) {
        Ok(())
    } else {
        Err(EncodeError::NonFinite {
            path: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available() {
        assert!(check_device(Device::Cpu).is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let e = check_device(Device::Cuda).unwrap_err();
        assert!(matches!(e, EncodeError::NotCompiled { .. }));
        let msg = e.to_string();
        assert!(msg.contains("not compiled with CUDA support"), "{msg}");
        assert!(msg.contains("`cuda`"), "{msg}");
    }

    #[test]
    fn provider_names_parse_and_print_back() {
        for name in [
            "tensorrt",
            "cuda",
            "openvino",
            "openvino:NPU",
            "openvino:AUTO:NPU,CPU",
            "qnn",
            "xnnpack",
            "acl",
            "cpu",
        ] {
            let p: ExecutionProvider = name.parse().unwrap();
            assert_eq!(p.to_string(), name);
            let q: ExecutionProvider = serde_json::from_str(&format!("{name:?}")).unwrap();
            assert_eq!(p, q);
        }
        assert_eq!(
            "CUDA".parse::<ExecutionProvider>(),
            Ok(ExecutionProvider::Cuda)
        );
        assert_eq!(
            "openvino:GPU".parse::<ExecutionProvider>(),
            Ok(ExecutionProvider::OpenVino {
                device: Some("GPU".into())
            })
        );
    }

    #[test]
    fn bad_provider_names_are_refused_with_the_list() {
        let e = "cudnn".parse::<ExecutionProvider>().unwrap_err();
        assert!(e.contains("cudnn") && e.contains("tensorrt, cuda"), "{e}");
        let e = "cuda:1".parse::<ExecutionProvider>().unwrap_err();
        assert!(e.contains("only openvino takes a device"), "{e}");
        assert!("openvino:".parse::<ExecutionProvider>().is_err());
        assert!(serde_json::from_str::<ExecutionProvider>("\"npu\"").is_err());
    }

    #[test]
    fn cpu_ends_the_provider_list() {
        let o = |names: &[&str], policy| OrtOptions {
            providers: names.iter().map(|n| n.parse().unwrap()).collect(),
            provider_policy: policy,
        };
        assert_eq!(OrtOptions::default().accelerators().unwrap(), &[]);
        assert_eq!(
            o(&["cuda", "cpu"], ProviderPolicy::Prefer)
                .accelerators()
                .unwrap(),
            &[ExecutionProvider::Cuda]
        );
        assert_eq!(
            o(&["tensorrt", "cuda"], ProviderPolicy::Require)
                .accelerators()
                .unwrap(),
            &[ExecutionProvider::TensorRt, ExecutionProvider::Cuda]
        );
        let e = o(&["cpu", "cuda"], ProviderPolicy::Prefer)
            .accelerators()
            .unwrap_err();
        assert!(matches!(&e, EncodeError::ProviderOrder { after } if after == "cuda"));
        assert!(e.to_string().contains("put cpu last"), "{e}");
    }

    #[test]
    fn policy_names_parse() {
        let p: ProviderPolicy = serde_json::from_str("\"require\"").unwrap();
        assert_eq!(p, ProviderPolicy::Require);
        assert_eq!(ProviderPolicy::default(), ProviderPolicy::Prefer);
        assert!(serde_json::from_str::<ProviderPolicy>("\"maybe\"").is_err());
    }

    #[test]
    fn device_names_parse() {
        let d: Device = serde_json::from_str("\"cuda\"").unwrap();
        assert_eq!(d, Device::Cuda);
        assert_eq!(Device::default().to_string(), "cpu");
    }
}
