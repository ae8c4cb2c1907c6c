//! The few-shot teaching study (`clipsight eval --teach DATASET`, issue 18): how well a label
//! taught from K photos of a thing ([`crate::prompts::teach`]) names that thing on other
//! photos, against the label's text prompt.
//!
//! Input: a YOLO-format data set ([`super::yolo::read_dataset`]: `images/<id>.jpg`, `labels/<id>.txt` with
//! `class xc yc w h` lines relative to the image, `classes.txt`), the image embedder, the loaded
//! banks (each class's text row, [`text_rows`]), and a labelled calibration folder whose photos
//! are named by the same ids. Output: a [`StudyReport`].
//!
//! The protocol:
//! 1. Crops ([`super::yolo::embed_crops`]): every box whose shorter side is at least
//!    [`super::yolo::MIN_CROP_SIDE`] pixels, widened ×[`super::yolo::CROP_PAD`] on each axis
//!    around its centre and clipped to the image
//!    ([`super::yolo::crop_box`]), embedded as the product embeds a whole image.
//! 2. A class is eligible when it has a text row and crops from [`MIN_PHOTOS`] photos or more.
//! 3. Each of `splits` random splits (a fixed seed: runs repeat exactly) draws `labels` eligible
//!    classes with distinct text rows, and splits the photos into teach and test photos so that
//!    every drawn label has both and no photo is both ([`split_photos`]).
//! 4. Each label is taught from K crops of its teach photos (all of them when there are fewer;
//!    the shots of K = 1 are among those of K = 3, and so on), as `clipsight teach` does: their
//!    prototype. The text method uses the bank's row. Both are calibrated alike by
//!    [`taught_entry`] on the calibration photos that are not test photos.
//! 5. Every crop of a test photo is a test item: crops of drawn labels score top-1 among the
//!    drawn labels (raw cosine) and recall; crops of other classes are distractors and count
//!    for precision. What is "said" of a crop is the label of highest z among those at or over
//!    their threshold.
//!
//! Fails on an unreadable or malformed data set (errors name the file and line), an image that
//! cannot be decoded or embedded, too few eligible classes, or a split that cannot be made.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use super::yolo::Crop;
use super::Rate;
use crate::capture::decode::DecodeError;
use crate::file_error::FileError;
use crate::prompts::bank::{Bank, BankEntry};
use crate::prompts::calibrate::{CalibrationError, PrecisionRule, Reference};
use crate::prompts::teach::{prototype, taught_entry, Lesson};
use crate::types::Category;
use crate::vision::EmbedError;

/// A class needs crops from at least this many different photos to be drawn.
pub const MIN_PHOTOS: usize = 3;
/// The chance that a photo no drawn label needed goes to the test photos.
pub const TEST_SHARE: f64 = 0.35;
/// The default seed of the splits.
pub const DEFAULT_SEED: u64 = 18;
/// Attempts at splitting the photos for one draw of labels before drawing again, and draws
/// before giving up.
const SPLIT_TRIES: usize = 20;

/// Why the study cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TeachStudyError {
    /// A file of the data set cannot be read, or a line of a label or classes file is
    /// malformed (the message names the line).
    #[error(transparent)]
    Io(#[from] FileError),
    /// The data set has no classes or no images.
    #[error("{path}: {message}")]
    Dataset {
        /// The data set's folder.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// A photo cannot be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A crop cannot be embedded.
    #[error("{path}: crop of box {line}: {source}")]
    Embed {
        /// The photo.
        path: PathBuf,
        /// The box's line in the photo's label file.
        line: usize,
        /// Why (boxed: the error stays small).
        #[source]
        source: Box<EmbedError>,
    },
    /// A label cannot be calibrated.
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    /// Too few eligible classes, or no split satisfies the constraints.
    #[error("{0}")]
    Study(String),
}

/// A class's text-prompt row in the loaded banks.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRow {
    /// Which row of all the banks' rows, in order: classes that share it (an alias) share it.
    pub key: usize,
    /// The bank entry's label.
    pub entry: String,
    /// The row (unit length).
    pub row: Vec<f32>,
}

