//! The person/pose bundle: `model.toml` (kind `"person-pose"`) and its ONNX graph.
//!
//! Input: a directory such as `models/person`. Output: a validated [`PersonBundle`] whose
//! [`PersonManifest`] mirrors `model.toml` key for key (unknown keys are refused) and holds
//! every number the pose stage uses: the input tensor and its preprocessing, the output row
//! layout, the keypoint names, the thresholds of the presence, posture and fall rules.
//! Loading checks the graph file's sha256 and that the graph's input and output names, element
//! types and shapes are the ones the manifest declares. Failures name the file and the key
//! ([`BundleError`] for the manifest, hashes and shapes; [`EncodeError`] when tract cannot
//! parse the graph), wrapped in [`PoseError`].

use crate::file_error::FileError;
use crate::model::ShapeError;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::PoseError;
use crate::model::{sha256_file, BundleError, Interpolation, MANIFEST_FILE};
use crate::vision::encoder::EncodeError;

/// The person manifest format version this build understands.
pub const PERSON_MANIFEST_FORMAT: u32 = 1;
/// The `kind` a person/pose manifest declares.
pub const PERSON_KIND: &str = "person-pose";
/// The most keypoints per person the decoder holds (the manifest may list fewer).
pub const MAX_KEYPOINTS: usize = 32;

/// The keypoints the posture rules read, by their `[keypoints].names` name. The manifest must
/// list them all (in any order); the model card's rules are written in these terms.
pub const POSTURE_JOINTS: [&str; 8] = [
    "left_shoulder",
    "right_shoulder",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// Memory order of the image input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorLayout {
    /// `[1, size, size, 3]`, channels last (`"NHWC"`).
    #[serde(rename = "NHWC")]
    Nhwc,
    /// `[1, 3, size, size]`, channels first (`"NCHW"`).
    #[serde(rename = "NCHW")]
    Nchw,
}

/// An element type of the graph's input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    /// 32-bit integers (`"i32"`): pixel levels are rounded.
    I32,
    /// 32-bit floats (`"f32"`).
    F32,
}

impl ElementType {
    fn datum_type(self) -> DatumType {
        match self {
            ElementType::I32 => i32::datum_type(),
            ElementType::F32 => f32::datum_type(),
        }
    }
}

/// Channel order of the image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelOrder {
    /// Red, green, blue (`"RGB"`).
    #[serde(rename = "RGB")]
    Rgb,
    /// Blue, green, red (`"BGR"`).
    #[serde(rename = "BGR")]
    Bgr,
}

/// How a frame is brought to the square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoseResize {
    /// Scale the longer side to `size` keeping the aspect ratio, pad the rest
    /// (`"letterbox"`).
    Letterbox,
}

/// Where the scaled image sits on the padded square.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PadAlign {
    /// Centred: the offset is `(size − scaled) div 2` on each axis (`"center"`).
    Center,
}

/// What the output coordinates are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coords {
    /// 0..1 over the padded input square (`"normalized_input"`).
    NormalizedInput,
}

/// A field of a keypoint's group of values in an output row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeypointField {
    /// The y coordinate.
    Y,
    /// The x coordinate.
    X,
    /// The keypoint's confidence.
    Score,
}

/// A corner coordinate of a person box in an output row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxField {
    /// Top edge.
    Ymin,
    /// Left edge.
    Xmin,
    /// Bottom edge.
    Ymax,
    /// Right edge.
    Xmax,
}

