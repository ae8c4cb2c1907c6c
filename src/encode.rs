//! Encoders: preprocessed pixels → image embedding, prompts → text embeddings, with tract.
//!
//! Each ONNX graph is loaded once, its inputs are pinned to the manifest's shapes, it is
//! optimized, and the runnable plan is reused for every call. Embeddings come out
//! L2-normalized. The image input tensor is kept and rewritten in place, so encoding a frame
//! allocates nothing in this crate. Failures are [`EncodeError`]s naming the model file.
//!
//! [`load_image_encoder`] picks the runtime of an image encoder ([`Backend`]): tract (the
//! default, here) or onnxruntime (`encode_ort`, behind the `ort` cargo feature), and how many
//! threads its matrix products use.
//! The image tower runs on the CPU, or on an NVIDIA GPU through tract's CUDA backend when the
//! crate is built with the `cuda` feature and [`Device::Cuda`] is asked for; asking for it in
//! a build without the feature is [`EncodeError::NotCompiled`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::tract_linalg::multithread::Executor;

// Links tract's CUDA backend, which registers the "cuda" runtime with tract-core.
#[cfg(feature = "cuda")]
extern crate tract_cuda;

use crate::bundle::Bundle;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{path}: cannot load the model: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path}: {what}: expected {expected}, found {found}")]
    Shape {
        path: PathBuf,
        what: String,
        expected: String,
        found: String,
    },
    #[error("{path}: inference failed: {message}")]
    Run { path: PathBuf, message: String },
    #[error("{path}: cannot tokenize {text:?}: {message}")]
    Tokenize {
        path: PathBuf,
        text: String,
        message: String,
    },
    #[error("input holds {found} values, expected {expected}")]
    BadInput { expected: usize, found: usize },
    #[error("{path}: the model produced a non-finite embedding")]
    NonFinite { path: PathBuf },
    #[error("clipsight was not compiled with {what} support (cargo feature `{feature}`)")]
    NotCompiled {
        what: &'static str,
        feature: &'static str,
    },
    #[error("cannot start {threads} inference threads: {message}")]
    Threads { threads: usize, message: String },
}

/// Which runtime runs an image encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// tract, pure Rust (the default).
    #[default]
    Tract,
    /// onnxruntime, loaded at run time from its shared library (cargo feature `ort`).
    Ort,
}

