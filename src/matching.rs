//! Matching: an image embedding against the prompt banks → calibrated scores.
//!
//! Input: a unit-length image embedding and the loaded [`Bank`]s. Output: [`Scores`], every
//! label's cosine and calibrated score (z) in bank order, written into caller-owned buffers by
//! [`score`], the one scoring function every command uses; plus softmax probabilities of
//! `logit_scale × cosine` and top-K rankings for `classify`. Pure arithmetic: it cannot
//! fail, and NaN never panics a sort (`total_cmp`).

use std::collections::BTreeMap;

use crate::decide::LabelInfo;
use crate::prompts::bank::{Bank, Source};
use crate::prompts::calibrate::{names, shows, PrecisionRule, Reference};
use crate::types::Scores;

/// Two labels whose text embeddings are at least this close are rivals (bed and couch, bus
/// and train), unless they share a name (a hazard and the object it is about).
pub const RIVAL_COSINE: f32 = 0.3;
/// A label owns the vocabulary entries whose text is at least this close to its own (and
/// always its nearest one).
pub const GATE_COSINE: f32 = 0.5;
/// The gate looks at the image's this many best vocabulary entries.
pub const GATE_TOP_K: usize = 3;

/// The loaded banks with what the precision checks need, worked out once at load: each
/// label's rivals across all banks, and the gate entries it owns.
///
/// A label may be said on a frame ([`Scores::allowed`]) only when:
/// 1. **the gate passes**: among the gate entries (the banks' vocabulary, a broad list of
///    things such as the ImageNet class names embedded by the model's own text tower, plus
///    every loaded label), the image's best [`GATE_TOP_K`] include one the label owns (the
///    entries whose text is within [`GATE_COSINE`] of its own, always the label itself, and
///    the vocabulary entries calibration learned for it: [`learned_gate`]). So a giraffe is
///    not called a cat for want of a better label. Without a vocabulary in any bank there is
///    no gate;
/// 2. **no rival scores higher**: its rivals are the validated labels whose text is within
///    [`RIVAL_COSINE`] of its own and that share none of its names (bed and couch; not a
///    hazard and the object it is about). A taught label and the text label of its kind
///    are rivals too ("my dog" and "dog"): the one that fits the frame better is said.
///
/// Both come from text embeddings and calibration photos, never from a hand list tied to one
/// model.
#[derive(Debug, Clone)]
pub struct Matcher {
    banks: Vec<Bank>,
    rivals: Vec<Vec<usize>>,
    /// The gate's rows (vocabulary, then every label), each of the banks' dimension.
    gate: Vec<f32>,
    /// Per label: the gate rows it owns.
    owned: Vec<Vec<usize>>,
    /// The image's cosine with each gate row (reused).
    gate_cos: Vec<f32>,
    /// The image's best gate rows (reused).
    top: Vec<usize>,
}

