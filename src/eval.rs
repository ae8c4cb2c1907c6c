//! The accuracy harness (`clipsight eval`): what the device would say on labelled photos, and
//! how that compares with their labels.
//!
//! Input: image embeddings of labelled photos ([`Photo`], read by [`read_photos`] from a
//! folder's `labels.tsv` in either of two formats, plus an optional `dominant.tsv`; in the
//! falls-style `file`/`class` table, a photo of a person's class also gets the label
//! `person`), the loaded
//! banks, and optionally a fold count for cross-validation. For each photo it computes what
//! the engine would say if the camera held that photo still ([`crate::decide::still_scene`],
//! the live run's own code path) and counts, per label and overall:
//! - precision of what was said, over the labels the photos' labels can confirm or refute (a
//!   label is *checkable* when one of its names occurs in the data set's labels);
//! - recall of the photos' labelled objects that some loaded label covers, and of each photo's
//!   dominant object where one is given (over all such photos, and over the covered ones);
//! - hazard alarms per 100 photos, confirmed (one of the hazard's names is in the photo's
//!   labels) or not.
//!
//! With `folds = K`, every bank is recalibrated on K − 1 folds and scored on the held-out
//! one, so no figure is in-sample. Folds are by sorted file name, photo i in fold i mod K.
//! Pure computation over embeddings: it cannot fail once the photos are read.
//!
//! [`teach`] is the few-shot teaching study (`eval --teach`): taught labels against text
//! prompts on crops of a YOLO data set.

pub mod teach;
pub mod yolo;

use crate::file_error::FileError;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decide::{still_scene_with_people, DecisionConfig, LabelInfo, StillPeople};
use crate::matching::Matcher;
use crate::prompts::bank::Bank;
use crate::prompts::calibrate::{
    names, parse_references, recalibrate, CalibrationError, PrecisionRule, Reference, LABELS_FILE,
};
use crate::types::{Category, Scores};
use crate::vision::pose::Posture;

/// The optional file beside `labels.tsv` naming each photo's dominant object.
pub const DOMINANT_FILE: &str = "dominant.tsv";

/// Why the labelled photos cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// `labels.tsv` or `dominant.tsv` cannot be read or has a bad line.
    #[error(transparent)]
    Labels(#[from] CalibrationError),
    /// Fewer photos than folds, or a fold whose training part cannot calibrate a label.
    #[error("{0}")]
    Folds(String),
}

/// A labelled photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Photo {
    /// The image file.
    pub path: PathBuf,
    /// Lower-cased labels of what it shows.
    pub labels: HashSet<String>,
    /// Its dominant object, lower-cased, when `dominant.tsv` names one.
    pub dominant: Option<String>,
}

/// Reads a folder of labelled photos: `labels.tsv` as `file<TAB>label,label,…` (the
/// calibration format) or with a header row naming `file` and `class` columns (one class per
/// photo, the files beside the table or in its `images/` folder), and `dominant.tsv` (`file-or-id<TAB>label[<TAB>…]`) when present.
pub fn read_photos(dir: &Path) -> Result<Vec<Photo>, EvalError> {
    let path = dir.join(LABELS_FILE);
    let text = crate::file_error::read_to_string(&path).map_err(CalibrationError::from)?;
    let refs = parse_labels(dir, &text)?;
    let dominant = read_dominant(dir)?;
    let mut photos: Vec<Photo> = refs
        .into_iter()
        .map(|r| {
            let stem = r.path.file_stem().map(|s| s.to_string_lossy().into_owned());
            let name = r.path.file_name().map(|s| s.to_string_lossy().into_owned());
            let dominant = dominant
                .iter()
                .find(|(id, _)| Some(id) == stem.as_ref() || Some(id) == name.as_ref())
                .map(|(_, label)| label.clone());
            Photo {
                path: r.path,
                labels: r.labels,
                dominant,
            }
        })
        .collect();
    photos.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(photos)
}

