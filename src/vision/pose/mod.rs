//! The person-and-pose stage: an RGB frame → the people in it, each with a box, a score, the
//! keypoints, a posture and a direction, and whether someone lies as after a fall.
//!
//! One ONNX graph (`models/person`, MoveNet MultiPose) read through its manifest
//! ([`PersonManifest`], `model.toml`): [`PersonBundle::load`] checks the file and the graph,
//! [`PoseEstimator::load_with`] loads it on the image encoder's runtime (tract: the input
//! pinned and the graph optimized; or onnxruntime, `--backend ort`), and
//! [`PoseEstimator::estimate`] letterboxes the frame into a reused tensor, runs it and decodes
//! the rows into [`People`] by the model card's rules (`models/person/README.md`, "How
//! clipsight reads this model"; `models/person_eval.py` is the executable reference). Every
//! number comes from the manifest. Once warm, a frame allocates nothing in this module (tract's
//! own run aside).
//!
//! `fallen` here is the single-frame, pose-only verdict. The card's image-context veto (bed
//! or sofa rather than floor) is [`furniture_veto`], a pure function of a margin the caller
//! computes from its prompt bank; smoothing over frames is the caller's too.

mod decode;
pub mod letterbox;
pub mod manifest;
pub mod posture;

use crate::model::ShapeError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::model::BundleError;
use crate::types::RgbView;
use crate::vision::encoder::{Backend, Device, EncodeError, EncoderOptions};
use crate::vision::preprocess::PreprocessError;
use crate::vision::tract::{load_plan, output_fact, Plan};

pub use decode::iou;
pub use letterbox::{Geometry, Letterbox};
pub use manifest::{ElementType, PersonBundle, PersonManifest, MAX_KEYPOINTS};
pub use posture::{posture_of, Direction, Features, Posture};

use decode::Decoder;

/// Why the pose stage could not load or run.
#[derive(Debug, thiserror::Error)]
pub enum PoseError {
    /// The bundle: its manifest, a hash, or a graph that differs from the manifest.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// tract cannot parse, optimize or run the graph (names the file).
    #[error(transparent)]
    Model(#[from] EncodeError),
    /// The frame cannot be letterboxed (empty, or a bad buffer).
    #[error(transparent)]
    Image(#[from] PreprocessError),
}

/// One keypoint in image pixels, with the model's confidence.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Keypoint {
    /// Column, in image pixels (may lie outside the frame).
    pub x: f32,
    /// Row, in image pixels, y down (may lie outside the frame).
    pub y: f32,
    /// The model's confidence, 0..1.
    pub score: f32,
}

/// One person row that survived the candidate filter and NMS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Person {
    /// The box `[x0, y0, x1, y1]` in image pixels, clipped to the frame.
    pub bbox: [f32; 4],
    /// The row's person score, 0..1.
    pub score: f32,
    keypoints: [Keypoint; MAX_KEYPOINTS],
    keypoint_count: usize,
    /// What the posture rules measured.
    pub features: Features,
    /// Standing, sitting, lying or unknown.
    pub posture: Posture,
    /// Left, ahead or right third of the frame.
    pub direction: Direction,
    /// In view: the score reaches `[person].presence_score`, or the person is lying (the
    /// model scores lying people low).
    pub present: bool,
}

impl Person {
    /// The keypoints in `[keypoints].names` order, in image pixels.
    pub fn keypoints(&self) -> &[Keypoint] {
        &self.keypoints[..self.keypoint_count]
    }
}

/// The people of one frame: every candidate best first, and the single-frame fall flag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct People {
    persons: Vec<Person>,
    fallen: bool,
    width: u32,
    height: u32,
}

impl People {
    /// Every row scoring at least `[person].candidate_score` that survived NMS, best first
    /// (present or not).
    pub fn persons(&self) -> &[Person] {
        &self.persons
    }