impl Backend {
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
    pub path: PathBuf,
    pub input: String,
    pub output: String,
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

/// Loads an image encoder with the runtime and threads `options` name.
pub fn load_image_encoder(
    graph: &ImageGraph,
    options: &EncoderOptions,
) -> Result<Box<dyn ImageEncoder>, EncodeError> {
    match options.backend {
        Backend::Tract => Ok(Box::new(TractImageEncoder::load_graph(
            graph,
            options.threads,
            options.device,
        )?)),
        #[cfg(feature = "ort")]
        Backend::Ort => Ok(Box::new(crate::encode_ort::OrtImageEncoder::load(
            graph,
            options.threads,
            options.ort_library.as_deref(),
        )?)),
        #[cfg(not(feature = "ort"))]
        Backend::Ort => Err(EncodeError::NotCompiled {
            what: "onnxruntime",
            feature: "ort",
        }),
    }
}

/// A pool of `threads` threads for tract's matrix products; `None` for one thread.
fn executor(threads: usize) -> Result<Option<Executor>, EncodeError> {
    if threads <= 1 {
        return Ok(None);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("tract-{i}"))
        .build()
        .map(|pool| Some(Executor::MultiThread(Arc::new(pool))))
        .map_err(|e| EncodeError::Threads {
            threads,
            message: e.to_string(),
        })
}

/// Where an encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
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

/// A runnable, optimized model with its reusable execution state (CPU or GPU).
type Plan = Box<dyn State>;

/// Loads an ONNX file, names its inputs and output, pins the input facts and optimizes it
/// for `device`.
fn load_plan(
    path: &Path,
    inputs: &[(&str, InferenceFact)],
    output: &str,
    device: Device,
    threads: usize,
) -> Result<Plan, EncodeError> {
    let load = |e: TractError| EncodeError::Load {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    let mut model = tract_onnx::onnx().model_for_path(path).map_err(load)?;
    let declared: Vec<String> = model
        .input_outlets()
        .map_err(load)?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    for (name, _) in inputs {
        if !declared.iter().any(|d| d == name) {
            return Err(EncodeError::Shape {
                path: path.to_path_buf(),
                what: "input name".into(),
                expected: format!("an input named {name:?}"),
                found: format!("inputs {declared:?}"),
            });
        }
    }
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    model.set_input_names(&names).map_err(load)?;
    model
        .select_outputs_by_name([output])
        .map_err(|e| EncodeError::Shape {
            path: path.to_path_buf(),
            what: "output name".into(),
            expected: format!("an output named {output:?}"),
            found: format!("{e:#}"),
        })?;
    for (i, (_, fact)) in inputs.iter().enumerate() {
        model.set_input_fact(i, fact.clone()).map_err(load)?;
    }
    match device {
        Device::Cpu => {
            let options = RunOptions {
                executor: executor(threads)?,
                ..Default::default()
            };
            model
                .into_optimized()
                .and_then(|m| m.into_runnable_with_options(&options))
                .and_then(|p| p.spawn())
                .map(|s| Box::new(s) as Plan)
                .map_err(load)
        }
        Device::Cuda => cuda_plan(model, path),
    }
}

/// Hands the typed model to tract's CUDA runtime, which moves the ops it supports to the GPU
/// and optimizes the rest for the CPU.
#[cfg(feature = "cuda")]
fn cuda_plan(model: InferenceModel, path: &Path) -> Result<Plan, EncodeError> {
    let prepare = || -> TractResult<Plan> {
        let typed = model.into_typed()?.into_decluttered()?;
        let runtime = runtime_for_name("cuda")?
            .ok_or_else(|| TractError::msg("tract's CUDA runtime is not linked in"))?;
        runtime.prepare(typed)?.spawn()
    };
    prepare().map_err(|e| EncodeError::Load {
        path: path.to_path_buf(),
        message: format!("on cuda: {e:#}"),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_plan(_model: InferenceModel, _path: &Path) -> Result<Plan, EncodeError> {
    Err(not_compiled(Device::Cuda))
}

fn not_compiled(device: Device) -> EncodeError {
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

/// Checks that the optimized plan's output is `[rows, dim]`; `dim: None` accepts any and
/// returns it.
fn check_output(
    plan: &Plan,
    path: &Path,
    rows: usize,
    dim: Option<usize>,
) -> Result<usize, EncodeError> {
    let fact = plan
        .runnable()
        .output_fact(0)
        .map_err(|e| EncodeError::Load {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
    let found = fact.shape.as_concrete().map(|s| s.to_vec());
    match (found.as_deref(), dim) {
        (Some(&[r, d]), Some(dim)) if r == rows && d == dim => Ok(d),
        (Some(&[r, d]), None) if r == rows && d > 0 => Ok(d),
        _ => Err(EncodeError::Shape {
            path: path.to_path_buf(),
            what: "output shape".into(),
            expected: match dim {
                Some(dim) => format!("[{rows}, {dim}] (embedding.dim = {dim})"),
                None => format!("[{rows}, dim]"),
            },
            found: format!("{:?}", fact.shape),
        }),
    }
}

pub(crate) fn l2_normalize_into(
    src: &[f32],
    out: &mut [f32],
    path: &Path,
) -> Result<(), EncodeError> {
    let norm = src.iter().map(|v| v * v).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return Err(EncodeError::NonFinite {
            path: path.to_path_buf(),
        });
    }
    for (o, v) in out.iter_mut().zip(src) {
        *o = v / norm;
    }
    Ok(())
}

/// The image tower of a bundle, run with tract on the CPU.
pub struct TractImageEncoder {
    path: PathBuf,
    plan: Plan,
    input: Arc<Tensor>,
    dim: usize,
    load_time: Duration,
}

impl TractImageEncoder {
    /// Loads a bundle's image tower on the CPU.
    pub fn load(bundle: &Bundle) -> Result<Self, EncodeError> {
        Self::load_on(bundle, Device::Cpu)
    }

    /// Loads a bundle's image tower on `device`.
    pub fn load_on(bundle: &Bundle, device: Device) -> Result<Self, EncodeError> {
        Self::load_graph(&ImageGraph::of_bundle(bundle), 1, device)
    }

    /// Loads a bare image encoder on the CPU: input `[1, 3, size, size]`, output `[1, dim]`.
    pub fn load_file(
        path: &Path,
        input: &str,
        output: &str,
        size: usize,
        dim: usize,
    ) -> Result<Self, EncodeError> {
        let graph = ImageGraph {
            path: path.to_path_buf(),
            input: input.to_string(),
            output: output.to_string(),
            size,
            dim: Some(dim),
        };
        Self::load_graph(&graph, 1, Device::Cpu)
    }

    /// Loads an image encoder on `device` whose matrix products use `threads` threads.
    pub fn load_graph(
        graph: &ImageGraph,
        threads: usize,
        device: Device,
    ) -> Result<Self, EncodeError> {
        check_device(device)?;
        let start = Instant::now();
        let (path, size) = (graph.path.as_path(), graph.size);
        let fact = InferenceFact::dt_shape(f32::datum_type(), tvec!(1, 3, size, size));
        let plan = load_plan(
            path,
            &[(&graph.input, fact)],
            &graph.output,
            device,
            threads,
        )?;
        let dim = check_output(&plan, path, 1, graph.dim)?;
        let input =
            Arc::new(
                Tensor::zero::<f32>(&[1, 3, size, size]).map_err(|e| EncodeError::Load {
                    path: path.to_path_buf(),
                    message: format!("{e:#}"),
                })?,
            );
        let load_time = start.elapsed();
        log::info!("loaded {} on {device} in {load_time:.2?}", path.display());
        Ok(TractImageEncoder {
            path: path.to_path_buf(),
            plan,
            input,
            dim,
            load_time,
        })
    }

    /// How long loading and optimizing took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

impl ImageEncoder for TractImageEncoder {
    fn input_len(&self) -> usize {
        self.input.len()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&mut self, pixels: &[f32], out: &mut [f32]) -> Result<(), EncodeError> {
        if pixels.len() != self.input.len() {
            return Err(EncodeError::BadInput {
                expected: self.input.len(),
                found: pixels.len(),
            });
        }
        if out.len() != self.dim {
            return Err(EncodeError::BadInput {
                expected: self.dim,
                found: out.len(),
            });
        }
        let run_err = |e: TractError| EncodeError::Run {
            path: self.path.clone(),
            message: format!("{e:#}"),
        };
        // The plan drops its reference after each run, so this is a write in place.
        match Arc::get_mut(&mut self.input) {
            Some(t) => t
                .try_as_plain_ram_mut()
                .and_then(|mut v| {
                    v.as_slice_mut::<f32>()?.copy_from_slice(pixels);
                    Ok(())
                })
                .map_err(run_err)?,
            None => {
                let shape = self.input.shape().to_vec();
                self.input = Arc::new(Tensor::from_shape(&shape, pixels).map_err(run_err)?);
            }
        }
        let outputs = self
            .plan
            .run(tvec!(self.input.clone().into_tvalue()))
            .map_err(run_err)?;
        let plain = outputs[0].try_as_plain_ram().map_err(run_err)?;
        let view = plain.as_slice::<f32>().map_err(run_err)?;
        l2_normalize_into(view, out, &self.path)
    }
}

/// The text tower of a bundle with its tokenizer.
pub struct TractTextEncoder {
    path: PathBuf,
    tokenizer_path: PathBuf,
    plan: Plan,
    tokenizer: Tokenizer,
    batch: usize,
    ctx: usize,
    pad_id: u32,
    feed_mask: bool,
    feed_token_types: bool,
    dim: usize,
    load_time: Duration,
}

/// Token ids and attention mask of one prompt, padded to the context length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
}

impl TractTextEncoder {
    pub fn load(bundle: &Bundle) -> Result<Self, EncodeError> {
        let start = Instant::now();
        let m = &bundle.manifest;
        let path = bundle.text_path();
        let tokenizer_path = bundle.tokenizer_path();
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| EncodeError::Load {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let ctx = m.tokenizer.context_length;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: ctx,
                ..Default::default()
            }))
            .map_err(|e| EncodeError::Load {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let batch = m.text.batch_size;
        let fact = || InferenceFact::dt_shape(i64::datum_type(), tvec!(batch, ctx));
        let mut inputs = vec![(m.text.input_ids.as_str(), fact())];
        if let Some(name) = &m.text.attention_mask {
            inputs.push((name.as_str(), fact()));
        }
        if let Some(name) = &m.text.token_type_ids {
            inputs.push((name.as_str(), fact()));
        }
        let plan = load_plan(&path, &inputs, &m.text.output, Device::Cpu, 1)?;
        check_output(&plan, &path, batch, Some(m.embedding.dim))?;
        let load_time = start.elapsed();
        log::info!("loaded {} in {load_time:.2?}", path.display());
        Ok(TractTextEncoder {
            path,
            tokenizer_path,
            plan,
            tokenizer,
            batch,
            ctx,
            pad_id: m.tokenizer.pad_id,
            feed_mask: m.text.attention_mask.is_some(),
            feed_token_types: m.text.token_type_ids.is_some(),
            dim: m.embedding.dim,
            load_time,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Tokenizes one prompt: special tokens added, truncated and padded to the context length.
    pub fn tokenize(&self, text: &str) -> Result<Tokens, EncodeError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EncodeError::Tokenize {
                path: self.tokenizer_path.clone(),
                text: text.to_string(),
                message: e.to_string(),
            })?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        ids.truncate(self.ctx);
        let mut mask = vec![1i64; ids.len()];
        ids.resize(self.ctx, i64::from(self.pad_id));
        mask.resize(self.ctx, 0);
        Ok(Tokens { ids, mask })
    }

    /// Embeds prompts, `batch_size` at a time; one unit-length row per prompt.
    pub fn embed<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    fn embed_batch<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let (b, ctx) = (self.batch, self.ctx);
        let mut ids = vec![i64::from(self.pad_id); b * ctx];
        let mut mask = vec![0i64; b * ctx];
        for (row, text) in texts.iter().enumerate() {
            let t = self.tokenize(text.as_ref())?;
            ids[row * ctx..(row + 1) * ctx].copy_from_slice(&t.ids);
            mask[row * ctx..(row + 1) * ctx].copy_from_slice(&t.mask);
        }
        // Unused rows of the last batch get a minimal valid sequence (the first row's).
        for row in texts.len()..b {
            ids.copy_within(0..ctx, row * ctx);
            mask.copy_within(0..ctx, row * ctx);
        }
        let run_err = |e: TractError| EncodeError::Run {
            path: self.path.clone(),
            message: format!("{e:#}"),
        };
        let mut inputs: TVec<TValue> = tvec!();
        inputs.push(Tensor::from_shape(&[b, ctx], &ids).map_err(run_err)?.into());
        if self.feed_mask {
            inputs.push(
                Tensor::from_shape(&[b, ctx], &mask)
                    .map_err(run_err)?
                    .into(),
            );
        }
        if self.feed_token_types {
            inputs.push(Tensor::zero::<i64>(&[b, ctx]).map_err(run_err)?.into());
        }
        let outputs = self.plan.run(inputs).map_err(run_err)?;
        let plain = outputs[0].try_as_plain_ram().map_err(run_err)?;
        let flat = plain.as_slice::<f32>().map_err(run_err)?;
        texts
            .iter()
            .enumerate()
            .map(|(row, _)| {
                let mut v = vec![0f32; self.dim];
                l2_normalize_into(
                    &flat[row * self.dim..(row + 1) * self.dim],
                    &mut v,
                    &self.path,
                )?;
                Ok(v)
            })
            .collect()
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