impl Matcher {
    /// Works out rivals and owned gate entries for `banks`.
    pub fn new(banks: Vec<Bank>) -> Matcher {
        let rows: Vec<&[f32]> = banks
            .iter()
            .flat_map(|b| (0..b.len()).map(move |i| b.embedding(i)))
            .collect();
        let validated: Vec<bool> = banks
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.calibration.validated))
            .collect();
        let name_sets: Vec<Vec<String>> = banks
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| names(&e.label, &e.aliases)))
            .collect();
        let taught: Vec<bool> = banks
            .iter()
            .flat_map(|b| {
                b.entries
                    .iter()
                    .map(|e| matches!(e.source, Source::Image { .. }))
            })
            .collect();
        let rivals = (0..rows.len())
            .map(|j| {
                (0..rows.len())
                    .filter(|&k| {
                        let shared = name_sets[j].iter().any(|n| name_sets[k].contains(n));
                        k != j
                            && validated[k]
                            && ((dot(rows[j], rows[k]) >= RIVAL_COSINE && !shared)
                                || (shared && taught[j] != taught[k]))
                    })
                    .collect()
            })
            .collect();
        let (gate, owned) = match banks.iter().find_map(Bank::vocabulary) {
            None => (Vec::new(), vec![Vec::new(); rows.len()]),
            Some(vocab) => {
                let mut gate = vocab.to_vec();
                rows.iter().for_each(|r| gate.extend_from_slice(r));
                let dim = rows.first().map_or(1, |r| r.len());
                let vocab_rows = vocab.len() / dim;
                // Learned entries count where they index this same vocabulary.
                let learned: Vec<&[u32]> = banks
                    .iter()
                    .flat_map(|b| {
                        let same = b.vocabulary() == Some(vocab);
                        b.entries
                            .iter()
                            .map(move |e| if same { e.gate.as_slice() } else { &[] })
                    })
                    .collect();
                let owned = rows
                    .iter()
                    .zip(&learned)
                    .map(|(w, learned)| {
                        let t: Vec<f32> = gate.chunks_exact(dim).map(|g| dot(w, g)).collect();
                        let best = t.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let floor = GATE_COSINE.min(best);
                        let mut own: Vec<usize> = (0..t.len()).filter(|&c| t[c] >= floor).collect();
                        for c in learned.iter().map(|&c| c as usize) {
                            if c < vocab_rows && !own.contains(&c) {
                                own.push(c);
                            }
                        }
                        own
                    })
                    .collect();
                (gate, owned)
            }
        };
        Matcher {
            banks,
            rivals,
            gate,
            owned,
            gate_cos: Vec::new(),
            top: Vec::with_capacity(GATE_TOP_K + 1),
        }
    }

    /// The banks, in load order.
    pub fn banks(&self) -> &[Bank] {
        &self.banks
    }

    /// Every label of every bank, for the decision engine.
    pub fn labels(&self) -> Vec<LabelInfo> {
        LabelInfo::from_banks(&self.banks)
    }

    /// Scores `embedding` against every label, in bank order, into `out` (no allocation once
    /// warm): cosines, calibrated scores, and which labels pass the precision checks.
    pub fn score(&mut self, embedding: &[f32], out: &mut Scores) {
        score(&self.banks, embedding, out);
        let gated = !self.gate.is_empty();
        self.rank_gate(embedding);
        for j in 0..out.z.len() {
            let gate = !gated || self.top.iter().any(|c| self.owned[j].contains(c));
            let beaten = self.rivals[j].iter().any(|&k| out.z[k] > out.z[j]);
            out.allowed[j] = gate && !beaten;
        }
    }

    /// The image's best [`GATE_TOP_K`] gate entries, best first, into `self.top` (none
    /// without a gate; no allocation once warm).
    fn rank_gate(&mut self, embedding: &[f32]) {
        self.top.clear();
        if self.gate.is_empty() {
            return;
        }
        let dim = embedding.len().max(1);
        self.gate_cos.resize(self.gate.len() / dim, 0.0);
        for (c, row) in self.gate_cos.iter_mut().zip(self.gate.chunks_exact(dim)) {
            *c = dot(row, embedding);
        }
        best_k(&self.gate_cos, GATE_TOP_K, &mut self.top);
    }
}

/// The gate entries calibration learns for each label of `bank` (in label order), from the
/// calibration photos `refs` and their unit image embeddings `images`: the rows of the bank's
/// vocabulary that stand among a photo's best [`GATE_TOP_K`] gate entries (the vocabulary and
/// the bank's labels) on at least `rule.min_positives` photos showing the label, where at
/// least `rule.target_precision` of all photos ranking that row so high show the label.
///
/// So the data, not the text, says what a label's photos look like to the encoder: with an
/// ImageNet encoder, photos of people rank "racket" or "suit" first, and "person" owns them
/// for the gate. The threshold still applies. Taught labels and a bank without a vocabulary
/// learn none.
pub fn learned_gate(
    bank: &Bank,
    refs: &[Reference],
    images: &[Vec<f32>],
    rule: &PrecisionRule,
) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); bank.len()];
    let Some(vocab) = bank.vocabulary() else {
        return out;
    };
    let vocab_rows = vocab.len() / bank.dim();
    // The gate of this bank alone, as `run` ranks it.
    let mut matcher = Matcher::new(vec![bank.clone()]);
    let label_names: Vec<Vec<String>> = bank
        .entries
        .iter()
        .map(|e| names(&e.label, &e.aliases))
        .collect();
    // Per vocabulary row: photos ranking it among their best, and of those, per label, the
    // photos showing the label.
    let mut ranked: BTreeMap<usize, usize> = BTreeMap::new();
    let mut shown: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (r, img) in refs.iter().zip(images) {
        let showing: Vec<usize> = (0..label_names.len())
            .filter(|&j| shows(&label_names[j], &r.labels))
            .collect();
        matcher.rank_gate(img);
        for &c in matcher.top.iter().filter(|&&c| c < vocab_rows) {
            *ranked.entry(c).or_default() += 1;
            for &j in &showing {
                *shown.entry((j, c)).or_default() += 1;
            }
        }
    }
    for (&(j, c), &p) in &shown {
        let n = ranked.get(&c).copied().unwrap_or(p);
        let text = matches!(bank.entries[j].source, Source::Text);
        if text && p >= rule.min_positives && p as f32 >= rule.target_precision * n as f32 {
            out[j].push(c as u32);
        }
    }
    out
}