    /// The people in view ([`Person::present`]), best first.
    pub fn present(&self) -> impl Iterator<Item = &Person> {
        self.persons.iter().filter(|p| p.present)
    }

    /// Whether anyone is in view.
    pub fn anyone(&self) -> bool {
        self.persons.iter().any(|p| p.present)
    }

    /// Pose only, this frame: a candidate is lying. Combine with [`furniture_veto`].
    pub fn fallen(&self) -> bool {
        self.fallen
    }

    /// The frame's width, in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// The frame's height, in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }
}

/// The card's image-context veto: a frame whose furniture margin (`max(bed, sofa) − floor`
/// of the image's cosines with those labels) reaches `[fall].context_furniture_margin` shows
/// someone lying on furniture, not fallen. A NaN margin vetoes nothing.
pub fn furniture_veto(margin: f32, manifest: &PersonManifest) -> bool {
    margin >= manifest.fall.context_furniture_margin
}

/// The furniture margin of a frame from matching's scores: the best cosine of the manifest's
/// furniture labels (`[fall].context_labels_furniture`, e.g. bed and sofa) minus the best of
/// its floor labels, read from the loaded banks' labels. `None` when the banks lack them (no
/// veto then).
pub fn context_margin(
    labels: &[crate::decide::LabelInfo],
    scores: &crate::types::Scores,
    manifest: &PersonManifest,
) -> Option<f32> {
    let best = |names: &[String]| {
        labels
            .iter()
            .zip(&scores.cosine)
            .filter(|(l, _)| names.iter().any(|n| n == &l.label))
            .map(|(_, &c)| c)
            .reduce(f32::max)
    };
    Some(
        best(&manifest.fall.context_labels_furniture)? - best(&manifest.fall.context_labels_floor)?,
    )
}

/// Time spent in each part of the last [`PoseEstimator::estimate`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoseTimes {
    /// Letterbox and conversion into the input tensor.
    pub preprocess: Duration,
    /// The graph.
    pub infer: Duration,
    /// Rows → people.
    pub decode: Duration,
}

impl PoseTimes {
    /// All three.
    pub fn total(&self) -> Duration {
        self.preprocess + self.infer + self.decode
    }
}

/// What runs the graph: tract's plan, or an onnxruntime session (`--backend ort`).
enum Runner {
    Tract(Plan),
    #[cfg(feature = "ort")]
    Ort(crate::vision::ort::OrtGraph),
}

/// The loaded pose model with its reused buffers.
pub struct PoseEstimator {
    manifest: PersonManifest,
    path: PathBuf,
    runner: Runner,
    input: Arc<Tensor>,
    letterbox: Letterbox,
    decoder: Decoder,
    rows: Vec<f32>,
    people: People,
    times: PoseTimes,
    load_time: Duration,
}

/// The bundle's graph in tract on the CPU: its input pinned to the manifest's element type and
/// shape, optimized, its output checked against the manifest.
fn tract_plan(bundle: &PersonBundle, threads: usize) -> Result<Plan, PoseError> {
    let m = &bundle.manifest;
    let path = bundle.model_path();
    let dt = match m.model.dtype {
        ElementType::I32 => i32::datum_type(),
        ElementType::F32 => f32::datum_type(),
    };
    let shape = m.model.shape;
    let fact = InferenceFact::dt_shape(dt, tvec!(shape[0], shape[1], shape[2], shape[3]));
    let plan = load_plan(
        &path,
        &[(m.model.input.as_str(), fact)],
        &m.output.name,
        Device::Cpu,
        threads,
    )?;
    let out = output_fact(&plan, &path)?;
    let concrete = out.shape.as_concrete().map(|s| s.to_vec());
    if concrete.as_deref() != Some(&m.output.shape[..]) || out.datum_type != f32::datum_type() {
        return Err(BundleError::Shape(ShapeError {
            path,
            what: "optimized output (output.shape, output.dtype)".into(),
            expected: format!("f32 {:?}", m.output.shape),
            found: format!("{:?} {:?}", out.datum_type, out.shape),
        })
        .into());
    }
    Ok(plan)
}

