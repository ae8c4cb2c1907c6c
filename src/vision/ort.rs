//! The onnxruntime image encoder (cargo feature `ort`): the same job as
//! [`TractImageEncoder`](crate::vision::tract::TractImageEncoder) with another runtime.
//!
//! onnxruntime is not linked and nothing is downloaded at build time: its shared library is
//! opened when an encoder is first loaded, from the path the caller gives (the binary takes it
//! from `ORT_DYLIB_PATH`) or else as `libonnxruntime` from the system's library path. The
//! session uses the full graph optimization level, `threads` intra-op threads, one inter-op
//! thread, and sequential execution. The input pixels are passed by reference (no copy), and
//! the output is normalized into the caller's buffer, so encoding a frame allocates nothing in
//! this crate (onnxruntime manages its own arena). Failures are [`EncodeError`]s: a library
//! that cannot be opened or is too old is a `Load` error naming the library.
//!
//! The session runs on the execution providers of [`OrtOptions`], tried in order: a provider
//! is used when the library has it ([`ort::ep::ExecutionProvider::is_available`]) and it
//! registers; the CPU provider is always the last resort and runs any node the others cannot.
//! Each provider registers once: of `openvino:NPU, openvino:GPU` the first that starts is
//! used. Under [`ProviderPolicy::Prefer`] a missing or failing provider is skipped with a warning
//! naming it and the library (and a session that cannot start on the providers is started
//! again on the CPU alone); under [`ProviderPolicy::Require`] it is
//! [`EncodeError::ProviderMissing`] or [`EncodeError::ProviderFailed`]. The provider that runs
//! the graph is logged at load and reported by [`ImageEncoder::execution_provider`].

use crate::model::ShapeError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _, ExecutionProviderDispatch};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

use crate::vision::encoder::{
    l2_normalize_into, EncodeError, EncoderOptions, ExecutionProvider, ImageEncoder, ImageGraph,
    OrtOptions, ProviderPolicy,
};

/// The library name tried when no path is given.
const DEFAULT_LIBRARY: &str = "libonnxruntime.so";

/// QNN's backend for the Hexagon NPU.
#[cfg(windows)]
const QNN_HTP_BACKEND: &str = "QnnHtp.dll";
#[cfg(not(windows))]
const QNN_HTP_BACKEND: &str = "libQnnHtp.so";

/// An image encoder run by onnxruntime, on the execution providers it was asked for.
pub struct OrtImageEncoder {
    path: PathBuf,
    session: Session,
    size: usize,
    dim: usize,
    load_time: Duration,
    provider: &'static str,
}

/// Every provider clipsight knows, for the "available" list of a message.
fn known_providers() -> [ExecutionProvider; 7] {
    [
        ExecutionProvider::TensorRt,
        ExecutionProvider::Cuda,
        ExecutionProvider::OpenVino { device: None },
        ExecutionProvider::Qnn,
        ExecutionProvider::Xnnpack,
        ExecutionProvider::Acl,
        ExecutionProvider::Cpu,
    ]
}

/// Whether the opened library was built with `provider` (which does not yet mean it can
/// start: its own libraries, the driver and the device are checked when it registers).
fn is_available(provider: &ExecutionProvider) -> ort::Result<bool> {
    match provider {
        ExecutionProvider::TensorRt => ep::TensorRT::is_available(),
        ExecutionProvider::Cuda => ep::CUDA::is_available(),
        ExecutionProvider::OpenVino { .. } => ep::OpenVINO::is_available(),
        ExecutionProvider::Qnn => ep::QNN::is_available(),
        ExecutionProvider::Xnnpack => ep::XNNPACK::is_available(),
        ExecutionProvider::Acl => ep::ACL::is_available(),
        ExecutionProvider::Cpu => ep::CPU::is_available(),
    }
}