/// Each class's text row: the first bank entry whose label or one of its aliases is the class
/// name (case-insensitive), or `None`.
pub fn text_rows(classes: &[String], banks: &[Bank]) -> Vec<Option<TextRow>> {
    classes
        .iter()
        .map(|class| {
            let mut key = 0;
            for bank in banks {
                for (i, e) in bank.entries.iter().enumerate() {
                    let named = e.label.eq_ignore_ascii_case(class)
                        || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(class));
                    if named {
                        return Some(TextRow {
                            key: key + i,
                            entry: e.label.clone(),
                            row: bank.embedding(i).to_vec(),
                        });
                    }
                }
                key += bank.len();
            }
            None
        })
        .collect()
}

/// A small deterministic pseudo-random generator (SplitMix64): the same seed, the same study.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// What a photo is in one split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Its crops may teach a label.
    Teach,
    /// Its crops are test items, and it is left out of calibration.
    Test,
}

/// Splits photos `0..photos` into teach and test photos so that each of `labels` (given as
/// the photos showing it) has at least one of each: labels with fewer photos first, each
/// missing role taken by a random photo of the label not yet placed; the other photos go to
/// the test photos with probability `test_share`. `None` when a label runs out of photos.
pub fn split_photos(
    rng: &mut SplitMix64,
    photos: usize,
    labels: &[Vec<usize>],
    test_share: f64,
) -> Option<Vec<Role>> {
    let mut role: Vec<Option<Role>> = vec![None; photos];
    let mut order: Vec<usize> = (0..labels.len()).collect();
    rng.shuffle(&mut order);
    order.sort_by_key(|&l| labels[l].len());
    for l in order {
        for want in [Role::Teach, Role::Test] {
            if labels[l].iter().any(|&p| role.get(p) == Some(&Some(want))) {
                continue;
            }
            let free: Vec<usize> = labels[l]
                .iter()
                .copied()
                .filter(|&p| role.get(p) == Some(&None))
                .collect();
            if free.is_empty() {
                return None;
            }
            role[free[rng.below(free.len())]] = Some(want);
        }
    }
    Some(
        role.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| match rng.unit() < test_share {
                    true => Role::Test,
                    false => Role::Teach,
                })
            })
            .collect(),
    )
}

/// How the study runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyConfig {
    /// Random splits.
    pub splits: usize,
    /// Labels drawn per split.
    pub labels: usize,
    /// The numbers of shots taught (K).
    pub shots: Vec<usize>,
    /// The seed of the splits.
    pub seed: u64,
    /// See [`TEST_SHARE`].
    pub test_share: f64,
    /// How both methods' thresholds are chosen.
    pub rule: PrecisionRule,
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            splits: 200,
            labels: 8,
            shots: vec![1, 3, 5],
            seed: DEFAULT_SEED,
            test_share: TEST_SHARE,
            rule: PrecisionRule::default(),
        }
    }
}

/// A figure over the splits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (of the splits' values, not of the mean).
    pub std: f64,
    /// 5th percentile (linear interpolation).
    pub p5: f64,
    /// 95th percentile.
    pub p95: f64,
}

impl Summary {
    /// The summary of `v` (all zero when empty).
    pub fn of(v: &[f64]) -> Summary {
        if v.is_empty() {
            return Summary::default();
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        Summary {
            mean,
            std,
            p5: percentile(&s, 0.05),
            p95: percentile(&s, 0.95),
        }
    }
}

/// The `q` quantile of sorted, non-empty `s`, linearly interpolated.
fn percentile(s: &[f64], q: f64) -> f64 {
    let at = q * (s.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (at - lo as f64)
}

/// One method's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodResult {
    /// `text` or `taught`.
    pub method: String,
    /// The shots asked for (taught only).
    pub k: Option<usize>,
    /// The mean number of distinct shots a label was taught from (taught only).
    pub mean_shots: Option<f64>,
    /// Top-1 accuracy among the drawn labels on their test crops, per split.
    pub top1: Summary,
    /// Labels said (the highest z over its threshold) that were right, over all said,
    /// distractors included; pooled over the splits.
    pub precision: Rate,
    /// Right labels said over the drawn labels' test crops; pooled.
    pub recall: Rate,
}

/// Taught minus text top-1, split by split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difference {
    /// The shots.
    pub k: usize,
    /// The paired differences' summary.
    pub top1: Summary,
}

