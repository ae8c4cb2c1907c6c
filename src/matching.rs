//! Matching: an image embedding against the prompt banks → calibrated scores.
//!
//! Input: a unit-length image embedding and the loaded [`Bank`]s. Output: [`Scores`], every
//! label's cosine and calibrated score (z) in bank order, written into caller-owned buffers by
//! [`score`], the one scoring function every command uses; plus softmax probabilities of
//! `logit_scale × cosine` and top-K rankings for `classify`. Pure arithmetic: it cannot
//! fail, and NaN never panics a sort (`total_cmp`).

use crate::prompts::bank::Bank;
use crate::types::Scores;

/// Scores `embedding` against every label of `banks`, in bank order, into `out` (resized to
/// the number of labels; no allocation once warm).
pub fn score(banks: &[Bank], embedding: &[f32], out: &mut Scores) {
    let n: usize = banks.iter().map(Bank::len).sum();
    out.cosine.resize(n, 0.0);
    out.z.resize(n, 0.0);
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

/// Scales `v` to unit length in place (an all-zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
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
    pub index: usize,
    pub label: String,
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

    #[test]
    fn top_k_is_nan_safe() {
        assert_eq!(top_k(&[0.2, f32::NAN, 0.9, 0.5], 3), vec![2, 3, 0]);
        assert_eq!(top_k(&[1.0], 5), vec![0]);
        assert!(top_k(&[], 2).is_empty());
    }
}