/// `[model]`: the graph file, its image input and the preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoseModelSpec {
    /// The ONNX file's name inside the bundle.
    pub file: String,
    /// Its sha256, 64 hex digits.
    pub sha256: String,
    /// The image input tensor's name.
    pub input: String,
    /// The input's memory order.
    pub layout: TensorLayout,
    /// The input's element type.
    pub dtype: ElementType,
    /// The input's shape: `[1, size, size, 3]` (NHWC) or `[1, 3, size, size]` (NCHW).
    pub shape: [usize; 4],
    /// The square input side, in pixels (16..=4096).
    pub size: u32,
    /// The channel order the graph expects.
    pub channels: ChannelOrder,
    /// How the frame is brought to `size × size`.
    pub resize: PoseResize,
    /// The resampling filter (Pillow's, as the reference uses it).
    pub interpolation: Interpolation,
    /// The pixel level of the padding, before scaling to `value_range`.
    pub pad_value: u8,
    /// Where the scaled frame sits on the square.
    pub pad_align: PadAlign,
    /// Pixel levels 0..255 are mapped linearly onto `[lo, hi]` before `mean`/`std`.
    pub value_range: [f32; 2],
    /// Per-channel (in `channels` order) value subtracted after the range mapping.
    pub mean: [f32; 3],
    /// Per-channel value divided by after `mean` (positive).
    pub std: [f32; 3],
}

/// `[output]`: the graph's output tensor and the layout of one person row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoseOutputSpec {
    /// The output tensor's name.
    pub name: String,
    /// Its shape: `[1, max_people, row length]`.
    pub shape: [usize; 3],
    /// Its element type (only `"f32"`).
    pub dtype: ElementType,
    /// Rows per frame (equals `shape[1]`).
    pub max_people: usize,
    /// Free text describing a row (documentation only).
    #[serde(default)]
    pub decode: String,
    /// Index in a row of the first keypoint's first value.
    pub keypoints_offset: usize,
    /// Values per keypoint (at least 3).
    pub keypoint_stride: usize,
    /// The order of a keypoint's values: a permutation of `y`, `x`, `score`.
    pub keypoint_order: [KeypointField; 3],
    /// Index in a row of the box's first value.
    pub box_offset: usize,
    /// The order of the box's four values: a permutation of the four edges.
    pub box_order: [BoxField; 4],
    /// Index in a row of the person score.
    pub score_offset: usize,
    /// What the coordinates are relative to.
    pub coords: Coords,
}

/// `[keypoints]`: the keypoint names in row order and the skeleton to draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeypointSpec {
    /// Keypoint names, in the order of the output row (at most [`MAX_KEYPOINTS`]; must
    /// include [`POSTURE_JOINTS`]).
    pub names: Vec<String>,
    /// Pairs of keypoint indices joined by a bone (drawing only).
    #[serde(default)]
    pub skeleton: Vec<[usize; 2]>,
}

/// `[person]`: which rows count as people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonThresholds {
    /// A row scoring at least this is a person in view.
    pub presence_score: f32,
    /// Rows scoring at least this are kept and examined for a fall (a lying one is present).
    pub candidate_score: f32,
    /// A keypoint scoring at least this is visible.
    pub keypoint_score: f32,
    /// Non-maximum suppression: a row whose box overlaps a kept row's by IoU above this is
    /// dropped.
    pub nms_iou: f32,
}

/// `[posture]`: the posture rules' thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostureThresholds {
    /// Torso at least this many degrees from upright: lying.
    pub lying_torso_angle_deg: f32,
    /// No torso: a box at least this much wider than tall is lying.
    pub lying_box_aspect: f32,
    /// No thighs: the lowest knee/ankle at least this many torso lengths below the hips is
    /// standing.
    pub standing_leg_extent: f32,
    /// Thighs within this many degrees of straight down: standing, else sitting.
    pub standing_thigh_angle_deg: f32,
}

/// `[fall]`: the single-frame fall rule, its context veto and the suggested smoothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallSpec {
    /// Free text stating the rule (documentation only).
    #[serde(default)]
    pub rule: String,
    /// A furniture margin (`max(bed, sofa) − floor`) at least this vetoes a fall.
    pub context_furniture_margin: f32,
    /// Prompt-bank labels whose cosines make the furniture side of the margin.
    pub context_labels_furniture: Vec<String>,
    /// Prompt-bank labels whose cosines make the floor side of the margin.
    pub context_labels_floor: Vec<String>,
    /// Suggested: alarm after this many consecutive fallen frames.
    pub min_consecutive_frames: u32,
}