/// Parses the text of `dir/labels.tsv` in either format: `file<TAB>label,label,…` (the
/// calibration format), or a table whose header row names `file` and `class` columns.
pub fn parse_labels(dir: &Path, text: &str) -> Result<Vec<Reference>, CalibrationError> {
    let path = dir.join(LABELS_FILE);
    let header: Vec<&str> = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or("")
        .split('\t')
        .map(str::trim)
        .collect();
    match (
        header.iter().position(|c| *c == "file"),
        header.iter().position(|c| *c == "class"),
    ) {
        (Some(f), Some(c)) => read_class_table(dir, &path, text, f, c),
        _ => parse_references(dir, &path, text),
    }
}

fn read_class_table(
    dir: &Path,
    path: &Path,
    text: &str,
    file_col: usize,
    class_col: usize,
) -> Result<Vec<Reference>, CalibrationError> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .skip_while(|(_, l)| l.trim().is_empty() || l.starts_with('#'))
        .skip(1)
    {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        let (Some(file), Some(class)) = (cols.get(file_col), cols.get(class_col)) else {
            return Err(CalibrationError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message: "missing the file or class column".into(),
            });
        };
        if file.is_empty() || file.contains("..") || Path::new(file).has_root() {
            return Err(CalibrationError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("bad file name {file:?}"),
            });
        }
        // The photos sit beside the table, or in its `images/` folder.
        let beside = dir.join(file);
        let in_images = dir.join("images").join(file);
        let class = class.to_lowercase();
        // A photo of a fall, of someone up, sitting or lying in bed shows a person: the
        // banks' `person` label can then be checked on it.
        let person = PERSON_CLASSES
            .contains(&class.as_str())
            .then(|| PERSON_LABEL.to_string());
        out.push(Reference {
            path: if !beside.exists() && in_images.exists() {
                in_images
            } else {
                beside
            },
            labels: std::iter::once(class).chain(person).collect(),
        });
    }
    Ok(out)
}

fn read_dominant(dir: &Path) -> Result<Vec<(String, String)>, CalibrationError> {
    let path = dir.join(DOMINANT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(FileError::reading(&path)(source).into()),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split('\t').map(str::trim);
        match (cols.next(), cols.next()) {
            (Some(id), Some(label)) if !id.is_empty() && !label.is_empty() => {
                out.push((id.to_string(), label.to_lowercase()))
            }
            _ => {
                return Err(CalibrationError::Line {
                    path: path.clone(),
                    line: i + 1,
                    message: "expected file<TAB>label".into(),
                })
            }
        }
    }
    Ok(out)
}

/// A count of hits out of a total, with its ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rate {
    /// How many hit.
    pub hits: usize,
    /// Out of how many.
    pub total: usize,
    /// `hits / total` (`None` when the total is 0).
    pub rate: Option<f64>,
}

impl Rate {
    fn new(hits: usize, total: usize) -> Rate {
        Rate {
            hits,
            total,
            rate: (total > 0).then(|| hits as f64 / total as f64),
        }
    }
}

/// One label's counts over the photos.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LabelReport {
    /// The label.
    pub label: String,
    /// object, hazard or person.
    pub category: String,
    /// Its bank marks it validated (on the full calibration; folds may differ).
    pub validated: bool,
    /// Photos it was said on.
    pub said: usize,
    /// Said where the photo's labels name it (checkable labels only).
    pub correct: usize,
    /// Said where the photo's labels do not name it (checkable labels only).
    pub wrong: usize,
    /// Not said where the photo's labels name it.
    pub missed: usize,
    /// Whether the data set's labels can confirm or refute it at all.
    pub checkable: bool,
    /// Photos whose dominant object it names, and on how many it was said.
    pub dominant: Rate,
}

