//! Teaching: a user's own thing ("my keys") from a few photos or camera frames, as a bank row.
//!
//! Input: unit-length image embeddings of the thing (photos given to `clipsight teach`, or
//! frames taken by the device's `teach` command), and the embeddings of labelled calibration
//! photos. Output: a bank row in the same space as the text prompts' rows (the normalized
//! mean of the shots: a prototype) and its calibration. Only embeddings are kept, never the
//! pictures (unless the user asks `teach --keep-photos`).
//!
//! The threshold comes from the same precision rule as a text prompt's
//! ([`crate::prompts::calibrate`]). Calibration photos of the same kind of thing ("dog" for
//! "my dog") count as showing it: an embedding model tells a dog from a cup far better than
//! one dog from another. When no calibration photo shows that kind ("my keys"), the rule's
//! fallback applies and the threshold sits above every calibration photo. A taught label is
//! vouched for by its teacher, so it counts as validated and is announced like any other.
//!
//! One prototype per label: on COCO crops, splitting the shots into several prototypes
//! (k-means) lost 1 to 4 points of top-1 against their mean (`clipsight eval --teach`).

use crate::matching::normalize;
use crate::prompts::bank::{Bank, BankEntry, Evidence, Source};
use crate::prompts::calibrate::{calibrate, CalibrationError, PrecisionRule, Reference};
use crate::types::Category;

/// Frames more alike than this (cosine) add nothing to a prototype: the frame picker skips
/// them.
pub const NEAR_DUPLICATE: f32 = 0.97;
/// A frame this far from the others (cosine under this to their mean) is something else,
/// or the thing out of view: the frame picker drops it. Frames of one object sit near 0.9,
/// other things near 0.1.
pub const OUTLIER: f32 = 0.3;
/// The name of a bank that `teach` creates.
pub const PERSONAL_BANK_NAME: &str = "personal";

/// What the user taught: the label and how it is said.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesson {
    /// The label, exactly as the user gave it ("my keys").
    pub label: String,
    /// The sentence said when it comes into view ("Your keys.").
    pub say: String,
    /// Object (default) or hazard.
    pub category: Category,
}

impl Lesson {
    /// A lesson with the default sentence ([`default_sentence`]).
    pub fn new(label: &str, category: Category) -> Result<Lesson, String> {
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 64 || label.chars().any(char::is_control) {
            return Err(format!(
                "label {label:?}: give 1 to 64 printable characters"
            ));
        }
        Ok(Lesson {
            label: label.to_string(),
            say: default_sentence(label, category),
            category,
        })
    }
}