/// The whole study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyReport {
    /// Photos in the data set.
    pub photos: usize,
    /// Crops embedded.
    pub crops: usize,
    /// The eligible classes.
    pub eligible: Vec<String>,
    /// Splits.
    pub splits: usize,
    /// Labels per split.
    pub labels: usize,
    /// The seed.
    pub seed: u64,
    /// Draws of labels given up because no split suited them.
    pub redraws: usize,
    /// Mean test crops of drawn labels per split.
    pub mean_test_crops: f64,
    /// Mean distractor crops per split.
    pub mean_distractors: f64,
    /// Mean calibration photos per split (the test photos left out).
    pub mean_calibration_photos: f64,
    /// `text`, then `taught` for each K.
    pub results: Vec<MethodResult>,
    /// Taught − text top-1 for each K.
    pub differences: Vec<Difference>,
}

/// Counts of one method on one split.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    top1: usize,
    positives: usize,
    said: usize,
    right: usize,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scores rows `rows` (label i is class `labels[i]`, calibrated as `entries[i]`) on `test`.
fn score(rows: &[Vec<f32>], entries: &[BankEntry], labels: &[usize], test: &[&Crop]) -> Counts {
    let mut c = Counts::default();
    let mut cos = vec![0f32; rows.len()];
    for crop in test {
        for (v, r) in cos.iter_mut().zip(rows) {
            *v = dot(r, &crop.embedding);
        }
        let truth = labels.iter().position(|&l| l == crop.class);
        if let Some(t) = truth {
            c.positives += 1;
            let best = (0..cos.len()).max_by(|&a, &b| cos[a].total_cmp(&cos[b]));
            c.top1 += usize::from(best == Some(t));
        }
        let said = (0..cos.len())
            .filter(|&i| cos[i] >= entries[i].threshold)
            .max_by(|&a, &b| entries[a].z(cos[a]).total_cmp(&entries[b].z(cos[b])));
        if let Some(s) = said {
            c.said += 1;
            c.right += usize::from(truth == Some(s));
        }
    }
    c
}

/// Running totals of one method over the splits.
#[derive(Debug, Clone, Default)]
struct Tally {
    top1: Vec<f64>,
    counts: Counts,
    shots: usize,
    taught: usize,
}

impl Tally {
    fn add(&mut self, c: Counts) {
        self.top1.push(match c.positives {
            0 => 0.0,
            n => c.top1 as f64 / n as f64,
        });
        self.counts.positives += c.positives;
        self.counts.said += c.said;
        self.counts.right += c.right;
    }

    fn result(&self, method: &str, k: Option<usize>) -> MethodResult {
        MethodResult {
            method: method.into(),
            k,
            mean_shots: k.map(|_| self.shots as f64 / self.taught.max(1) as f64),
            top1: Summary::of(&self.top1),
            precision: Rate::new(self.counts.right, self.counts.said),
            recall: Rate::new(self.counts.right, self.counts.positives),
        }
    }
}

/// Calibrates `row` as label `class` on `refs`/`images` the way `teach` does.
fn calibrated(
    class: &str,
    row: &[f32],
    refs: &[Reference],
    images: &[Vec<f32>],
    rule: &PrecisionRule,
) -> Result<BankEntry, CalibrationError> {
    let lesson = Lesson {
        label: class.to_string(),
        say: String::new(),
        category: Category::Object,
    };
    taught_entry(&lesson, row, 0, Vec::new(), refs, images, rule)
}