/// The providers the opened library has, of those clipsight knows ("CPU", "CUDA, CPU").
fn available_providers() -> String {
    known_providers()
        .iter()
        .filter(|p| is_available(p).unwrap_or(false))
        .map(ExecutionProvider::label)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `provider` as onnxruntime registers it; `None` for the CPU, which is always registered.
fn dispatch(provider: &ExecutionProvider, threads: usize) -> Option<ExecutionProviderDispatch> {
    Some(match provider {
        ExecutionProvider::TensorRt => ep::TensorRT::default().build(),
        ExecutionProvider::Cuda => ep::CUDA::default().build(),
        ExecutionProvider::OpenVino { device } => match device {
            Some(d) => ep::OpenVINO::default().with_device_type(d).build(),
            None => ep::OpenVINO::default().build(),
        },
        ExecutionProvider::Qnn => ep::QNN::default()
            .with_backend_path(QNN_HTP_BACKEND)
            .build(),
        ExecutionProvider::Xnnpack => ep::XNNPACK::default()
            .with_intra_op_num_threads(
                std::num::NonZeroUsize::new(threads).unwrap_or(std::num::NonZeroUsize::MIN),
            )
            .build(),
        ExecutionProvider::Acl => ep::ACL::default().build(),
        ExecutionProvider::Cpu => return None,
    })
}

/// Registers `provider` on `builder`, or says why it cannot be: the library lacks it, or it
/// failed to start.
fn register(
    provider: &ExecutionProvider,
    builder: &mut SessionBuilder,
    threads: usize,
    library: &Path,
) -> Result<(), EncodeError> {
    let failed = |message: String| EncodeError::ProviderFailed {
        provider: provider.describe(),
        library: library.to_path_buf(),
        message,
    };
    match is_available(provider) {
        Ok(true) => {}
        Ok(false) => {
            return Err(EncodeError::ProviderMissing {
                provider: provider.label(),
                library: library.to_path_buf(),
                available: available_providers(),
            })
        }
        Err(e) => return Err(failed(e.to_string())),
    }
    match dispatch(provider, threads) {
        Some(d) => d.register(builder).map_err(|e| failed(e.to_string())),
        None => Ok(()),
    }
}

/// Where the graph runs, in words: "CUDA", "TensorRT, then CUDA".
fn where_it_runs(providers: &[&ExecutionProvider]) -> String {
    if providers.is_empty() {
        return "CPU".into();
    }
    let names: Vec<String> = providers.iter().map(|p| p.describe()).collect();
    let (list, pronoun) = (
        names.join(", then "),
        if names.len() == 1 { "it" } else { "they" },
    );
    format!("{list} (any node {pronoun} cannot run: CPU)")
}

fn load_err(path: &Path, e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// onnxruntime allows one environment per process: the first load opens the library and makes
/// it; later loads (a reference encoder beside the one under test) share it.
fn environment(library: &Path) -> Result<Environment, EncodeError> {
    static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let env = ort::init_from(library)
        .map_err(|e| load_err(library, format!("cannot open onnxruntime: {e}")))?
        .with_name("clipsight")
        .build()
        .map_err(|e| load_err(library, e))?;
    *slot = Some(env.clone());
    Ok(env)
}

/// A graph in an onnxruntime session on the execution providers `providers` asks for, its one
/// input and one f32 output checked by name: the session, the provider that runs it, and the
/// output's declared shape (-1 for a free dimension).
fn open_session(
    path: &Path,
    input: &str,
    output: &str,
    threads: usize,
    library: Option<&Path>,
    providers: &OrtOptions,
) -> Result<(Session, &'static str, Vec<i64>), EncodeError> {
    let accelerators = providers.accelerators()?;
    let library = library.unwrap_or(Path::new(DEFAULT_LIBRARY));
    let environment = environment(library)?;
    let base = Session::builder(&environment)
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
        .and_then(|b| Ok(b.with_intra_threads(threads)?))
        .and_then(|b| Ok(b.with_inter_threads(1)?))
        .and_then(|b| Ok(b.with_parallel_execution(false)?))
        // The image encoder and the pose graph run one after the other, each session with its
        // own pool: workers that spin after their run take the CPU from the other session.
        .and_then(|b| Ok(b.with_intra_op_spinning(false)?))
        .map_err(|e| load_err(path, e))?;
    let mut builder = base.clone();
    let mut registered: Vec<&ExecutionProvider> = Vec::new();
    for provider in accelerators {
        // onnxruntime takes each provider once: `openvino:NPU, openvino:GPU` is a choice.
        if let Some(used) = registered.iter().find(|r| r.label() == provider.label()) {
            log::info!("{provider} not tried: {used} already registered");
            continue;
        }
        match register(provider, &mut builder, threads, library) {
            Ok(()) => registered.push(provider),
            Err(e) if providers.provider_policy == ProviderPolicy::Require => return Err(e),
            Err(e) => log::warn!("{e}; skipping {provider}, trying the next provider"),
        }
    }
    let session = match builder.commit_from_file(path) {
        Ok(session) => session,
        Err(e) if registered.is_empty() => return Err(load_err(path, e)),
        Err(e) => match providers.provider_policy {
            ProviderPolicy::Require => {
                return Err(load_err(
                    path,
                    format!(
                        "on {} ({}): {e}",
                        where_it_runs(&registered),
                        library.display()
                    ),
                ))
            }
            ProviderPolicy::Prefer => {
                log::warn!(
                    "onnxruntime {}: {} cannot run {}: {e}; falling back to CPU",
                    library.display(),
                    where_it_runs(&registered),
                    path.display()
                );
                registered.clear();
                base.clone()
                    .commit_from_file(path)
                    .map_err(|e| load_err(path, e))?
            }
        },
    };
    let provider = registered.first().map_or("CPU", |p| p.label());
    log::info!(
        "onnxruntime runs {} on {} ({})",
        path.display(),
        where_it_runs(&registered),
        library.display()
    );
    let shape_err = |what: &str, expected: String, found: String| {
        EncodeError::Shape(ShapeError {
            path: path.to_path_buf(),
            what: what.into(),
            expected,
            found,
        })
    };
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    if inputs != [input] {
        return Err(shape_err(
            "inputs",
            format!("one input named {input:?}"),
            format!("{inputs:?}"),
        ));
    }
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let Some(out) = session.outputs().iter().find(|o| o.name() == output) else {
        return Err(shape_err(
            "output name",
            format!("an output named {output:?}"),
            format!("outputs {outputs:?}"),
        ));
    };
    if outputs.len() != 1 {
        return Err(shape_err(
            "outputs",
            format!("one output named {output:?}"),
            format!("{outputs:?}"),
        ));
    }
    let declared = match out.dtype() {
        ValueType::Tensor { shape, .. } => shape.iter().copied().collect::<Vec<i64>>(),
        other => {
            return Err(shape_err(
                "output type",
                "an f32 tensor".into(),
                format!("{other:?}"),
            ))
        }
    };
    Ok((session, provider, declared))
}

impl OrtImageEncoder {
    /// Opens onnxruntime (once per process) and loads the graph on the execution providers
    /// `providers` asks for.
    pub fn load(
        graph: &ImageGraph,
        threads: usize,
        library: Option<&Path>,
        providers: &OrtOptions,
    ) -> Result<Self, EncodeError> {
        let start = Instant::now();
        let threads = threads.max(1);
        let path = graph.path.as_path();
        let (session, provider, declared) = open_session(
            path,
            &graph.input,
            &graph.output,
            threads,
            library,
            providers,
        )?;
        let dim = match (declared.as_slice(), graph.dim) {
            (&[_, d], Some(dim)) if d == dim as i64 || d < 0 => dim,
            (&[_, d], None) if d > 0 => d as usize,
            _ => {
                return Err(EncodeError::Shape(ShapeError {
                    path: path.to_path_buf(),
                    what: "output shape".into(),
                    expected: match graph.dim {
                        Some(dim) => format!("[1, {dim}]"),
                        None => "[1, dim]".into(),
                    },
                    found: format!("{declared:?}"),
                }))
            }
        };
        let load_time = start.elapsed();
        log::info!(
            "loaded {} with onnxruntime ({threads} threads, {provider} provider) in \
             {load_time:.2?}",
            path.display(),
        );
        Ok(OrtImageEncoder {
            path: path.to_path_buf(),
            session,
            size: graph.size,
            dim,
            load_time,
            provider,
        })
    }

    /// How long opening the library, loading and optimizing took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

impl ImageEncoder for OrtImageEncoder {
    fn input_len(&self) -> usize {
        3 * self.size * self.size
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn execution_provider(&self) -> Option<&'static str> {
        Some(self.provider)
    }

    fn encode(&mut self, pixels: &[f32], out: &mut [f32]) -> Result<(), EncodeError> {
        if pixels.len() != self.input_len() {
            return Err(EncodeError::BadInput {
                expected: self.input_len(),
                found: pixels.len(),
            });
        }
        if out.len() != self.dim {
            return Err(EncodeError::BadInput {
                expected: self.dim,
                found: out.len(),
            });
        }
        let run_err = |e: ort::Error| EncodeError::Run {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let n = self.size;
        let input = TensorRef::from_array_view(([1usize, 3, n, n], pixels)).map_err(run_err)?;
        crate::vision::memory::for_frames();
        let outputs = self.session.run(ort::inputs![input]).map_err(run_err)?;
        let (_, values) = outputs[0].try_extract_tensor::<f32>().map_err(run_err)?;
        if values.len() != self.dim {
            return Err(EncodeError::Shape(ShapeError {
                path: self.path.clone(),
                what: "output".into(),
                expected: format!("{} values", self.dim),
                found: format!("{}", values.len()),
            }));
        }
        l2_normalize_into(values, out, &self.path)
    }
}

/// The pixels of an NHWC graph input, in the element type its manifest names.
#[derive(Debug, Clone, Copy)]
pub enum PixelSlice<'a> {
    /// 0..255 as `i32`.
    I32(&'a [i32]),
    /// Normalized `f32`.
    F32(&'a [f32]),
}

/// A graph with one image input of a fixed shape and one f32 output of a fixed length (the
/// person/pose model), run by onnxruntime; the pose stage's `--backend ort`.
pub struct OrtGraph {
    path: PathBuf,
    session: Session,
    shape: [usize; 4],
    outputs: usize,
    provider: &'static str,
}

impl OrtGraph {
    /// Opens onnxruntime (once per process) and loads the graph; its output must be declared
    /// as `output_shape` (free dimensions allowed).
    pub fn load(
        path: &Path,
        (input, shape): (&str, [usize; 4]),
        (output, output_shape): (&str, &[usize]),
        options: &EncoderOptions,
    ) -> Result<Self, EncodeError> {
        let (session, provider, declared) = open_session(
            path,
            input,
            output,
            options.threads.max(1),
            options.ort_library.as_deref(),
            &options.ort.clone().unwrap_or_default(),
        )?;
        let fits = declared.len() == output_shape.len()
            && declared
                .iter()
                .zip(output_shape)
                .all(|(&d, &m)| d < 0 || d == m as i64);
        if !fits {
            return Err(EncodeError::Shape(ShapeError {
                path: path.to_path_buf(),
                what: "output shape".into(),
                expected: format!("{output_shape:?}"),
                found: format!("{declared:?}"),
            }));
        }
        Ok(OrtGraph {
            path: path.to_path_buf(),
            session,
            shape,
            outputs: output_shape.iter().product(),
            provider,
        })
    }

    /// The provider that runs the graph ("CPU", "CUDA", …).
    pub fn execution_provider(&self) -> &'static str {
        self.provider
    }

    /// Runs one input; the output values go to `out` (of the output's length).
    pub fn run(&mut self, pixels: PixelSlice<'_>, out: &mut [f32]) -> Result<(), EncodeError> {
        let run_err = |e: ort::Error| EncodeError::Run {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let shape = self.shape;
        crate::vision::memory::for_frames();
        let outputs = match pixels {
            PixelSlice::I32(p) => {
                let input = TensorRef::from_array_view((shape, p)).map_err(run_err)?;
                self.session.run(ort::inputs![input])
            }
            PixelSlice::F32(p) => {
                let input = TensorRef::from_array_view((shape, p)).map_err(run_err)?;
                self.session.run(ort::inputs![input])
            }
        }
        .map_err(run_err)?;
        let (_, values) = outputs[0].try_extract_tensor::<f32>().map_err(run_err)?;
        if values.len() != self.outputs || out.len() != self.outputs {
            return Err(EncodeError::Shape(ShapeError {
                path: self.path.clone(),
                what: "output values".into(),
                expected: format!("{} values", self.outputs),
                found: format!("{} (buffer {})", values.len(), out.len()),
            }));
        }
        out.copy_from_slice(values);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_it_runs_names_the_providers_then_the_cpu() {
        assert_eq!(where_it_runs(&[]), "CPU");
        let npu = ExecutionProvider::OpenVino {
            device: Some("NPU".into()),
        };
        assert_eq!(
            where_it_runs(&[&npu]),
            "OpenVINO (NPU) (any node it cannot run: CPU)"
        );
        assert_eq!(
            where_it_runs(&[&ExecutionProvider::TensorRt, &ExecutionProvider::Cuda]),
            "TensorRT, then CUDA (any node they cannot run: CPU)"
        );
    }

    #[test]
    fn every_provider_but_the_cpu_is_registered_with_its_settings() {
        for p in known_providers() {
            assert_eq!(
                dispatch(&p, 2).is_none(),
                p == ExecutionProvider::Cpu,
                "{p}"
            );
        }
        let openvino = dispatch(
            &ExecutionProvider::OpenVino {
                device: Some("GPU".into()),
            },
            1,
        );
        assert_eq!(
            openvino.map(|d| d.name()),
            Some("OpenVINOExecutionProvider")
        );
    }
}