/// What was said on one photo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhotoReport {
    /// The file name.
    pub file: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its dominant object, if given.
    pub dominant: Option<String>,
    /// The labels said, in the order they would be spoken.
    pub said: Vec<String>,
    /// Of those, the checkable ones its labels refute.
    pub wrong: Vec<String>,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Photos evaluated.
    pub photos: usize,
    /// The number of folds, when cross-validated; `None`: the banks' own calibration
    /// (in-sample if these photos were the calibration set).
    pub folds: Option<usize>,
    /// Precision of what was said, over checkable labels.
    pub precision: Rate,
    /// Said labels that no photo label can confirm or refute (left out of precision).
    pub unchecked: usize,
    /// Recall of the photos' labels that some loaded label covers.
    pub label_recall: Rate,
    /// Recall of the dominant object, over every photo that names one.
    pub dominant_recall: Rate,
    /// The same over the photos whose dominant object some loaded label covers.
    pub dominant_recall_covered: Rate,
    /// Hazards said with one of their names in the photo's labels.
    pub hazard_alarms_confirmed: usize,
    /// Hazards said without support in the photo's labels.
    pub hazard_alarms_unconfirmed: usize,
    /// Photos with no hazard label among their labels.
    pub ordinary_photos: usize,
    /// Unconfirmed hazard alarms per 100 ordinary photos.
    pub unconfirmed_per_100: f64,
    /// Per label, in bank order.
    pub labels: Vec<LabelReport>,
    /// Per photo, in file-name order.
    pub per_photo: Vec<PhotoReport>,
    /// People, posture and falls (with a person model; see [`pose_report`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pose: Option<PoseReport>,
}

/// The pose stage's verdict on one photo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseVerdict {
    /// People in view.
    pub people: usize,
    /// The posture of the surest person in view.
    pub posture: Option<Posture>,
    /// The single-frame "someone is lying on the floor" verdict, with the image context.
    pub fallen: bool,
}

/// The classes of a falls-style folder whose photos show a person (the other one is
/// `empty`).
pub const PERSON_CLASSES: [&str; 4] = ["fallen", "upright", "sitting", "lying_bed"];
/// The label such a photo also gets, so that the banks' `person` label is checked on it.
pub const PERSON_LABEL: &str = "person";

/// People, posture and falls on a folder whose photos are labelled with one of the classes
/// `fallen`, `upright`, `sitting`, `lying_bed` and `empty`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PoseReport {
    /// `fallen` on the photos of a fall.
    pub fallen_recall: Rate,
    /// `fallen` on the photos of people up, sitting, or of empty rooms.
    pub false_fallen: Rate,
    /// `fallen` on the photos of someone lying in a bed or on a sofa.
    pub lying_bed_fallen: Rate,
    /// Photos showing a person on which someone was found.
    pub people_found: Rate,
    /// Empty rooms on which someone was found.
    pub people_on_empty: Rate,
    /// The surest person's posture agrees with the class (upright: standing; sitting:
    /// sitting; fallen, lying_bed: lying), over the photos showing a person.
    pub posture_agrees: Rate,
}

/// Scores `verdicts` (one per photo) against the photos' classes.
pub fn pose_report(photos: &[Photo], verdicts: &[PoseVerdict]) -> PoseReport {
    let is = |p: &Photo, class: &str| p.labels.iter().any(|l| l == class);
    let count = |of: &dyn Fn(&Photo) -> bool, hit: &dyn Fn(&PoseVerdict) -> bool| {
        let (mut hits, mut total) = (0, 0);
        for (p, v) in photos.iter().zip(verdicts) {
            if of(p) {
                total += 1;
                hits += usize::from(hit(v));
            }
        }
        Rate::new(hits, total)
    };
    let up_or_empty = |p: &Photo| ["upright", "sitting", "empty"].iter().any(|c| is(p, c));
    let person = |p: &Photo| PERSON_CLASSES.iter().any(|c| is(p, c));
    let (mut agree, mut shown) = (0, 0);
    for (p, v) in photos.iter().zip(verdicts) {
        let want = if is(p, "upright") {
            Posture::Standing
        } else if is(p, "sitting") {
            Posture::Sitting
        } else if is(p, "fallen") || is(p, "lying_bed") {
            Posture::Lying
        } else {
            continue;
        };
        shown += 1;
        agree += usize::from(v.posture == Some(want));
    }
    PoseReport {
        fallen_recall: count(&|p| is(p, "fallen"), &|v| v.fallen),
        false_fallen: count(&up_or_empty, &|v| v.fallen),
        lying_bed_fallen: count(&|p| is(p, "lying_bed"), &|v| v.fallen),
        people_found: count(&person, &|v| v.people > 0),
        people_on_empty: count(&|p| is(p, "empty"), &|v| v.people > 0),
        posture_agrees: Rate::new(agree, shown),
    }
}

