//! Calibration of per-label thresholds on labelled reference photos, aiming at precision.
//!
//! Raw cosines are not comparable across prompts: one prompt sits at 0.2 on every photo,
//! another at 0.3. So each label's cosine is first standardized on the reference photos that
//! do *not* show it (its calibrated score z: how unusual this is for a photo without the
//! label). Then the threshold is chosen with the positives as well ([`PrecisionRule`]): the
//! lowest z, at or above a floor, at which the calibration photos above it show the label at
//! least `target_precision` of the time, placed a hair ([`EDGE_Z`]) under it so that the edge
//! is not a photo's own score. A label is *validated* only when such a threshold
//! exists and enough photos show it; a label the photos cannot confirm (no positives: stairs,
//! wet floors with a COCO calibration set) is not, and stays silent by default. Its threshold
//! then sits above every negative ([`PrecisionRule::fallback_z`] at least).
//!
//! Input: a folder with photos and a `labels.tsv` (`file<TAB>label,label,…`; a photo with no
//! labels has an empty second column), and the image embeddings of those photos. Output: the
//! per-label statistics ([`LabelStats`]).

use crate::file_error::FileError;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::prompts::bank::{Bank, BankEntry, Evidence};

/// The labels file inside a calibration folder.
pub const LABELS_FILE: &str = "labels.tsv";
/// How thresholds are chosen (recorded in the bank).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRule {
    /// The calibration photos at or above the threshold must show the label at least this
    /// often.
    pub target_precision: f32,
    /// The threshold is never below this z (standard deviations above the negatives' mean).
    pub floor_z: f32,
    /// A label needs this many calibration photos showing it to be validated.
    pub min_positives: usize,
    /// The z threshold of a label no threshold can validate: at least this, and above every
    /// negative.
    pub fallback_z: f32,
}

impl Default for PrecisionRule {
    fn default() -> Self {
        PrecisionRule {
            target_precision: 0.75,
            floor_z: 1.0,
            min_positives: 1,
            fallback_z: 2.5,
        }
    }
}

impl PrecisionRule {
    /// A line for the bank's `calibration` metadata.
    pub fn describe(&self, photos: usize) -> String {
        format!(
            "precision rule: the lowest z ≥ {} (std above the mean on photos without the label) at which ≥ {} of the calibration photos above it show the label; validated with ≥ {} photos showing it; otherwise z ≥ max({}, every negative); text labels learn gate entries from the same photos; {photos} calibration photos",
            self.floor_z, self.target_precision, self.min_positives, self.fallback_z
        )
    }
}
/// The smallest standard deviation kept, so a label with near-constant scores does not
/// turn every tiny change into a huge z.
pub const MIN_STD: f32 = 1e-3;
/// How far under the score that reaches the target precision a threshold sits, in z: far less
/// than any difference between photos, far more than rounding between runtimes.
pub const EDGE_Z: f32 = 0.05;
/// The fewest negative photos a label needs.
pub const MIN_NEGATIVES: usize = 8;

/// Why calibration photos cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// The labels file cannot be read.
    #[error(transparent)]
    Io(#[from] FileError),
    /// A line of the labels file is malformed.
    #[error("{path}: line {line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
    #[error("label {label:?}: only {found} calibration photos do not show it, need at least {MIN_NEGATIVES}")]
    /// Too few photos without the label to estimate its negatives.
    TooFewNegatives {
        /// The label.
        label: String,
        /// Photos without it.
        found: usize,
    },
    /// The recalibrated bank is not valid.
    #[error("bank {label:?}: {message}")]
    Bank {
        /// The bank.
        label: String,
        /// What is wrong.
        message: String,
    },
}

/// A labelled reference photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The photo's file.
    pub path: PathBuf,
    /// Lower-cased labels of what the photo shows.
    pub labels: HashSet<String>,
}

/// Reads `dir/labels.tsv`.
pub fn read_references(dir: &Path) -> Result<Vec<Reference>, CalibrationError> {
    let path = dir.join(LABELS_FILE);
    let text = crate::file_error::read_to_string(&path)?;
    parse_references(dir, &path, &text)
}