/// Runs the study on embedded `crops` of photos `photo_ids`, with each class's text row
/// (`text`, by class id) and the calibration photos `refs` (matched to the data set's photos
/// by file stem) with their embeddings `ref_images`.
pub fn study(
    classes: &[String],
    photo_ids: &[String],
    crops: &[Crop],
    text: &[Option<TextRow>],
    refs: &[Reference],
    ref_images: &[Vec<f32>],
    config: &StudyConfig,
) -> Result<StudyReport, TeachStudyError> {
    let fail = |m: String| TeachStudyError::Study(m);
    if config.splits == 0 || config.shots.is_empty() || config.shots.contains(&0) {
        return Err(fail(format!(
            "need at least 1 split and shots of at least 1 (got {} splits, shots {:?})",
            config.splits, config.shots
        )));
    }
    // Photos showing each class (sorted, distinct), over the crops.
    let mut photos_of: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
    for c in crops {
        if let Some(v) = photos_of.get_mut(c.class) {
            if !v.contains(&c.photo) {
                v.push(c.photo);
            }
        }
    }
    photos_of.iter_mut().for_each(|v| v.sort_unstable());
    let eligible: Vec<usize> = (0..classes.len())
        .filter(|&c| text.get(c).is_some_and(Option::is_some) && photos_of[c].len() >= MIN_PHOTOS)
        .collect();
    let rows: Vec<usize> = eligible
        .iter()
        .filter_map(|&c| text[c].as_ref().map(|t| t.key))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if rows.len() < config.labels || config.labels == 0 {
        return Err(fail(format!(
            "{} eligible classes with {} distinct text rows (a text row and crops from ≥ {MIN_PHOTOS} photos): need {} labels",
            eligible.len(),
            rows.len(),
            config.labels
        )));
    }
    let id_of: HashMap<&str, usize> = photo_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let ref_photo: Vec<Option<usize>> = refs
        .iter()
        .map(|r| {
            r.path
                .file_stem()
                .and_then(|s| id_of.get(s.to_string_lossy().as_ref()).copied())
        })
        .collect();
    let mut rng = SplitMix64::new(config.seed);
    let mut text_tally = Tally::default();
    let mut taught: Vec<Tally> = vec![Tally::default(); config.shots.len()];
    let mut diffs: Vec<Vec<f64>> = vec![Vec::new(); config.shots.len()];
    let (mut redraws, mut test_crops, mut distractors, mut cal_photos) = (0, 0, 0, 0);
    for _ in 0..config.splits {
        let (labels, role) = draw(
            &mut rng,
            &eligible,
            text,
            &photos_of,
            photo_ids.len(),
            config,
        )
        .map(|(l, r, d)| {
            redraws += d;
            (l, r)
        })
        .ok_or_else(|| {
            fail(format!(
                "no split of the photos gives {} labels a teach and a test photo each",
                config.labels
            ))
        })?;
        let test: Vec<&Crop> = crops
            .iter()
            .filter(|c| role.get(c.photo) == Some(&Role::Test))
            .collect();
        let positives = test.iter().filter(|c| labels.contains(&c.class)).count();
        test_crops += positives;
        distractors += test.len() - positives;
        let (cal_refs, cal_images): (Vec<Reference>, Vec<Vec<f32>>) = refs
            .iter()
            .zip(ref_images)
            .zip(&ref_photo)
            .filter(|(_, p)| !p.is_some_and(|p| role.get(p) == Some(&Role::Test)))
            .map(|((r, e), _)| (r.clone(), e.clone()))
            .unzip();
        cal_photos += cal_refs.len();
        let cal = |class: usize, row: &[f32]| {
            calibrated(&classes[class], row, &cal_refs, &cal_images, &config.rule)
        };
        // The text method.
        let text_rows: Vec<Vec<f32>> = labels
            .iter()
            .filter_map(|&l| text[l].as_ref().map(|t| t.row.clone()))
            .collect();
        let entries = labels
            .iter()
            .zip(&text_rows)
            .map(|(&l, r)| cal(l, r))
            .collect::<Result<Vec<_>, _>>()?;
        let text_counts = score(&text_rows, &entries, &labels, &test);
        text_tally.add(text_counts);
        // The taught method: each label's teach crops in a random order; K shots are the first K.
        let shots: Vec<Vec<&Crop>> = labels
            .iter()
            .map(|&l| {
                let mut s: Vec<&Crop> = crops
                    .iter()
                    .filter(|c| c.class == l && role.get(c.photo) == Some(&Role::Teach))
                    .collect();
                rng.shuffle(&mut s);
                s
            })
            .collect();
        for (ki, &k) in config.shots.iter().enumerate() {
            let mut rows = Vec::with_capacity(labels.len());
            for (&l, s) in labels.iter().zip(&shots) {
                let used: Vec<Vec<f32>> = s.iter().take(k).map(|c| c.embedding.clone()).collect();
                taught[ki].shots += used.len();
                taught[ki].taught += 1;
                rows.push(
                    prototype(&used)
                        .ok_or_else(|| fail(format!("the shots of {:?} cancel out", classes[l])))?,
                );
            }
            let entries = labels
                .iter()
                .zip(&rows)
                .map(|(&l, r)| cal(l, r))
                .collect::<Result<Vec<_>, _>>()?;
            let counts = score(&rows, &entries, &labels, &test);
            let rate = |c: Counts| c.top1 as f64 / c.positives.max(1) as f64;
            diffs[ki].push(rate(counts) - rate(text_counts));
            taught[ki].add(counts);
        }
    }
    let per_split = |n: usize| n as f64 / config.splits.max(1) as f64;
    let mut results = vec![text_tally.result("text", None)];
    results.extend(
        config
            .shots
            .iter()
            .zip(&taught)
            .map(|(&k, t)| t.result("taught", Some(k))),
    );
    Ok(StudyReport {
        photos: photo_ids.len(),
        crops: crops.len(),
        eligible: eligible.iter().map(|&c| classes[c].clone()).collect(),
        splits: config.splits,
        labels: config.labels,
        seed: config.seed,
        redraws,
        mean_test_crops: per_split(test_crops),
        mean_distractors: per_split(distractors),
        mean_calibration_photos: per_split(cal_photos),
        results,
        differences: config
            .shots
            .iter()
            .zip(&diffs)
            .map(|(&k, d)| Difference {
                k,
                top1: Summary::of(d),
            })
            .collect(),
    })
}

