//! tract: an ONNX graph loaded once, its inputs pinned, optimized, and its runnable state
//! reused for every call, on the CPU (with a thread pool for the matrix products) or, with
//! the `cuda` feature, on an NVIDIA GPU. Also used by the text tower
//! ([`crate::prompts::text_encoder`]). Failures are [`EncodeError`]s naming the model file.

use crate::model::ShapeError;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::tract_linalg::multithread::Executor;

// Links tract's CUDA backend, which registers the "cuda" runtime with tract-core.
#[cfg(feature = "cuda")]
extern crate tract_cuda;

use crate::model::Bundle;
#[cfg(not(feature = "cuda"))]
use crate::vision::encoder::not_compiled;
use crate::vision::encoder::{
    check_device, l2_normalize_into, Device, EncodeError, ImageEncoder, ImageGraph,
};
use crate::vision::onnx_data::weights_by_reference;

/// A pool of `threads` threads for tract's matrix products; `None` for one thread.
///
/// Every graph run with the same thread count shares one pool. The encoder and the pose stage
/// run one after the other in the vision thread, and a pool's idle workers spin for a while
/// before they sleep: with a pool each, the idle pool's spinning workers took CPU from the
/// busy one.
fn executor(threads: usize) -> Result<Option<Executor>, EncodeError> {
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    if threads <= 1 {
        return Ok(None);
    }
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Some(Executor::MultiThread(pool.clone())));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("tract-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| EncodeError::Threads {
            threads,
            message: e.to_string(),
        })?;
    pools.push((threads, pool.clone()));
    Ok(Some(Executor::MultiThread(pool)))
}

/// A runnable, optimized model with its reusable execution state (CPU or GPU).
pub(crate) type Plan = Box<dyn State>;

/// Loads an ONNX file, names its inputs and output, pins the input facts and optimizes it
/// for `device`.
pub(crate) fn load_plan(
    path: &Path,
    inputs: &[(&str, InferenceFact)],
    output: &str,
    device: Device,
    threads: usize,
) -> Result<Plan, EncodeError> {
    let model = pinned_model(path, inputs, output)?;
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
                .map_err(|e| load_error(path, e))
        }
        Device::Cuda => cuda_plan(model, path),
    }
}

/// The CPU plan's graph as tract optimizes it (its kernels picked), without making it runnable.
pub(crate) fn optimized_model(
    path: &Path,
    inputs: &[(&str, InferenceFact)],
    output: &str,
) -> Result<TypedModel, EncodeError> {
    pinned_model(path, inputs, output)?
        .into_optimized()
        .map_err(|e| load_error(path, e))
}

fn load_error(path: &Path, e: TractError) -> EncodeError {
    EncodeError::Load {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    }
}

/// Reads an ONNX file, its large weights straight from the file into tract's tensors
/// ([`weights_by_reference`]) so that they are never held twice; files of another layout are
/// read by tract's own loader.
fn read_model(path: &Path) -> TractResult<InferenceModel> {
    let onnx = tract_onnx::onnx();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (Some(slim), Some(dir)) = (weights_by_reference(path)?, dir.to_str()) else {
        return onnx.model_for_path(path);
    };
    let proto = onnx.proto_model_for_read(&mut slim.as_slice())?;
    let parsed = onnx.parse(&proto, Some(dir))?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(TractError::msg(format!(
            "unresolved inputs: {:?}",
            parsed.unresolved_inputs
        )));
    }
    Ok(parsed.model)
}

/// An ONNX file with its inputs named and their facts pinned, and only `output` kept.
fn pinned_model(
    path: &Path,
    inputs: &[(&str, InferenceFact)],
    output: &str,
) -> Result<InferenceModel, EncodeError> {
    let load = |e: TractError| load_error(path, e);
    let mut model = read_model(path).map_err(load)?;
    let declared: Vec<String> = model
        .input_outlets()
        .map_err(load)?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    for (name, _) in inputs {
        if !declared.iter().any(|d| d == name) {
            return Err(EncodeError::Shape(ShapeError {
                path: path.to_path_buf(),
                what: "input name".into(),
                expected: format!("an input named {name:?}"),
                found: format!("inputs {declared:?}"),
            }));
        }
    }
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    model.set_input_names(&names).map_err(load)?;
    model.select_outputs_by_name([output]).map_err(|e| {
        EncodeError::Shape(ShapeError {
            path: path.to_path_buf(),
            what: "output name".into(),
            expected: format!("an output named {output:?}"),
            found: format!("{e:#}"),
        })
    })?;
    for (i, (_, fact)) in inputs.iter().enumerate() {
        model.set_input_fact(i, fact.clone()).map_err(load)?;
    }
    Ok(model)
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

/// The optimized plan's output fact; a load error naming the file.
pub(crate) fn output_fact(plan: &Plan, path: &Path) -> Result<TypedFact, EncodeError> {
    plan.runnable()
        .output_fact(0)
        .cloned()
        .map_err(|e| load_error(path, e))
}

/// Checks that the optimized plan's output is `[rows, dim]`; `dim: None` accepts any and
/// returns it.
pub(crate) fn check_output(
    plan: &Plan,
    path: &Path,
    rows: usize,
    dim: Option<usize>,
) -> Result<usize, EncodeError> {
    let fact = output_fact(plan, path)?;
    let found = fact.shape.as_concrete().map(|s| s.to_vec());
    match (found.as_deref(), dim) {
        (Some(&[r, d]), Some(dim)) if r == rows && d == dim => Ok(d),
        (Some(&[r, d]), None) if r == rows && d > 0 => Ok(d),
        _ => Err(EncodeError::Shape(ShapeError {
            path: path.to_path_buf(),
            what: "output shape".into(),
            expected: match dim {
                Some(dim) => format!("[{rows}, {dim}] (embedding.dim = {dim})"),
                None => format!("[{rows}, dim]"),
            },
            found: format!("{:?}", fact.shape),
        })),
    }
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
        Self::load_graph(&ImageGraph::of_bundle(bundle), 1, Device::Cpu)
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
        crate::vision::memory::for_frames();
        let outputs = self
            .plan
            .run(tvec!(self.input.clone().into_tvalue()))
            .map_err(run_err)?;
        let plain = outputs[0].try_as_plain_ram().map_err(run_err)?;
        let view = plain.as_slice::<f32>().map_err(run_err)?;
        l2_normalize_into(view, out, &self.path)
    }
}