/// The thing's name without a possessive: "my keys" → "keys", "the front door" → "front door".
pub fn bare_name(label: &str) -> &str {
    let l = label.trim();
    for p in ["my ", "My ", "your ", "Your ", "the ", "The "] {
        if let Some(rest) = l.strip_prefix(p) {
            if !rest.trim().is_empty() {
                return rest.trim();
            }
        }
    }
    l
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What is said when a taught thing comes into view: "my keys" → "Your keys.", "blue mug" →
/// "Blue mug."; a hazard gets "Caution: …".
pub fn default_sentence(label: &str, category: Category) -> String {
    let l = label.trim();
    let name = match l.strip_prefix("my ").or_else(|| l.strip_prefix("My ")) {
        Some(rest) if !rest.trim().is_empty() => format!("Your {}", rest.trim()),
        _ => capitalized(l),
    };
    match category {
        Category::Hazard => format!("Caution: {}.", name.to_lowercase()),
        _ => format!("{name}."),
    }
}

/// What find mode says when the thing comes into view: "my keys" → "Keys found.".
pub fn found_sentence(label: &str) -> String {
    format!("{} found.", capitalized(bare_name(label)))
}

/// What find mode says when it gives up: "Stopped looking for keys.".
pub fn stopped_sentence(label: &str) -> String {
    format!("Stopped looking for {}.", bare_name(label))
}

/// The normalized mean of unit-length embeddings; `None` without any, or when they cancel out.
pub fn prototype(shots: &[Vec<f32>]) -> Option<Vec<f32>> {
    let dim = shots.first()?.len();
    let mut p = vec![0.0f32; dim];
    for s in shots.iter().filter(|s| s.len() == dim) {
        p.iter_mut().zip(s).for_each(|(a, b)| *a += b);
    }
    normalize(&mut p).then_some(p)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Picks up to `max` frames that differ from each other, out of unit-length `frames`: frames
/// far from the others' mean ([`OUTLIER`]) are dropped; then greedily, starting from the
/// most typical frame, the frame least like those picked, until the next would be a near
/// duplicate ([`NEAR_DUPLICATE`]). Returns their indices.
pub fn pick_frames(frames: &[Vec<f32>], max: usize) -> Vec<usize> {
    let Some(mean) = prototype(frames) else {
        return Vec::new();
    };
    let pool: Vec<usize> = (0..frames.len())
        .filter(|&i| dot(&frames[i], &mean) >= OUTLIER)
        .collect();
    let Some(&first) = pool
        .iter()
        .max_by(|&&a, &&b| dot(&frames[a], &mean).total_cmp(&dot(&frames[b], &mean)))
    else {
        return Vec::new();
    };
    let mut picked = vec![first];
    while picked.len() < max {
        let nearest = |i: usize| {
            picked
                .iter()
                .map(|&j| dot(&frames[i], &frames[j]))
                .fold(f32::NEG_INFINITY, f32::max)
        };
        let next = pool
            .iter()
            .filter(|i| !picked.contains(i))
            .map(|&i| (i, nearest(i)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match next {
            Some((i, c)) if c <= NEAR_DUPLICATE => picked.push(i),
            _ => break,
        }
    }
    picked
}

/// Folds the shots of an earlier lesson of the same label into `row` (`teach --add`): the
/// mean of all shots, old and new, weighted by their number.
pub fn extend(old: &[f32], old_shots: u32, row: &[f32], shots: u32) -> Option<Vec<f32>> {
    let (a, b) = (old_shots as f32, shots as f32);
    let mut p: Vec<f32> = old.iter().zip(row).map(|(o, r)| o * a + r * b).collect();
    normalize(&mut p).then_some(p)
}

/// The bank entry for `lesson` with prototype `row`, calibrated on the calibration photos
/// (`refs`, and their unit-length embeddings `images`) with `rule`.
pub fn taught_entry(
    lesson: &Lesson,
    row: &[f32],
    shots: u32,
    photos: Vec<String>,
    refs: &[Reference],
    images: &[Vec<f32>],
    rule: &PrecisionRule,
) -> Result<BankEntry, CalibrationError> {
    // "my dog" is a dog: calibration photos of dogs are its positives, not its negatives.
    let bare = bare_name(&lesson.label);
    let aliases: Vec<String> = match bare.eq_ignore_ascii_case(&lesson.label) {
        true => Vec::new(),
        false => vec![bare.to_lowercase()],
    };
    let labels = [(lesson.label.as_str(), aliases.as_slice())];
    let stats = calibrate(&labels, &[row.to_vec()], refs, images, rule)?;
    let s = &stats[0];
    Ok(BankEntry {
        label: lesson.label.clone(),
        category: lesson.category,
        priority: lesson.category.default_priority(),
        say: lesson.say.clone(),
        threshold: s.threshold,
        neg_mean: s.neg_mean,
        neg_std: s.neg_std,
        aliases,
        // Vouched for by the one who taught it: announced like a validated label.
        calibration: Evidence {
            validated: true,
            ..Evidence::of(s)
        },
        source: Source::Image { shots, photos },
        gate: Vec::new(),
    })
}

/// `bank` (a new personal bank when `None`) with `entry` and its `row`, replacing a label of
/// the same name.
pub fn learn(
    bank: Option<Bank>,
    model: crate::model::ModelIdentity,
    calibration: String,
    entry: BankEntry,
    row: &[f32],
) -> Result<Bank, String> {
    match bank {
        Some(b) => b.with_entry(entry, row),
        None => Bank::new(
            PERSONAL_BANK_NAME.into(),
            model,
            calibration,
            vec![entry],
            row.len(),
            row.to_vec(),
        ),
    }
}

/// The labels a bank's user taught (its image rows), in order.
pub fn taught_labels(bank: &Bank) -> Vec<String> {
    bank.entries
        .iter()
        .filter(|e| matches!(e.source, Source::Image { .. }))
        .map(|e| e.label.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        normalize(&mut v);
        v
    }

    #[test]
    fn sentences_follow_the_label() {
        assert_eq!(default_sentence("my keys", Category::Object), "Your keys.");
        assert_eq!(default_sentence("blue mug", Category::Object), "Blue mug.");
        assert_eq!(
            default_sentence("my front step", Category::Hazard),
            "Caution: your front step."
        );
        assert_eq!(found_sentence("my keys"), "Keys found.");
        assert_eq!(found_sentence("cup"), "Cup found.");
        assert_eq!(stopped_sentence("my keys"), "Stopped looking for keys.");
        assert!(Lesson::new("  ", Category::Object).is_err());
        assert!(Lesson::new("a\nb", Category::Object).is_err());
    }

    #[test]
    fn the_prototype_is_the_normalized_mean() {
        let p = prototype(&[unit(&[1.0, 0.0]), unit(&[0.0, 1.0])]).unwrap();
        assert!((p[0] - p[1]).abs() < 1e-6 && (p[0] - 0.70710677).abs() < 1e-6);
        assert!(prototype(&[]).is_none());
        assert!(prototype(&[unit(&[1.0, 0.0]), unit(&[-1.0, 0.0])]).is_none());
    }

    #[test]
    fn the_picker_skips_near_duplicates_and_strangers() {
        let frames = vec![
            unit(&[1.0, 0.0, 0.0]),
            unit(&[1.0, 0.01, 0.0]), // a near duplicate of the first
            unit(&[1.0, 0.5, 0.0]),  // another angle
            unit(&[0.0, 0.0, 1.0]),  // something else
            unit(&[1.0, -0.4, 0.0]), // a third angle
        ];
        let mut picked = pick_frames(&frames, 8);
        picked.sort();
        assert!(!picked.contains(&3), "the stranger is dropped: {picked:?}");
        assert!(picked.contains(&2) && picked.contains(&4), "{picked:?}");
        assert!(
            !(picked.contains(&0) && picked.contains(&1)),
            "near duplicates: {picked:?}"
        );
        assert_eq!(pick_frames(&frames, 2).len(), 2);
        assert!(pick_frames(&[], 3).is_empty());
    }

    #[test]
    fn extending_weights_by_the_number_of_shots() {
        let e = extend(&unit(&[1.0, 0.0]), 3, &unit(&[0.0, 1.0]), 1).unwrap();
        assert!(e[0] > e[1] && (e[0] / e[1] - 3.0).abs() < 1e-5);
    }
}