/// The indices of the `k` largest scores, best first, into `out` (no allocation once warm;
/// NaN never wins).
fn best_k(scores: &[f32], k: usize, out: &mut Vec<usize>) {
    out.clear();
    for (i, &v) in scores.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        let pos = out.iter().position(|&j| scores[j] < v).unwrap_or(out.len());
        if pos < k {
            out.insert(pos, i);
            out.truncate(k);
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scores `embedding` against every label of `banks`, in bank order, into `out` (resized to
/// the number of labels; no allocation once warm): cosines and calibrated scores, every label
/// allowed. [`Matcher::score`] adds the precision checks.
pub fn score(banks: &[Bank], embedding: &[f32], out: &mut Scores) {
    let n: usize = banks.iter().map(Bank::len).sum();
    out.cosine.resize(n, 0.0);
    out.z.resize(n, 0.0);
    out.allowed.clear();
    out.allowed.resize(n, true);
    let mut at = 0;
    for bank in banks {
        let (cos, z) = (
            &mut out.cosine[at..at + bank.len()],
            &mut out.z[at..at + bank.len()],
        );
        bank.cosines(embedding, cos);
        for ((e, c), z) in bank.entries.iter().zip(cos.iter()).zip(z.iter_mut()) {
            *z = e.z(*c);
        }
        at += bank.len();
    }
}

/// Scales `v` to unit length in place. A vector whose norm is zero or not finite is left
/// as it is and `false` returned: the one normalizer, for encoder outputs and bank rows alike.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// Softmax of `scale × x` over `x`, into `out` (same length), numerically stable.
pub fn softmax_scaled(x: &[f32], scale: f32, out: &mut [f32]) {
    let max = x
        .iter()
        .map(|v| v * scale)
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v * scale - max).exp();
        sum += *o;
    }
    if sum > 0.0 && sum.is_finite() {
        for o in out.iter_mut() {
            *o /= sum;
        }
    }
}

/// The indices of the `k` largest scores, best first. NaN sorts last.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.total_cmp(&x),
        }
    });
    idx.truncate(k);
    idx
}

/// A label with its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The label's index in its bank.
    pub index: usize,
    /// The label.
    pub label: String,
    /// Its softmax probability among the bank's labels.
    pub score: f32,
}