/// Evaluates `banks` on `photos` whose unit image embeddings are `embeddings`. With `folds`,
/// every bank is recalibrated on the other folds by `rule` before a fold is scored. With
/// `people` (one per photo, from a person model), people are said as `run` says them then:
/// by the pose stage instead of the banks' person labels, and a people sentence counts as
/// saying the banks' `person` label.
pub fn evaluate(
    banks: &[Bank],
    photos: &[Photo],
    embeddings: &[Vec<f32>],
    people: Option<&[StillPeople]>,
    folds: Option<usize>,
    rule: &PrecisionRule,
    decision: DecisionConfig,
) -> Result<Report, EvalError> {
    let n = photos.len();
    let mut said: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut scores = Scores::default();
    let mut score_fold = |matcher: &mut Matcher, members: &[usize], said: &mut Vec<Vec<usize>>| {
        let labels = matcher.labels();
        let person = labels
            .iter()
            .position(|l| l.category == Category::Person && l.label == PERSON_LABEL);
        for &i in members {
            matcher.score(&embeddings[i], &mut scores);
            let posed = people.map(|p| &p[i]);
            let (by_banks, by_pose) =
                still_scene_with_people(decision, labels.clone(), &scores, posed);
            said[i] = by_banks.into_iter().map(|s| s.index).collect();
            if let (Some(person), false) = (person, by_pose.is_empty()) {
                said[i].push(person);
            }
        }
    };
    match folds {
        None => score_fold(
            &mut Matcher::new(banks.to_vec()),
            &(0..n).collect::<Vec<_>>(),
            &mut said,
        ),
        Some(k) => {
            if k < 2 || k > n {
                return Err(EvalError::Folds(format!(
                    "--folds {k}: need at least 2 folds and no more folds than the {n} photos"
                )));
            }
            for f in 0..k {
                let (test, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| i % k == f);
                let refs: Vec<Reference> = train
                    .iter()
                    .map(|&i| Reference {
                        path: photos[i].path.clone(),
                        labels: photos[i].labels.clone(),
                    })
                    .collect();
                let train_emb: Vec<Vec<f32>> =
                    train.iter().map(|&i| embeddings[i].clone()).collect();
                let fold_banks = banks
                    .iter()
                    .map(|b| recalibrate(b, &refs, &train_emb, rule))
                    .collect::<Result<Vec<_>, _>>()?;
                score_fold(&mut Matcher::new(fold_banks), &test, &mut said);
            }
        }
    }
    Ok(tally(banks, photos, &said, folds))
}