/// Parses the text of a `labels.tsv` (`file<TAB>label,label,…`) that is `path` in `dir`.
pub fn parse_references(
    dir: &Path,
    path: &Path,
    text: &str,
) -> Result<Vec<Reference>, CalibrationError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.splitn(2, '\t');
        let file = cols.next().unwrap_or("").trim();
        if file.is_empty() || file.contains("..") || Path::new(file).has_root() {
            return Err(CalibrationError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("bad file name {file:?}"),
            });
        }
        let labels = cols
            .next()
            .unwrap_or("")
            .split(',')
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty())
            .collect();
        out.push(Reference {
            path: dir.join(file),
            labels,
        });
    }
    Ok(out)
}

/// Calibration of one label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelStats {
    /// Mean cosine on the calibration photos that do not show the label.
    pub neg_mean: f32,
    /// Standard deviation of that cosine (at least [`MIN_STD`]).
    pub neg_std: f32,
    /// The cosine at or above which the label counts as present.
    pub threshold: f32,
    /// Photos that show the label.
    pub positives: usize,
    /// Positives at or above the threshold.
    pub hits: usize,
    /// Negative photos at or above the threshold.
    pub false_hits: usize,
    /// The rule found a threshold at its target precision with enough positives.
    pub validated: bool,
}

/// Whether a photo's labels name the label (its `names`: the label and its aliases,
/// lower-case).
pub fn shows(names: &[String], labels: &HashSet<String>) -> bool {
    names.iter().any(|n| labels.contains(n))
}

/// The lower-case names a label goes by in calibration labels: itself and its aliases.
pub fn names(label: &str, aliases: &[String]) -> Vec<String> {
    std::iter::once(label)
        .chain(aliases.iter().map(String::as_str))
        .map(str::to_lowercase)
        .collect()
}

/// Calibrates every label. `labels[i]` is label i and its aliases, `text[i]` its unit
/// embedding; `images[j]` is reference j's unit embedding.
pub fn calibrate(
    labels: &[(&str, &[String])],
    text: &[Vec<f32>],
    refs: &[Reference],
    images: &[Vec<f32>],
    rule: &PrecisionRule,
) -> Result<Vec<LabelStats>, CalibrationError> {
    labels
        .iter()
        .zip(text)
        .map(|(&(label, aliases), t)| {
            let names = names(label, aliases);
            let (mut pos, mut neg) = (Vec::new(), Vec::new());
            for (r, img) in refs.iter().zip(images) {
                let cos: f32 = t.iter().zip(img).map(|(a, b)| a * b).sum();
                if shows(&names, &r.labels) {
                    pos.push(cos);
                } else {
                    neg.push(cos);
                }
            }
            if neg.len() < MIN_NEGATIVES {
                return Err(CalibrationError::TooFewNegatives {
                    label: label.to_string(),
                    found: neg.len(),
                });
            }
            Ok(calibrate_one(&pos, &neg, rule))
        })
        .collect()
}

/// `bank` calibrated anew on other photos (its labels, embeddings and vocabulary kept): what
/// `eval --folds` scores each held-out fold with.
pub fn recalibrate(
    bank: &Bank,
    refs: &[Reference],
    images: &[Vec<f32>],
    rule: &PrecisionRule,
) -> Result<Bank, CalibrationError> {
    let labels: Vec<(&str, &[String])> = bank
        .entries
        .iter()
        .map(|e| (e.label.as_str(), e.aliases.as_slice()))
        .collect();
    let text: Vec<Vec<f32>> = (0..bank.len())
        .map(|i| bank.embedding(i).to_vec())
        .collect();
    let stats = calibrate(&labels, &text, refs, images, rule)?;
    let entries = bank
        .entries
        .iter()
        .zip(&stats)
        .map(|(e, s)| BankEntry {
            threshold: s.threshold,
            neg_mean: s.neg_mean,
            neg_std: s.neg_std,
            calibration: Evidence::of(s),
            ..e.clone()
        })
        .collect();
    let bad = |message: String| CalibrationError::Bank {
        label: bank.name.clone(),
        message,
    };
    let out = Bank::new(
        bank.name.clone(),
        bank.model.clone(),
        rule.describe(refs.len()),
        entries,
        bank.dim(),
        text.concat(),
    )
    .map_err(bad)?;
    let mut out = match bank.vocabulary() {
        Some(v) => out.with_vocabulary(v.to_vec()).map_err(bad)?,
        None => out,
    };
    learn_gate(&mut out, refs, images, rule);
    Ok(out)
}