/// The parsed person/pose `model.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonManifest {
    /// The format version; must equal [`PERSON_MANIFEST_FORMAT`].
    pub format: u32,
    /// The model's name (not empty).
    pub id: String,
    /// Must be [`PERSON_KIND`].
    pub kind: String,
    /// Free text about the model.
    #[serde(default)]
    pub description: String,
    /// `[model]`: the graph and its input.
    pub model: PoseModelSpec,
    /// `[output]`: the output and its row layout.
    pub output: PoseOutputSpec,
    /// `[keypoints]`: names and skeleton.
    pub keypoints: KeypointSpec,
    /// `[person]`: presence and candidate thresholds.
    pub person: PersonThresholds,
    /// `[posture]`: posture thresholds.
    pub posture: PostureThresholds,
    /// `[fall]`: fall rule and context veto.
    pub fall: FallSpec,
}

fn unit(key: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{key}: expected a number in 0..=1, found {v}"))
    }
}

/// `Ok` when `ok`, else the message `why` makes.
fn require(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn positive(key: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{key}: expected a positive number, found {v}"))
    }
}

impl PersonManifest {
    /// Parses and validates a manifest. `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, BundleError> {
        let bad = |message: String| BundleError::Manifest {
            path: path.to_path_buf(),
            message,
        };
        let m: PersonManifest =
            toml::from_str(text).map_err(|e| bad(crate::toml_error::explain(text, &e)))?;
        m.validate().map_err(bad)?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), String> {
        require(self.format == PERSON_MANIFEST_FORMAT, || {
            format!(
                "format: expected {PERSON_MANIFEST_FORMAT}, found {}",
                self.format
            )
        })?;
        require(self.kind == PERSON_KIND, || {
            format!("kind: expected {PERSON_KIND:?}, found {:?}", self.kind)
        })?;
        if self.id.trim().is_empty() {
            return Err("id: must not be empty".into());
        }
        let m = &self.model;
        let file = &m.file;
        require(
            !(file.is_empty() || file == ".." || file.contains(['/', '\\'])),
            || format!("model.file: expected a file name inside the bundle, found {file:?}"),
        )?;
        require(
            m.sha256.len() == 64 && m.sha256.chars().all(|c| c.is_ascii_hexdigit()),
            || format!("model.sha256: expected 64 hex digits, found {:?}", m.sha256),
        )?;
        require((16..=4096).contains(&m.size), || {
            format!("model.size: expected 16..=4096, found {}", m.size)
        })?;
        require(m.shape == self.input_shape(), || {
            format!(
                "model.shape: expected {:?} for layout {:?} and size {}, found {:?}",
                self.input_shape(),
                m.layout,
                m.size,
                m.shape
            )
        })?;
        let [lo, hi] = m.value_range;
        require(lo.is_finite() && hi.is_finite() && lo < hi, || {
            format!(
                "model.value_range: expected [lo, hi] with lo < hi, found {:?}",
                m.value_range
            )
        })?;
        if m.mean.iter().any(|v| !v.is_finite()) {
            return Err("model.mean: expected finite numbers".into());
        }
        for (i, s) in m.std.iter().enumerate() {
            positive(&format!("model.std[{i}]"), *s)?;
        }
        self.validate_output()?;
        let p = &self.person;
        unit("person.presence_score", p.presence_score)?;
        unit("person.candidate_score", p.candidate_score)?;
        unit("person.keypoint_score", p.keypoint_score)?;
        unit("person.nms_iou", p.nms_iou)?;
        require(p.candidate_score <= p.presence_score, || {
            format!(
                "person.candidate_score: expected at most presence_score ({}), found {}",
                p.presence_score, p.candidate_score
            )
        })?;
        let q = &self.posture;
        for (key, deg) in [
            ("posture.lying_torso_angle_deg", q.lying_torso_angle_deg),
            (
                "posture.standing_thigh_angle_deg",
                q.standing_thigh_angle_deg,
            ),
        ] {
            require(deg.is_finite() && deg > 0.0 && deg <= 180.0, || {
                format!("{key}: expected degrees in (0, 180], found {deg}")
            })?;
        }
        positive("posture.lying_box_aspect", q.lying_box_aspect)?;
        positive("posture.standing_leg_extent", q.standing_leg_extent)?;
        require(self.fall.context_furniture_margin.is_finite(), || {
            format!(
                "fall.context_furniture_margin: expected a number, found {}",
                self.fall.context_furniture_margin
            )
        })?;
        Ok(())
    }

    fn validate_output(&self) -> Result<(), String> {
        let o = &self.output;
        require(o.dtype == ElementType::F32, || {
            format!("output.dtype: expected \"f32\", found {:?}", o.dtype)
        })?;
        let [batch, rows, row_len] = o.shape;
        require(batch == 1 && rows > 0 && row_len > 0, || {
            format!(
                "output.shape: expected [1, people, row length], found {:?}",
                o.shape
            )
        })?;
        require(o.max_people == rows, || {
            format!(
                "output.max_people: expected output.shape[1] ({rows}), found {}",
                o.max_people
            )
        })?;
        let n = self.keypoints.names.len();
        require((1..=MAX_KEYPOINTS).contains(&n), || {
            format!("keypoints.names: expected 1..={MAX_KEYPOINTS} names, found {n}")
        })?;
        for joint in POSTURE_JOINTS {
            if !self.keypoints.names.iter().any(|k| k == joint) {
                return Err(format!(
                    "keypoints.names: the posture rules need {joint:?}, which is missing"
                ));
            }
        }
        for (i, pair) in self.keypoints.skeleton.iter().enumerate() {
            require(pair.iter().all(|&k| k < n), || {
                format!("keypoints.skeleton[{i}]: expected indices below {n}, found {pair:?}")
            })?;
        }
        require(o.keypoint_stride >= 3, || {
            format!(
                "output.keypoint_stride: expected at least 3, found {}",
                o.keypoint_stride
            )
        })?;
        let kp = [KeypointField::Y, KeypointField::X, KeypointField::Score];
        require(kp.iter().all(|f| o.keypoint_order.contains(f)), || {
            format!(
                "output.keypoint_order: expected a permutation of y, x, score, found {:?}",
                o.keypoint_order
            )
        })?;
        let bx = [
            BoxField::Ymin,
            BoxField::Xmin,
            BoxField::Ymax,
            BoxField::Xmax,
        ];
        require(bx.iter().all(|f| o.box_order.contains(f)), || {
            format!(
                "output.box_order: expected a permutation of ymin, xmin, ymax, xmax, found {:?}",
                o.box_order
            )
        })?;
        let kp_end = o.keypoints_offset + o.keypoint_stride * n;
        for (key, end) in [
            ("output.keypoints_offset", kp_end),
            ("output.box_offset", o.box_offset + 4),
            ("output.score_offset", o.score_offset + 1),
        ] {
            if end > row_len {
                return Err(format!(
                    "{key}: the values end at {end}, past the row length {row_len}"
                ));
            }
        }
        Ok(())
    }

    /// The input shape the layout and size imply.
    pub fn input_shape(&self) -> [usize; 4] {
        let n = self.model.size as usize;
        match self.model.layout {
            TensorLayout::Nhwc => [1, n, n, 3],
            TensorLayout::Nchw => [1, 3, n, n],
        }
    }

    /// The index of a keypoint by name.
    pub fn keypoint_index(&self, name: &str) -> Option<usize> {
        self.keypoints.names.iter().position(|k| k == name)
    }
}