/// Counts what was said against the labels.
fn tally(banks: &[Bank], photos: &[Photo], said: &[Vec<usize>], folds: Option<usize>) -> Report {
    let labels = LabelInfo::from_banks(banks);
    let entries: Vec<_> = banks.iter().flat_map(|b| b.entries.iter()).collect();
    let label_names: Vec<Vec<String>> = entries
        .iter()
        .map(|e| names(&e.label, &e.aliases))
        .collect();
    let vocabulary: BTreeSet<&String> = photos.iter().flat_map(|p| p.labels.iter()).collect();
    let checkable: Vec<bool> = label_names
        .iter()
        .map(|ns| ns.iter().any(|n| vocabulary.contains(n)))
        .collect();
    let covered = |l: &String| label_names.iter().any(|ns| ns.contains(l));
    let hazard_names: HashSet<String> = entries
        .iter()
        .filter(|e| e.category == Category::Hazard)
        .map(|e| e.label.to_lowercase())
        .collect();
    let mut per_label: Vec<LabelReport> = labels
        .iter()
        .zip(&checkable)
        .map(|(l, &c)| LabelReport {
            label: l.label.clone(),
            category: l.category.as_str().into(),
            validated: l.validated,
            checkable: c,
            ..LabelReport::default()
        })
        .collect();
    let (mut right, mut wrong_n, mut unchecked) = (0, 0, 0);
    let (mut lab_hits, mut lab_total) = (0, 0);
    let (mut dom_hits, mut dom_total, mut dom_cov_hits, mut dom_cov_total) = (0, 0, 0, 0);
    let (mut confirmed, mut unconfirmed, mut ordinary) = (0, 0, 0);
    let mut per_photo = Vec::with_capacity(photos.len());
    for (photo, said) in photos.iter().zip(said) {
        let shows = |j: usize| label_names[j].iter().any(|n| photo.labels.contains(n));
        let is_ordinary = !photo.labels.iter().any(|l| hazard_names.contains(l));
        ordinary += usize::from(is_ordinary);
        let mut wrong = Vec::new();
        for &j in said {
            let r = &mut per_label[j];
            r.said += 1;
            // Only labels the data set's labels can confirm or refute count as true or false.
            if checkable[j] {
                if shows(j) {
                    r.correct += 1;
                } else {
                    r.wrong += 1;
                }
            }
            if labels[j].category == Category::Hazard {
                if shows(j) {
                    confirmed += 1;
                } else if is_ordinary {
                    unconfirmed += 1;
                }
            }
            match (checkable[j], shows(j)) {
                (false, _) => unchecked += 1,
                (true, true) => right += 1,
                (true, false) => {
                    wrong_n += 1;
                    wrong.push(labels[j].label.clone());
                }
            }
        }
        for (j, r) in per_label.iter_mut().enumerate() {
            if shows(j) && !said.contains(&j) {
                r.missed += 1;
            }
        }
        for l in photo.labels.iter().filter(|l| covered(l)) {
            lab_total += 1;
            lab_hits += usize::from(said.iter().any(|&j| label_names[j].contains(l)));
        }
        if let Some(d) = &photo.dominant {
            let hit = said.iter().any(|&j| label_names[j].contains(d));
            dom_total += 1;
            dom_hits += usize::from(hit);
            if covered(d) {
                dom_cov_total += 1;
                dom_cov_hits += usize::from(hit);
            }
            for (j, r) in per_label.iter_mut().enumerate() {
                if label_names[j].contains(d) {
                    r.dominant.total += 1;
                    r.dominant.hits += usize::from(said.contains(&j));
                }
            }
        }
        let mut plabels: Vec<String> = photo.labels.iter().cloned().collect();
        plabels.sort();
        per_photo.push(PhotoReport {
            file: photo
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            labels: plabels,
            dominant: photo.dominant.clone(),
            said: said.iter().map(|&j| labels[j].label.clone()).collect(),
            wrong,
        });
    }
    for r in &mut per_label {
        r.dominant = Rate::new(r.dominant.hits, r.dominant.total);
    }
    Report {
        photos: photos.len(),
        folds,
        precision: Rate::new(right, right + wrong_n),
        unchecked,
        label_recall: Rate::new(lab_hits, lab_total),
        dominant_recall: Rate::new(dom_hits, dom_total),
        dominant_recall_covered: Rate::new(dom_cov_hits, dom_cov_total),
        hazard_alarms_confirmed: confirmed,
        hazard_alarms_unconfirmed: unconfirmed,
        ordinary_photos: ordinary,
        unconfirmed_per_100: if ordinary > 0 {
            100.0 * unconfirmed as f64 / ordinary as f64
        } else {
            0.0
        },
        labels: per_label,
        per_photo,
        pose: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(class: &str) -> Photo {
        Photo {
            path: PathBuf::from(format!("{class}.jpg")),
            labels: [class.to_string()].into(),
            dominant: None,
        }
    }

    fn verdict(people: usize, posture: Option<Posture>, fallen: bool) -> PoseVerdict {
        PoseVerdict {
            people,
            posture,
            fallen,
        }
    }

    /// A falls-style table: a photo of a person gets the `person` label beside its class, an
    /// empty room does not; the files are found in `images/`.
    #[test]
    fn a_class_table_labels_people_and_finds_images() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("images/a.jpg"), b"").unwrap();
        let text = "file\tclass\tsource\na.jpg\tfallen\tx\nb.jpg\tEmpty\ty\nc.jpg\tlying_bed\tz\n";
        let refs = parse_labels(dir.path(), text).unwrap();
        let labels: Vec<Vec<&str>> = refs
            .iter()
            .map(|r| {
                let mut v: Vec<&str> = r.labels.iter().map(String::as_str).collect();
                v.sort_unstable();
                v
            })
            .collect();
        assert_eq!(
            labels,
            [
                vec!["fallen", "person"],
                vec!["empty"],
                vec!["lying_bed", "person"]
            ]
        );
        assert_eq!(refs[0].path, dir.path().join("images/a.jpg"));
        assert_eq!(refs[1].path, dir.path().join("b.jpg"));
        let err = parse_labels(dir.path(), "file\tclass\n../x.jpg\tfallen\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    /// Said labels that the data set's labels cannot confirm or refute count in neither
    /// column, nor in precision; a checkable one counts where it is right and where wrong.
    #[test]
    fn only_checkable_labels_count_as_true_or_false() {
        let entry = |label: &str| crate::prompts::bank::BankEntry {
            label: label.into(),
            category: Category::Object,
            priority: 1,
            say: format!("{label}."),
            threshold: 0.2,
            neg_mean: 0.0,
            neg_std: 0.1,
            aliases: Vec::new(),
            calibration: crate::prompts::bank::Evidence::UNKNOWN,
            source: crate::prompts::bank::Source::Text,
            gate: Vec::new(),
        };
        let bank = Bank::new(
            "b".into(),
            crate::model::ModelIdentity {
                id: "m".into(),
                fingerprint: "none".into(),
            },
            String::new(),
            vec![entry("person"), entry("couch")],
            2,
            vec![1.0, 0.0, 0.0, 1.0],
        )
        .unwrap();
        let photos: Vec<Photo> = [["fallen", "person"].as_slice(), &["empty"]]
            .iter()
            .enumerate()
            .map(|(i, l)| Photo {
                path: PathBuf::from(format!("{i}.jpg")),
                labels: l.iter().map(|s| s.to_string()).collect(),
                dominant: None,
            })
            .collect();
        // Both photos: "person" and "couch" said.
        let r = tally(&[bank], &photos, &[vec![0, 1], vec![0, 1]], None);
        let (person, couch) = (&r.labels[0], &r.labels[1]);
        assert!(person.checkable && !couch.checkable);
        assert_eq!((person.said, person.correct, person.wrong), (2, 1, 1));
        assert_eq!((couch.said, couch.correct, couch.wrong), (2, 0, 0));
        assert_eq!(
            (r.precision.hits, r.precision.total, r.unchecked),
            (1, 2, 2)
        );
    }

    #[test]
    fn pose_figures_count_each_class_against_its_verdict() {
        let photos: Vec<Photo> = [
            "fallen",
            "fallen",
            "upright",
            "sitting",
            "lying_bed",
            "empty",
        ]
        .iter()
        .map(|c| photo(c))
        .collect();
        let verdicts = [
            verdict(1, Some(Posture::Lying), true),
            verdict(0, None, false),
            verdict(1, Some(Posture::Standing), true),
            verdict(1, Some(Posture::Standing), false),
            verdict(1, Some(Posture::Lying), false),
            verdict(1, Some(Posture::Unknown), false),
        ];
        let r = pose_report(&photos, &verdicts);
        assert_eq!((r.fallen_recall.hits, r.fallen_recall.total), (1, 2));
        assert_eq!((r.false_fallen.hits, r.false_fallen.total), (1, 3));
        assert_eq!((r.lying_bed_fallen.hits, r.lying_bed_fallen.total), (0, 1));
        assert_eq!((r.people_found.hits, r.people_found.total), (4, 5));
        assert_eq!((r.people_on_empty.hits, r.people_on_empty.total), (1, 1));
        // fallen (lying ✓), fallen (none ✗), upright (standing ✓), sitting (standing ✗),
        // lying_bed (lying ✓).
        assert_eq!((r.posture_agrees.hits, r.posture_agrees.total), (3, 5));
    }
}