/// Runs tract's plan on `input`; the output values go to `rows`.
fn run_tract(
    plan: &mut Plan,
    input: &Arc<Tensor>,
    rows: &mut [f32],
    path: &std::path::Path,
) -> Result<(), EncodeError> {
    let run_err = |e: TractError| EncodeError::Run {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    crate::vision::memory::for_frames();
    let outputs = plan
        .run(tvec!(input.clone().into_tvalue()))
        .map_err(run_err)?;
    let plain = outputs[0].try_as_plain_ram().map_err(run_err)?;
    let values = plain.as_slice::<f32>().map_err(run_err)?;
    if values.len() != rows.len() {
        return Err(EncodeError::Shape(ShapeError {
            path: path.to_path_buf(),
            what: "output values".into(),
            expected: format!("{} (output.shape)", rows.len()),
            found: values.len().to_string(),
        }));
    }
    rows.copy_from_slice(values);
    Ok(())
}

impl PoseEstimator {
    /// Loads the bundle's graph with tract on the CPU, its matrix products on `threads`
    /// threads ([`PoseEstimator::load_with`] with the default options otherwise).
    pub fn load(bundle: &PersonBundle, threads: usize) -> Result<Self, PoseError> {
        Self::load_with(
            bundle,
            &EncoderOptions {
                threads,
                ..EncoderOptions::default()
            },
        )
    }

    /// Loads the bundle's graph on the runtime `options` names, as the image encoder's: tract
    /// (on the CPU, its input pinned to the manifest's element type and shape, optimized) or
    /// onnxruntime on its execution providers. Its output must be the manifest's.
    pub fn load_with(bundle: &PersonBundle, options: &EncoderOptions) -> Result<Self, PoseError> {
        let start = Instant::now();
        let m = &bundle.manifest;
        let path = bundle.model_path();
        let load_err = |e: TractError| EncodeError::Load {
            path: path.clone(),
            message: format!("{e:#}"),
        };
        let shape = m.model.shape;
        let runner = match options.backend {
            Backend::Tract if options.ort.is_some() => {
                return Err(EncodeError::ProvidersNeedOrt {
                    backend: Backend::Tract.as_str(),
                }
                .into())
            }
            Backend::Tract => Runner::Tract(tract_plan(bundle, options.threads)?),
            #[cfg(feature = "ort")]
            Backend::Ort => Runner::Ort(crate::vision::ort::OrtGraph::load(
                &path,
                (m.model.input.as_str(), shape),
                (m.output.name.as_str(), &m.output.shape),
                options,
            )?),
            #[cfg(not(feature = "ort"))]
            Backend::Ort => {
                return Err(EncodeError::NotCompiled {
                    what: "onnxruntime",
                    feature: "ort",
                }
                .into())
            }
        };
        let input = match m.model.dtype {
            ElementType::I32 => Tensor::zero::<i32>(&shape),
            ElementType::F32 => Tensor::zero::<f32>(&shape),
        }
        .map_err(load_err)?;
        let decoder = Decoder::new(m).ok_or_else(|| BundleError::Manifest {
            path: bundle.dir.join(crate::model::MANIFEST_FILE),
            message: "keypoints.names: a posture joint is missing".into(),
        })?;
        let rows = decoder.layout.rows * decoder.layout.row_len;
        let load_time = start.elapsed();
        log::info!(
            "loaded {} ({}, {} threads) in {load_time:.2?}",
            path.display(),
            options.backend.as_str(),
            options.threads.max(1)
        );
        Ok(PoseEstimator {
            letterbox: Letterbox::new(m),
            manifest: m.clone(),
            path,
            runner,
            input: Arc::new(input),
            decoder,
            rows: vec![0.0; rows],
            people: People {
                persons: Vec::with_capacity(m.output.max_people),
                ..People::default()
            },
            times: PoseTimes::default(),
            load_time,
        })
    }

    /// Finds the people in one frame; the result is valid until the next call.
    pub fn estimate(&mut self, img: RgbView<'_>) -> Result<&People, PoseError> {
        let t0 = Instant::now();
        let geometry = self.letterbox.run(img)?;
        let run_err = |path: &PathBuf, e: TractError| EncodeError::Run {
            path: path.clone(),
            message: format!("{e:#}"),
        };
        self.fill_input().map_err(|e| run_err(&self.path, e))?;
        let t1 = Instant::now();
        match &mut self.runner {
            Runner::Tract(plan) => run_tract(plan, &self.input, &mut self.rows, &self.path)?,
            #[cfg(feature = "ort")]
            Runner::Ort(graph) => {
                let input = self
                    .input
                    .try_as_plain_ram()
                    .map_err(|e| run_err(&self.path, e))?;
                let pixels = match self.manifest.model.dtype {
                    ElementType::I32 => crate::vision::ort::PixelSlice::I32(
                        input
                            .as_slice::<i32>()
                            .map_err(|e| run_err(&self.path, e))?,
                    ),
                    ElementType::F32 => crate::vision::ort::PixelSlice::F32(
                        input
                            .as_slice::<f32>()
                            .map_err(|e| run_err(&self.path, e))?,
                    ),
                };
                graph.run(pixels, &mut self.rows)?;
            }
        }
        let t2 = Instant::now();
        self.decoder.decode(&self.rows, &geometry, &mut self.people);
        self.times = PoseTimes {
            preprocess: t1 - t0,
            infer: t2 - t1,
            decode: t2.elapsed(),
        };
        Ok(&self.people)
    }

    /// Writes the letterboxed canvas into the input tensor, in place when the plan holds no
    /// reference to it (it drops its reference after each run).
    fn fill_input(&mut self) -> TractResult<()> {
        if Arc::get_mut(&mut self.input).is_none() {
            let shape = self.input.shape().to_vec();
            let dt = self.input.datum_type();
            self.input = Arc::new(Tensor::zero_dt(dt, &shape)?);
        }
        let Some(t) = Arc::get_mut(&mut self.input) else {
            return Err(TractError::msg("the input tensor is shared"));
        };
        let mut plain = t.try_as_plain_ram_mut()?;
        match self.manifest.model.dtype {
            ElementType::I32 => self.letterbox.write_i32(plain.as_slice_mut::<i32>()?),
            ElementType::F32 => self.letterbox.write_f32(plain.as_slice_mut::<f32>()?),
        }
        Ok(())
    }

    /// The raw output of the last frame: `max_people` rows of the manifest's row length.
    pub fn raw_rows(&self) -> &[f32] {
        &self.rows
    }

    /// The letterboxed RGB8 square of the last frame.
    pub fn canvas(&self) -> &[u8] {
        self.letterbox.canvas()
    }

    /// The people of the last frame.
    pub fn people(&self) -> &People {
        &self.people
    }

    /// The manifest it was loaded from.
    pub fn manifest(&self) -> &PersonManifest {
        &self.manifest
    }

    /// Times of the last successful [`PoseEstimator::estimate`].
    pub fn last_times(&self) -> PoseTimes {
        self.times
    }

    /// How long loading and optimizing took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> PersonManifest {
        PersonManifest::parse(&manifest::tests::committed(), Path::new("model.toml")).unwrap()
    }

    #[test]
    fn the_veto_reads_the_manifest_margin() {
        let m = manifest();
        assert!(furniture_veto(0.49, &m));
        assert!(furniture_veto(0.35, &m));
        assert!(!furniture_veto(0.13, &m));
        assert!(!furniture_veto(f32::NAN, &m));
    }
}