/// Sets every label's learned gate entries ([`crate::matching::learned_gate`]) from the
/// calibration photos.
pub fn learn_gate(bank: &mut Bank, refs: &[Reference], images: &[Vec<f32>], rule: &PrecisionRule) {
    let gate = crate::matching::learned_gate(bank, refs, images, rule);
    for (e, g) in bank.entries.iter_mut().zip(gate) {
        e.gate = g;
    }
}

/// The precision rule on one label's positive and negative cosines (`neg` not empty).
fn calibrate_one(pos: &[f32], neg: &[f32], rule: &PrecisionRule) -> LabelStats {
    let n = neg.len() as f32;
    let mean = neg.iter().sum::<f32>() / n;
    let var = neg.iter().map(|c| (c - mean).powi(2)).sum::<f32>() / (n - 1.0).max(1.0);
    let std = var.sqrt().max(MIN_STD);
    let z = |c: &f32| (c - mean) / std;
    let (pos_z, neg_z): (Vec<f32>, Vec<f32>) =
        (pos.iter().map(z).collect(), neg.iter().map(z).collect());
    let above = |v: &[f32], c: f32| v.iter().filter(|&&x| x >= c).count();
    // Candidates: the floor, and every positive's score above it, lowest first.
    let mut candidates: Vec<f32> = std::iter::once(rule.floor_z)
        .chain(pos_z.iter().copied().filter(|&x| x >= rule.floor_z))
        .collect();
    candidates.sort_by(f32::total_cmp);
    candidates.dedup();
    let found = candidates.into_iter().find(|&c| {
        let (tp, fp) = (above(&pos_z, c), above(&neg_z, c));
        tp >= 1 && tp as f32 / (tp + fp) as f32 >= rule.target_precision
    });
    let z_thr = match found {
        // A hair under it (EDGE_Z, or halfway down to the next calibration score below, if
        // that is closer; never below the floor): the same photos pass, and a photo scoring
        // exactly a calibration positive's score is not lost to another runtime's rounding.
        Some(c) => {
            let below = pos_z
                .iter()
                .chain(&neg_z)
                .copied()
                .filter(|&x| x < c)
                .fold(rule.floor_z, f32::max);
            (c - EDGE_Z.min((c - below) / 2.0)).max(rule.floor_z)
        }
        None => {
            let top = neg_z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // Just above the highest negative: no calibration photo without it passes.
            rule.fallback_z.max(top + 1e-3)
        }
    };
    LabelStats {
        neg_mean: mean,
        neg_std: std,
        threshold: mean + z_thr * std,
        positives: pos.len(),
        hits: above(&pos_z, z_thr),
        false_hits: above(&neg_z, z_thr),
        validated: found.is_some() && pos.len() >= rule.min_positives,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(
        label: &str,
        aliases: &[&str],
        text: &[Vec<f32>],
        refs: &[Reference],
        images: &[Vec<f32>],
    ) -> Result<Vec<LabelStats>, CalibrationError> {
        let aliases: Vec<String> = aliases.iter().map(|s| s.to_string()).collect();
        calibrate(
            &[(label, aliases.as_slice())],
            text,
            refs,
            images,
            &PrecisionRule::default(),
        )
    }

    #[test]
    fn reads_labels_tsv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LABELS_FILE),
            "# comment\na.jpg\tdog,Person\nb.jpg\t\nc.jpg\n",
        )
        .unwrap();
        let refs = read_references(dir.path()).unwrap();
        assert_eq!(refs.len(), 3);
        assert!(refs[0].labels.contains("person"));
        assert!(refs[1].labels.is_empty() && refs[2].labels.is_empty());
        // A photo outside the folder is refused: `..` or an absolute path (which `join` would
        // put in place of the folder).
        std::fs::write(dir.path().join(LABELS_FILE), "/etc/x.jpg\tdog\n").unwrap();
        assert!(read_references(dir.path())
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        std::fs::write(dir.path().join(LABELS_FILE), "../x.jpg\tdog\n").unwrap();
        assert!(read_references(dir.path())
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }

    #[test]
    fn thresholds_sit_above_the_negatives() {
        // Text embedding e0; images: 10 negatives with cos 0.1..0.19, 2 positives at 0.9.
        let text = vec![vec![1.0, 0.0]];
        let mut refs = Vec::new();
        let mut images = Vec::new();
        for i in 0..10 {
            let c = 0.1 + i as f32 * 0.01;
            refs.push(Reference {
                path: "n".into(),
                labels: HashSet::new(),
            });
            images.push(vec![c, (1.0 - c * c).sqrt()]);
        }
        for _ in 0..2 {
            refs.push(Reference {
                path: "p".into(),
                labels: ["hound".to_string()].into(),
            });
            images.push(vec![0.9, (1.0f32 - 0.81).sqrt()]);
        }
        let s = cal("dog", &["hound"], &text, &refs, &images).unwrap();
        let s = s[0];
        assert!((s.neg_mean - 0.145).abs() < 1e-4);
        // Above every negative; at most the positives' score (the lowest z that reaches the
        // target precision is a positive's own score).
        assert!(s.threshold > 0.19 && s.threshold <= 0.9 + 1e-6, "{s:?}");
        assert_eq!((s.positives, s.hits, s.false_hits), (2, 2, 0));
        assert!(s.validated);
        let err = cal("dog", &[], &text, &refs[..5], &images[..5]).unwrap_err();
        assert!(err.to_string().contains("dog"));
    }

    /// A label the photos never show is not validated, and sits above every negative; one
    /// whose positives score no higher than its negatives is not validated either.
    #[test]
    fn labels_without_evidence_are_not_validated() {
        let text = vec![vec![1.0, 0.0]];
        let (mut refs, mut images) = (Vec::new(), Vec::new());
        for i in 0..12 {
            let c = 0.1 + i as f32 * 0.02;
            let labels = if i % 4 == 0 {
                ["dog".to_string()].into()
            } else {
                HashSet::new()
            };
            refs.push(Reference {
                path: "x".into(),
                labels,
            });
            images.push(vec![c, (1.0 - c * c).sqrt()]);
        }
        let none = cal("stairs", &[], &text, &refs, &images).unwrap()[0];
        assert!(!none.validated);
        assert_eq!((none.positives, none.false_hits), (0, 0));
        // Positives spread evenly among the negatives: no threshold reaches 0.75.
        let mixed = cal("dog", &[], &text, &refs, &images).unwrap()[0];
        assert_eq!(mixed.positives, 3);
        assert!(!mixed.validated, "{mixed:?}");
        assert_eq!(mixed.false_hits, 0);
    }

    /// One photo showing a label validates it (the default rule) only when it scores above
    /// every photo without the label: one positive and one negative above the threshold would
    /// be a precision of 0.5. `min_positives: 2` keeps such a label silent.
    #[test]
    fn one_photo_validates_only_above_every_negative() {
        let text = vec![vec![1.0, 0.0]];
        let photo = |c: f32, label: Option<&str>| {
            let r = Reference {
                path: "x".into(),
                labels: label.map(|l| l.to_string()).into_iter().collect(),
            };
            (r, vec![c, (1.0 - c * c).sqrt()])
        };
        let set = |pos: f32| -> (Vec<Reference>, Vec<Vec<f32>>) {
            (0..10)
                .map(|i| photo(0.1 + i as f32 * 0.02, None))
                .chain(std::iter::once(photo(pos, Some("bear"))))
                .unzip()
        };
        let one = |pos: f32, rule: &PrecisionRule| {
            let (refs, images) = set(pos);
            calibrate(&[("bear", &[][..])], &text, &refs, &images, rule).unwrap()[0]
        };
        let rule = PrecisionRule::default();
        assert_eq!(rule.min_positives, 1);
        let above = one(0.9, &rule);
        assert!(above.validated, "{above:?}");
        assert!(
            above.threshold > 0.28 && above.threshold <= 0.9 + 1e-6,
            "{above:?}"
        );
        assert_eq!((above.positives, above.hits, above.false_hits), (1, 1, 0));
        let two = PrecisionRule {
            min_positives: 2,
            ..rule
        };
        assert!(!one(0.9, &two).validated);
        // Below the highest negative (0.28): no threshold keeps the precision.
        let below = one(0.27, &rule);
        assert!(!below.validated, "{below:?}");
        assert_eq!(below.false_hits, 0);
    }
}