/// A loaded, hash-checked person/pose bundle whose graph matches its manifest.
#[derive(Debug, Clone)]
pub struct PersonBundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// Its validated `model.toml`.
    pub manifest: PersonManifest,
}

impl PersonBundle {
    /// Loads `dir/model.toml`, checks the graph file's sha256, then parses the graph and
    /// checks its input and output names, element types and shapes against the manifest.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, PoseError> {
        let bundle = Self::load_unchecked_graph(dir)?;
        bundle.check_graph()?;
        Ok(bundle)
    }

    /// [`PersonBundle::load`] without parsing the graph: the manifest and the hash only.
    /// [`super::PoseEstimator::load`] still checks the names and the optimized output shape,
    /// but not the declared input element type.
    pub fn load_unchecked_graph(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let dir = dir.as_ref().to_path_buf();
        let manifest_path = dir.join(MANIFEST_FILE);
        let text =
            fs::read_to_string(&manifest_path).map_err(FileError::reading(&manifest_path))?;
        let manifest = PersonManifest::parse(&text, &manifest_path)?;
        let path = dir.join(&manifest.model.file);
        let found = sha256_file(&path)?;
        if !found.eq_ignore_ascii_case(&manifest.model.sha256) {
            return Err(BundleError::Hash {
                path,
                expected: manifest.model.sha256.to_ascii_lowercase(),
                found,
            });
        }
        Ok(PersonBundle { dir, manifest })
    }

    /// The ONNX graph file.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.model.file)
    }

    /// Parses the graph and compares its declared input and output with the manifest.
    fn check_graph(&self) -> Result<(), PoseError> {
        let path = self.model_path();
        let load = |e: TractError| EncodeError::Load {
            path: path.clone(),
            message: format!("{e:#}"),
        };
        let shape_err = |what: &str, expected: String, found: String| {
            BundleError::Shape(ShapeError {
                path: path.clone(),
                what: what.into(),
                expected,
                found,
            })
        };
        // Declared output shapes are read too (tract ignores them by default).
        let model = tract_onnx::onnx()
            .with_ignore_output_shapes(false)
            .model_for_path(&path)
            .map_err(load)?;
        let m = &self.manifest;
        let node_name = |o: &OutletId| model.node(o.node).name.clone();
        let output_name = |o: &OutletId| {
            model
                .outlet_label(*o)
                .map(str::to_string)
                .unwrap_or_else(|| node_name(o))
        };
        // The outlet called `wanted`, or an error listing the names there are.
        let pick = |outlets: &[OutletId],
                    name: &dyn Fn(&OutletId) -> String,
                    wanted: &str,
                    what: &str,
                    kind: &str| {
            outlets
                .iter()
                .copied()
                .find(|o| name(o) == wanted)
                .ok_or_else(|| {
                    let names: Vec<String> = outlets.iter().map(name).collect();
                    shape_err(what, format!("{wanted:?}"), format!("{kind} {names:?}"))
                })
        };
        let inputs = model.input_outlets().map_err(load)?;
        let input = pick(
            inputs,
            &node_name,
            &m.model.input,
            "input name (model.input)",
            "inputs",
        )?;
        check_fact(
            model.outlet_fact(input).map_err(load)?,
            m.model.dtype,
            &m.model.shape,
            "input (model.dtype, model.shape)",
            &shape_err,
        )?;
        let outputs = model.output_outlets().map_err(load)?;
        let output = pick(
            outputs,
            &output_name,
            &m.output.name,
            "output name (output.name)",
            "outputs",
        )?;
        check_fact(
            model.outlet_fact(output).map_err(load)?,
            m.output.dtype,
            &m.output.shape,
            "output (output.dtype, output.shape)",
            &shape_err,
        )?;
        Ok(())
    }
}

