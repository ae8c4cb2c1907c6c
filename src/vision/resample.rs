//! Pillow's antialiased resampling, shared by the encoder's preprocessing and the pose
//! stage's letterbox: the filter taps of `precompute_coeffs` + `normalize_coeffs_8bpc` (the
//! same 22-bit fixed point) and the row passes of its 8-bit resampler, rounding to u8 after
//! each pass. Taps can be made for a window of the output axis only, since a crop may need a
//! small part of a huge resized axis.

use crate::model::Interpolation;

/// Fixed-point precision of Pillow's 8-bit resampler (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Per-output-position filter taps for one axis, in Pillow's fixed point.
#[derive(Debug, Clone)]
pub(crate) struct Taps {
    /// The first output position the taps are for.
    start: usize,
    /// `(first source index, tap count)` per output position from `start`.
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

impl Taps {
    /// The taps of a whole axis, `in_size` → `out_size`.
    pub fn new(in_size: usize, out_size: usize, interpolation: Interpolation) -> Taps {
        Taps::window(in_size, out_size, 0, out_size, interpolation)
    }

    /// The taps of outputs `[start, start + len)` only: a 1 × 4 000 000 strip resizes to
    /// 224 × 896 000 000, of which a crop needs 224 rows, so taps for the whole axis would
    /// take gigabytes.
    pub fn window(
        in_size: usize,
        out_size: usize,
        start: usize,
        len: usize,
        interpolation: Interpolation,
    ) -> Taps {
        let (support, filter): (f64, fn(f64) -> f64) = match interpolation {
            Interpolation::Bicubic => (2.0, bicubic),
            Interpolation::Bilinear => (1.0, bilinear),
        };
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = support * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(len);
        let mut weights = vec![0i32; len * ksize];
        let mut k = vec![0f64; ksize];
        let one = f64::from(1u32 << PRECISION_BITS);
        let ss = 1.0 / filterscale;
        for (i, xx) in (start..start + len).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // C casts truncate toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(count) {
                let w = filter(((x + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            let row = &mut weights[i * ksize..(i + 1) * ksize];
            for x in 0..count {
                let w = if ww != 0.0 { k[x] / ww } else { k[x] };
                row[x] = if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                };
            }
            bounds.push((xmin, count));
        }
        Taps {
            start,
            bounds,
            ksize,
            weights,
        }
    }

    /// How many outputs the taps cover.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// The first source index and the weights of output `out` (inside the window).
    #[inline]
    pub fn taps(&self, out: usize) -> (usize, &[i32]) {
        let i = out - self.start;
        let (first, count) = self.bounds[i];
        (first, &self.weights[i * self.ksize..i * self.ksize + count])
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// One row of the horizontal pass: `line` (RGB8) into `out`, whose pixel `x` is output
/// position `first_out + x` of the axis.
#[inline]
pub(crate) fn horizontal_row(taps: &Taps, first_out: usize, line: &[u8], out: &mut [u8]) {
    for (x, px) in out.chunks_exact_mut(3).enumerate() {
        let (first, k) = taps.taps(first_out + x);
        let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
        for (i, &wgt) in k.iter().enumerate() {
            let p = (first + i) * 3;
            acc[0] += i32::from(line[p]) * wgt;
            acc[1] += i32::from(line[p + 1]) * wgt;
            acc[2] += i32::from(line[p + 2]) * wgt;
        }
        px[0] = clip8(acc[0]);
        px[1] = clip8(acc[1]);
        px[2] = clip8(acc[2]);
    }
}

/// Output row `y` of the vertical pass into `out`, reading `src`: rows of `out.len()` bytes
/// that start at source row `src_row0`.
#[inline]
pub(crate) fn vertical_row(taps: &Taps, y: usize, src: &[u8], src_row0: usize, out: &mut [u8]) {
    let stride = out.len();
    let (first, k) = taps.taps(y);
    let first = first - src_row0;
    for (x, o) in out.iter_mut().enumerate() {
        let mut acc = 1i32 << (PRECISION_BITS - 1);
        for (i, &wgt) in k.iter().enumerate() {
            acc += i32::from(src[(first + i) * stride + x]) * wgt;
        }
        *o = clip8(acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_taps_equal_the_full_axis() {
        let full = Taps::new(640, 335, Interpolation::Bicubic);
        let part = Taps::window(640, 335, 56, 224, Interpolation::Bicubic);
        for out in 56..280 {
            assert_eq!(full.taps(out), part.taps(out));
        }
    }

    #[test]
    fn taps_sum_to_one_and_stay_in_bounds() {
        for (i, o) in [(640, 224), (224, 640), (100, 99), (3, 224), (1000, 7)] {
            for f in [Interpolation::Bicubic, Interpolation::Bilinear] {
                let t = Taps::new(i, o, f);
                for out in 0..o {
                    let (first, k) = t.taps(out);
                    assert!(first + k.len() <= i);
                    let sum: i64 = k.iter().map(|&w| i64::from(w)).sum();
                    assert!((sum - (1 << PRECISION_BITS)).abs() < 64, "{i}->{o} {sum}");
                }
            }
        }
    }
}
