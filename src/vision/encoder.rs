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
    /// Where tract runs it (the ort backend runs on the CPU).
    pub device: Device,
    /// Threads for the matrix products; 1 runs everything on the calling thread.
    pub threads: usize,
    /// onnxruntime's shared library, for [`Backend::Ort`]; `None`: `libonnxruntime` from the
    /// system's library path.
    pub ort_library: Option<PathBuf>,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            backend: Backend::Tract,
            device: Device::Cpu,
            threads: 1,
            ort_library: None,
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
    fn device_names_parse() {
        let d: Device = serde_json::from_str("\"cuda\"").unwrap();
        assert_eq!(d, Device::Cuda);
        assert_eq!(Device::default().to_string(), "cpu");
    }
}
