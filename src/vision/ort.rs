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

use crate::model::ShapeError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

use crate::vision::encoder::{l2_normalize_into, EncodeError, ImageEncoder, ImageGraph};

/// The library name tried when no path is given.
const DEFAULT_LIBRARY: &str = "libonnxruntime.so";

/// An image encoder run by onnxruntime on the CPU.
pub struct OrtImageEncoder {
    path: PathBuf,
    session: Session,
    size: usize,
    dim: usize,
    load_time: Duration,
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

impl OrtImageEncoder {
    /// Opens onnxruntime (once per process) and loads the graph.
    pub fn load(
        graph: &ImageGraph,
        threads: usize,
        library: Option<&Path>,
    ) -> Result<Self, EncodeError> {
        let start = Instant::now();
        let library = library.unwrap_or(Path::new(DEFAULT_LIBRARY));
        let environment = environment(library)?;
        let path = graph.path.as_path();
        let session = Session::builder(&environment)
            .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
            .and_then(|b| Ok(b.with_intra_threads(threads.max(1))?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|b| Ok(b.with_parallel_execution(false)?))
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| load_err(path, e))?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if inputs != [graph.input.as_str()] {
            return Err(EncodeError::Shape(ShapeError {
                path: path.to_path_buf(),
                what: "inputs".into(),
                expected: format!("one input named {:?}", graph.input),
                found: format!("{inputs:?}"),
            }));
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let Some(output) = session.outputs().iter().find(|o| o.name() == graph.output) else {
            return Err(EncodeError::Shape(ShapeError {
                path: path.to_path_buf(),
                what: "output name".into(),
                expected: format!("an output named {:?}", graph.output),
                found: format!("outputs {outputs:?}"),
            }));
        };
        if outputs.len() != 1 {
            return Err(EncodeError::Shape(ShapeError {
                path: path.to_path_buf(),
                what: "outputs".into(),
                expected: format!("one output named {:?}", graph.output),
                found: format!("{outputs:?}"),
            }));
        }
        let declared = match output.dtype() {
            ValueType::Tensor { shape, .. } => shape.iter().copied().collect::<Vec<i64>>(),
            other => {
                return Err(EncodeError::Shape(ShapeError {
                    path: path.to_path_buf(),
                    what: "output type".into(),
                    expected: "an f32 tensor".into(),
                    found: format!("{other:?}"),
                }))
            }
        };
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
            "loaded {} with onnxruntime ({} threads) in {load_time:.2?}",
            path.display(),
            threads.max(1)
        );
        Ok(OrtImageEncoder {
            path: path.to_path_buf(),
            session,
            size: graph.size,
            dim,
            load_time,
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