/// Compares a declared fact with the manifest; dimensions the graph leaves open are accepted
/// (they are pinned at load), known ones must match.
fn check_fact(
    fact: &InferenceFact,
    dtype: ElementType,
    shape: &[usize],
    what: &str,
    err: &dyn Fn(&str, String, String) -> BundleError,
) -> Result<(), BundleError> {
    let expected = || format!("{dtype:?} {shape:?}").to_lowercase();
    let found = || format!("{fact:?}");
    if let Some(dt) = fact.datum_type.concretize() {
        if dt != dtype.datum_type() {
            return Err(err(what, expected(), found()));
        }
    }
    if let Some(rank) = fact.shape.rank().concretize() {
        if rank != shape.len() as i64 {
            return Err(err(what, expected(), found()));
        }
    }
    for (i, want) in shape.iter().enumerate() {
        let known = fact
            .shape
            .dim(i)
            .and_then(|d| d.concretize())
            .and_then(|d| d.as_i64())
            .map(|d| d as usize);
        if known.is_some_and(|k| k != *want) {
            return Err(err(what, expected(), found()));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The committed manifest of `models/person`.
    pub(crate) fn committed() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/person/model.toml");
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_committed_manifest_parses() {
        let m = PersonManifest::parse(&committed(), Path::new("model.toml")).unwrap();
        assert_eq!(m.model.shape, [1, 256, 256, 3]);
        assert_eq!(m.model.dtype, ElementType::I32);
        assert_eq!(m.output.shape, [1, 6, 56]);
        assert_eq!(m.keypoints.names.len(), 17);
        assert_eq!(m.keypoint_index("left_hip"), Some(11));
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        for (after, key) in [
            ("pad_value = 0", "crop_pct"),
            ("nms_iou = 0.5", "max_iou"),
            ("kind = \"person-pose\"", "colour"),
        ] {
            let text = committed().replacen(after, &format!("{after}\n{key} = 1"), 1);
            let msg = PersonManifest::parse(&text, Path::new("m/person/model.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{msg}");
            assert!(msg.contains("m/person/model.toml"), "{msg}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        for (from, to, key) in [
            ("dtype = \"i32\"", "dtype = \"u8\"", "model.dtype"),
            ("layout = \"NHWC\"", "layout = \"NCHW\"", "model.shape"),
            ("max_people = 6", "max_people = 5", "output.max_people"),
            (
                "score_offset = 55",
                "score_offset = 56",
                "output.score_offset",
            ),
            (
                "box_order = [\"ymin\", \"xmin\", \"ymax\", \"xmax\"]",
                "box_order = [\"ymin\", \"xmin\", \"ymax\", \"ymax\"]",
                "output.box_order",
            ),
            (
                "keypoint_order = [\"y\", \"x\", \"score\"]",
                "keypoint_order = [\"y\", \"x\"]",
                "output.keypoint_order",
            ),
            (
                "presence_score = 0.25",
                "presence_score = 1.5",
                "person.presence_score",
            ),
            (
                "candidate_score = 0.125",
                "candidate_score = 0.3",
                "person.candidate_score",
            ),
            (
                "lying_torso_angle_deg = 40.0",
                "lying_torso_angle_deg = 0.0",
                "posture.lying_torso_angle_deg",
            ),
            ("\"left_hip\"", "\"hip_l\"", "left_hip"),
            ("[11, 13]", "[11, 17]", "keypoints.skeleton"),
            ("kind = \"person-pose\"", "kind = \"image-text\"", "kind"),
            (
                "file = \"person.onnx\"",
                "file = \"../person.onnx\"",
                "model.file",
            ),
            ("format = 1", "format = 2", "format"),
        ] {
            let text = committed().replacen(from, to, 1);
            assert_ne!(text, committed(), "{from}");
            let msg = PersonManifest::parse(&text, Path::new("model.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{key}: {msg}");
        }
    }
}