/// Draws `config.labels` eligible classes with distinct text rows and a split of the photos
/// that suits them; returns them, the roles, and the draws given up first.
fn draw(
    rng: &mut SplitMix64,
    eligible: &[usize],
    text: &[Option<TextRow>],
    photos_of: &[Vec<usize>],
    photos: usize,
    config: &StudyConfig,
) -> Option<(Vec<usize>, Vec<Role>, usize)> {
    for redraw in 0..SPLIT_TRIES {
        let mut pool = eligible.to_vec();
        rng.shuffle(&mut pool);
        let (mut labels, mut keys) = (Vec::new(), BTreeSet::new());
        for c in pool {
            let Some(t) = text[c].as_ref() else { continue };
            if labels.len() < config.labels && keys.insert(t.key) {
                labels.push(c);
            }
        }
        let of: Vec<Vec<usize>> = labels.iter().map(|&l| photos_of[l].clone()).collect();
        for _ in 0..SPLIT_TRIES {
            if let Some(role) = split_photos(rng, photos, &of, config.test_share) {
                return Some((labels, role, redraw));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::yolo::CropBox;

    #[test]
    fn splits_give_every_label_a_teach_and_a_test_photo() {
        let mut rng = SplitMix64::new(7);
        // 12 photos; labels with few and many photos, sharing some.
        let labels = vec![
            vec![0, 1],
            vec![1, 2, 3],
            vec![0, 4, 5, 6],
            vec![7, 8],
            (0..12).collect::<Vec<_>>(),
        ];
        for _ in 0..500 {
            let role = split_photos(&mut rng, 12, &labels, TEST_SHARE).unwrap();
            assert_eq!(role.len(), 12);
            for l in &labels {
                assert!(l.iter().any(|&p| role[p] == Role::Teach), "{l:?} {role:?}");
                assert!(l.iter().any(|&p| role[p] == Role::Test), "{l:?} {role:?}");
            }
        }
        // One photo cannot be both.
        assert!(split_photos(&mut rng, 3, &[vec![2]], TEST_SHARE).is_none());
        // The same seed, the same split.
        let a = split_photos(&mut SplitMix64::new(3), 12, &labels, TEST_SHARE);
        let b = split_photos(&mut SplitMix64::new(3), 12, &labels, TEST_SHARE);
        assert_eq!(a, b);
    }

    #[test]
    fn the_generator_is_uniform_enough_and_repeatable() {
        let mut r = SplitMix64::new(1);
        let mut hist = [0usize; 4];
        for _ in 0..4000 {
            hist[r.below(4)] += 1;
        }
        assert!(hist.iter().all(|&h| (900..1100).contains(&h)), "{hist:?}");
        assert_eq!(SplitMix64::new(9).next_u64(), SplitMix64::new(9).next_u64());
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((s.mean - 3.0).abs() < 1e-12 && (s.p5 - 1.2).abs() < 1e-12);
        assert!((s.std - 2f64.sqrt()).abs() < 1e-12 && (s.p95 - 4.8).abs() < 1e-12);
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    /// A toy study: three well-separated classes plus a distractor class; taught rows sit on
    /// the classes' own directions, text rows half-way to another class.
    #[test]
    fn a_toy_study_runs_and_repeats() {
        let classes: Vec<String> = ["a", "b", "c", "other"].map(String::from).to_vec();
        let dims = 6;
        let axis = |i: usize, eps: f32| {
            let mut v = vec![0.02f32; dims];
            v[i] = 1.0;
            v[5] = eps;
            unit(&v)
        };
        let (mut crops, mut ids, mut refs, mut ref_images) = (vec![], vec![], vec![], vec![]);
        for p in 0..40 {
            let class = p % 4;
            ids.push(format!("{p:03}"));
            crops.push(Crop {
                photo: p,
                class,
                bbox: CropBox {
                    x: 0,
                    y: 0,
                    width: 64,
                    height: 64,
                },
                embedding: axis(class, p as f32 * 0.01),
            });
            refs.push(Reference {
                path: PathBuf::from(format!("cal/{p:03}.jpg")),
                labels: [classes[class].clone()].into(),
            });
            ref_images.push(axis(class, 0.3));
        }
        let text: Vec<Option<TextRow>> = (0..4)
            .map(|c| {
                (c < 3).then(|| TextRow {
                    key: c,
                    entry: classes[c].clone(),
                    row: unit(&{
                        let mut v = axis(c, 0.0);
                        v[(c + 1) % 3] += 0.6;
                        v
                    }),
                })
            })
            .collect();
        let config = StudyConfig {
            splits: 20,
            labels: 3,
            ..StudyConfig::default()
        };
        let run = || study(&classes, &ids, &crops, &text, &refs, &ref_images, &config).unwrap();
        let r = run();
        assert_eq!(r.eligible, ["a", "b", "c"]);
        assert_eq!(r.results.len(), 4);
        for m in &r.results {
            assert!(m.top1.mean > 0.99, "{m:?}");
        }
        assert_eq!(r.results[1].mean_shots, Some(1.0));
        assert!(r.results[3].mean_shots.is_some_and(|s| s > 1.0 && s <= 5.0));
        assert_eq!(r, run());
        let too_many = StudyConfig {
            labels: 4,
            ..config.clone()
        };
        let e = study(&classes, &ids, &crops, &text, &refs, &ref_images, &too_many);
        assert!(e.unwrap_err().to_string().contains("need 4 labels"));
        let no_shots = StudyConfig {
            shots: vec![0],
            ..config
        };
        assert!(study(&classes, &ids, &crops, &text, &refs, &ref_images, &no_shots).is_err());
    }
}