/// Ranks a bank's labels for one image by softmax probability (CLIP zero-shot
/// classification), from the bank's slice of [`score`]'s cosines. `probs` is scratch.
pub fn rank(
    bank: &Bank,
    cosines: &[f32],
    logit_scale: f32,
    k: usize,
    probs: &mut Vec<f32>,
) -> Vec<Ranked> {
    probs.resize(cosines.len(), 0.0);
    softmax_scaled(cosines, logit_scale, probs);
    top_k(probs, k)
        .into_iter()
        .map(|i| Ranked {
            index: i,
            label: bank.entries[i].label.clone(),
            score: probs[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let mut out = [0.0; 3];
        softmax_scaled(&[0.1, 0.3, 0.2], 100.0, &mut out);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(out[1] > out[2] && out[2] > out[0]);
        // Large scales do not overflow.
        softmax_scaled(&[10.0, 9.0, -10.0], 1000.0, &mut out);
        assert!(out.iter().all(|v| v.is_finite()));
    }

    /// A unit vector of 8 values from (index, value) pairs.
    fn unit(parts: &[(usize, f32)]) -> Vec<f32> {
        let mut v = vec![0.0; 8];
        parts.iter().for_each(|&(i, x)| v[i] = x);
        assert!(normalize(&mut v));
        v
    }

    /// Labels person (e0) and dog (e1), and a vocabulary of six things (e2..e7: "jersey" is
    /// e2, "racket" e3, "sofa" e4), whose text is far from both labels.
    fn people_bank(vocab_order: &[usize]) -> Bank {
        use crate::prompts::bank::{BankEntry, Evidence};
        let entry = |label: &str| BankEntry {
            label: label.into(),
            category: crate::types::Category::Object,
            priority: 1,
            say: format!("{label}."),
            threshold: 0.1,
            neg_mean: 0.0,
            neg_std: 0.05,
            aliases: Vec::new(),
            calibration: Evidence::UNKNOWN,
            source: Source::Text,
            gate: Vec::new(),
        };
        let identity = crate::model::ModelIdentity {
            id: "m".into(),
            fingerprint: "f".into(),
        };
        let rows = [unit(&[(0, 1.0)]), unit(&[(1, 1.0)])].concat();
        let vocab: Vec<f32> = vocab_order
            .iter()
            .flat_map(|&i| unit(&[(i, 1.0)]))
            .collect();
        Bank::new(
            "b".into(),
            identity,
            String::new(),
            vec![entry("person"), entry("dog")],
            8,
            rows,
        )
        .unwrap()
        .with_vocabulary(vocab)
        .unwrap()
    }

    /// Calibration with two photos at least learns that photos of people rank "jersey" first
    /// (on 3 of the 4 photos that rank it that high: 0.75), but not "racket" (one photo) nor
    /// "sofa" (1 person photo of 3); "dog" learns nothing ("sofa": 2 of 3). The default rule
    /// (one photo) learns "racket" too, and the two entries only person photos rank, but still
    /// not "sofa" nor e7 (a person and a dog). Then a photo whose best entries are
    /// jersey, sofa and something else passes person's gate only with the learned entry, and
    /// only where the learned entries index the gate's own vocabulary.
    #[test]
    fn the_gate_learns_what_a_labels_photos_look_like() {
        let bank = people_bank(&[2, 3, 4, 5, 6, 7]);
        let photos = [
            (&[(2, 1.0), (0, 0.5), (4, 0.3)][..], "person"),
            (&[(2, 1.0), (0, 0.5), (5, 0.3)], "person"),
            (&[(3, 1.0), (0, 0.5), (6, 0.3)], "person"),
            (&[(2, 1.0), (0, 0.5), (7, 0.3)], "person"),
            (&[(1, 1.0), (4, 0.5), (2, 0.3)], "dog"),
            (&[(1, 1.0), (4, 0.5), (7, 0.2)], "dog"),
        ];
        let refs: Vec<Reference> = photos
            .iter()
            .map(|(_, l)| Reference {
                path: "p.jpg".into(),
                labels: [l.to_string()].into(),
            })
            .collect();
        let images: Vec<Vec<f32>> = photos.iter().map(|(p, _)| unit(p)).collect();
        assert_eq!(
            learned_gate(&bank, &refs, &images, &PrecisionRule::default()),
            [vec![0u32, 1, 3, 4], vec![]]
        );
        let rule = PrecisionRule {
            min_positives: 2,
            ..PrecisionRule::default()
        };
        let learned = learned_gate(&bank, &refs, &images, &rule);
        assert_eq!(learned, [vec![0u32], vec![]]);
        // A stricter rule learns nothing.
        let strict = PrecisionRule {
            target_precision: 0.8,
            ..rule
        };
        assert_eq!(
            learned_gate(&bank, &refs, &images, &strict),
            [Vec::<u32>::new(), Vec::new()]
        );

        let photo = unit(&[(2, 1.0), (4, 0.6), (6, 0.5), (0, 0.2)]);
        let person_allowed = |banks: Vec<Bank>| {
            let mut m = Matcher::new(banks);
            let mut out = Scores::default();
            m.score(&photo, &mut out);
            let person = m.banks().iter().map(Bank::len).sum::<usize>() - 2;
            // Above its threshold (z 2): only the gate decides.
            assert!(out.z[person] > 2.0, "{:?}", out.z);
            out.allowed[person]
        };
        assert!(!person_allowed(vec![bank.clone()]));
        let mut taught = bank.clone();
        taught.entries[0].gate = learned[0].clone();
        assert!(person_allowed(vec![taught.clone()]));
        // Learned entries of a bank whose vocabulary is not the gate's are not used (here the
        // gate's row 0 is "sofa", among the photo's best).
        let mut other = people_bank(&[4, 3, 2, 5, 6, 7]);
        other
            .entries
            .iter_mut()
            .for_each(|e| e.label.push_str(" (other)"));
        assert!(!person_allowed(vec![other, taught]));
    }

    #[test]
    fn top_k_is_nan_safe() {
        assert_eq!(top_k(&[0.2, f32::NAN, 0.9, 0.5], 3), vec![2, 3, 0]);
        assert_eq!(top_k(&[1.0], 5), vec![0]);
        assert!(top_k(&[], 2).is_empty());
    }
}
