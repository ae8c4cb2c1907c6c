//! Calibration of per-label thresholds on labelled reference photos.
//!
//! Raw cosines are not comparable across prompts: one prompt sits at 0.2 on every photo,
//! another at 0.3. So each label is calibrated on reference photos that do *not* show it:
//! the mean and standard deviation of its cosine there, and a threshold `mean + z × std`.
//! A score is then read as "how unusual is this for a photo without the label".
//!
//! Input: a folder with photos and a `labels.tsv` (`file<TAB>label,label,…`; a photo with no
//! labels has an empty second column), and the image embeddings of those photos. Output: the
//! per-label statistics, and for labels the photos do show, their hit rate on those photos.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::prompts::Prompt;

/// The labels file inside a calibration folder.
pub const LABELS_FILE: &str = "labels.tsv";
/// The default threshold in standard deviations above the negatives' mean.
pub const DEFAULT_Z: f32 = 2.5;
/// The smallest standard deviation kept, so a label with near-constant scores does not
/// turn every tiny change into a huge z.
pub const MIN_STD: f32 = 1e-3;
/// The fewest negative photos a label needs.
pub const MIN_NEGATIVES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{path}: cannot read")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("label {label:?}: only {found} calibration photos do not show it, need at least {MIN_NEGATIVES}")]
    TooFewNegatives { label: String, found: usize },
}

/// A labelled reference photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub path: PathBuf,
    /// Lower-cased labels of what the photo shows.
    pub labels: HashSet<String>,
}

/// Reads `dir/labels.tsv`.
pub fn read_references(dir: &Path) -> Result<Vec<Reference>, CalibrationError> {
    let path = dir.join(LABELS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| CalibrationError::Io {
        path: path.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.splitn(2, '\t');
        let file = cols.next().unwrap_or("").trim();
        if file.is_empty() || file.contains("..") {
            return Err(CalibrationError::Line {
                path: path.clone(),
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
    pub neg_mean: f32,
    pub neg_std: f32,
    pub threshold: f32,
    /// Photos that show the label, and how many of them pass the threshold.
    pub positives: usize,
    pub hits: usize,
    /// Negative photos above the threshold.
    pub false_hits: usize,
}

fn shows(prompt: &Prompt, labels: &HashSet<String>) -> bool {
    labels.contains(&prompt.label.to_lowercase())
        || prompt
            .aliases
            .iter()
            .any(|a| labels.contains(&a.to_lowercase()))
}

/// Calibrates every prompt. `text[i]` is prompt i's unit embedding; `images[j]` is reference
/// j's unit embedding.
pub fn calibrate(
    prompts: &[Prompt],
    text: &[Vec<f32>],
    refs: &[Reference],
    images: &[Vec<f32>],
    z: f32,
) -> Result<Vec<LabelStats>, CalibrationError> {
    prompts
        .iter()
        .zip(text)
        .map(|(prompt, t)| {
            let mut neg = Vec::new();
            let mut pos = Vec::new();
            for (r, img) in refs.iter().zip(images) {
                let cos: f32 = t.iter().zip(img).map(|(a, b)| a * b).sum();
                if shows(prompt, &r.labels) {
                    pos.push(cos);
                } else {
                    neg.push(cos);
                }
            }
            if neg.len() < MIN_NEGATIVES {
                return Err(CalibrationError::TooFewNegatives {
                    label: prompt.label.clone(),
                    found: neg.len(),
                });
            }
            let n = neg.len() as f32;
            let mean = neg.iter().sum::<f32>() / n;
            let var = neg.iter().map(|c| (c - mean).powi(2)).sum::<f32>() / (n - 1.0);
            let std = var.sqrt().max(MIN_STD);
            let threshold = mean + z * std;
            Ok(LabelStats {
                neg_mean: mean,
                neg_std: std,
                threshold,
                positives: pos.len(),
                hits: pos.iter().filter(|&&c| c > threshold).count(),
                false_hits: neg.iter().filter(|&&c| c > threshold).count(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Category;

    fn prompt(label: &str, aliases: &[&str]) -> Prompt {
        Prompt {
            label: label.into(),
            category: Category::Object,
            priority: 1,
            say: label.into(),
            texts: vec![label.into()],
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
        }
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
        let s = calibrate(&[prompt("dog", &["hound"])], &text, &refs, &images, 2.0).unwrap();
        let s = s[0];
        assert!((s.neg_mean - 0.145).abs() < 1e-4);
        assert!(s.threshold > 0.19 && s.threshold < 0.9);
        assert_eq!((s.positives, s.hits, s.false_hits), (2, 2, 0));
        let err =
            calibrate(&[prompt("dog", &[])], &text, &refs[..5], &images[..5], 2.0).unwrap_err();
        assert!(err.to_string().contains("dog"));
    }
}
