//! CLIP-exact preprocessing: resize, center-crop, normalize into a caller-owned CHW buffer.
//!
//! Input: a packed RGB8 image of any size. Output: `3 × N × N` f32 values, channel-major,
//! `(v / 255 − mean) / std`, written into a buffer the caller reuses.
//!
//! The resize reproduces Pillow's `Image.resize` with its antialiased bicubic and bilinear
//! filters (the same coefficients, the same 22-bit fixed-point arithmetic, horizontal pass
//! first, rounding to u8 between the passes), and the crop reproduces torchvision's
//! `Resize(N)` + `CenterCrop(N)` (`int(N * long / short)`, `round((h - N) / 2)`). So the result
//! matches CLIP's reference preprocessing bit for bit on RGB input. Only the crop window is
//! computed. Coefficients are cached per input size, so a camera's steady stream allocates
//! nothing. Failures: a zero-sized image or a wrong output buffer length, as
//! [`PreprocessError`].

use crate::model::{ImageSpec, Interpolation, ResizeMode};
use crate::types::RgbView;
use crate::vision::resample::{horizontal_row, vertical_row, Taps};

/// Why a frame could not be preprocessed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreprocessError {
    /// The image has zero width or height.
    #[error("the image is empty ({width}×{height})")]
    Empty {
        /// Width, in pixels.
        width: u32,
        /// Height, in pixels.
        height: u32,
    },
    /// A pixel buffer's length is not `width × height × 3`.
    #[error("the pixel buffer holds {found} bytes, expected {expected} for {width}×{height} RGB")]
    BadPixels {
        /// Width, in pixels.
        width: u32,
        /// Height, in pixels.
        height: u32,
        /// `width × height × 3`, in bytes.
        expected: usize,
        /// The buffer's length, in bytes.
        found: usize,
    },
    /// The output buffer's length is not `3 × N × N`.
    #[error("the output buffer holds {found} values, expected {expected}")]
    BadOutput {
        /// `3 × N × N`.
        expected: usize,
        /// The buffer's length.
        found: usize,
    },
}

impl<'a> From<&'a image::RgbImage> for RgbView<'a> {
    fn from(img: &'a image::RgbImage) -> Self {
        RgbView {
            width: img.width(),
            height: img.height(),
            pixels: img.as_raw(),
        }
    }
}

/// The geometry for one input size: resized size, crop window and the taps of each axis.
#[derive(Debug, Clone)]
struct Plan {
    src: (u32, u32),
    #[cfg_attr(not(test), allow(dead_code))]
    resized: (usize, usize),
    crop: (usize, usize),
    horizontal: Option<Taps>,
    vertical: Option<Taps>,
}

/// torchvision's `round()`: Python rounds half to even.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

impl Plan {
    fn new(width: u32, height: u32, spec: &PreprocessSpec) -> Plan {
        let n = spec.size as usize;
        let (w, h) = (width as usize, height as usize);
        let resized = match spec.resize {
            ResizeMode::Squash => (n, n),
            ResizeMode::Shortest => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                // torchvision: int(size * long / short), computed in floating point.
                let new_long = (n as f64 * long as f64 / short as f64) as usize;
                if w <= h {
                    (n, new_long)
                } else {
                    (new_long, n)
                }
            }
        };
        let crop = (
            round_half_even((resized.0 as f64 - n as f64) / 2.0).max(0.0) as usize,
            round_half_even((resized.1 as f64 - n as f64) / 2.0).max(0.0) as usize,
        );
        Plan {
            src: (width, height),
            resized,
            crop,
            horizontal: (resized.0 != w)
                .then(|| Taps::window(w, resized.0, crop.0, n, spec.interpolation)),
            vertical: (resized.1 != h)
                .then(|| Taps::window(h, resized.1, crop.1, n, spec.interpolation)),
        }
    }
}

/// What preprocessing needs from the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessSpec {
    /// The output side N, in pixels.
    pub size: u32,
    /// How the frame is brought to N × N.
    pub resize: ResizeMode,
    /// The resampling filter.
    pub interpolation: Interpolation,
    /// Per-channel (R, G, B) mean subtracted from pixels scaled to 0–1.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation divided by.
    pub std: [f32; 3],
}

impl From<&ImageSpec> for PreprocessSpec {
    fn from(s: &ImageSpec) -> Self {
        PreprocessSpec {
            size: s.size,
            resize: s.resize,
            interpolation: s.interpolation,
            mean: s.mean,
            std: s.std,
        }
    }
}

/// Resizes, crops and normalizes frames, reusing its buffers across calls.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    spec: PreprocessSpec,
    /// Per channel: the normalized value of each u8 level.
    lut: [[f32; 256]; 3],
    plan: Option<Plan>,
    /// Output of the horizontal pass (rows the vertical pass reads, crop columns only).
    tmp: Vec<u8>,
    /// The cropped N×N RGB8 result.
    rgb: Vec<u8>,
}

impl Preprocessor {
    /// Builds the normalization tables; a resize plan is made per input size on first use.
    pub fn new(spec: PreprocessSpec) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - spec.mean[c]) / spec.std[c];
            }
        }
        let n = spec.size as usize;
        Preprocessor {
            lut,
            plan: None,
            tmp: Vec::new(),
            rgb: vec![0; n * n * 3],
            spec,
        }
    }

    /// The settings it was built with.
    pub fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// The number of f32 values [`Preprocessor::run`] writes: `3 × N × N`.
    pub fn output_len(&self) -> usize {
        let n = self.spec.size as usize;
        3 * n * n
    }

    /// Resizes and crops `src` to N×N RGB8; returns the result (valid until the next call).
    pub fn resize_crop(&mut self, src: RgbView<'_>) -> &[u8] {
        if self.plan.as_ref().map(|p| p.src) != Some((src.width, src.height)) {
            self.plan = Some(Plan::new(src.width, src.height, &self.spec));
        }
        let Some(plan) = self.plan.as_ref() else {
            return &self.rgb;
        };
        let n = self.spec.size as usize;
        let w = src.width as usize;
        let (cx, cy) = plan.crop;
        // Output rows [cy, cy + n) of the resized image need source rows [y0, y1).
        let (y0, y1) = match &plan.vertical {
            Some(v) => {
                let first = v.taps(cy).0;
                let last = (cy..cy + n)
                    .map(|y| {
                        let (f, k) = v.taps(y);
                        f + k.len()
                    })
                    .max()
                    .unwrap_or(first);
                (first, last)
            }
            None => (cy, cy + n),
        };
        // Horizontal pass: rows [y0, y1), crop columns [cx, cx + n) → tmp (n wide).
        let rows = y1 - y0;
        self.tmp.resize(rows * n * 3, 0);
        match &plan.horizontal {
            Some(hz) => {
                for y in 0..rows {
                    let line = &src.pixels[(y0 + y) * w * 3..(y0 + y + 1) * w * 3];
                    let out = &mut self.tmp[y * n * 3..(y + 1) * n * 3];
                    horizontal_row(hz, cx, line, out);
                }
            }
            None => {
                for y in 0..rows {
                    let start = ((y0 + y) * w + cx) * 3;
                    self.tmp[y * n * 3..(y + 1) * n * 3]
                        .copy_from_slice(&src.pixels[start..start + n * 3]);
                }
            }
        }
        // Vertical pass: output rows [cy, cy + n) from tmp.
        match &plan.vertical {
            Some(vt) => {
                for (y, out) in self.rgb.chunks_exact_mut(n * 3).enumerate() {
                    vertical_row(vt, cy + y, &self.tmp, y0, out);
                }
            }
            None => self.rgb.copy_from_slice(&self.tmp[..n * n * 3]),
        }
        &self.rgb
    }

    /// Resizes, crops and normalizes `src` into `out` (`3 × N × N`, CHW).
    pub fn run(&mut self, src: RgbView<'_>, out: &mut [f32]) -> Result<(), PreprocessError> {
        if src.width == 0 || src.height == 0 {
            return Err(PreprocessError::Empty {
                width: src.width,
                height: src.height,
            });
        }
        let expected = self.output_len();
        if out.len() != expected {
            return Err(PreprocessError::BadOutput {
                expected,
                found: out.len(),
            });
        }
        self.resize_crop(src);
        let plane = expected / 3;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in self.rgb.chunks_exact(3).enumerate() {
            r[i] = self.lut[0][px[0] as usize];
            g[i] = self.lut[1][px[1] as usize];
            b[i] = self.lut[2][px[2] as usize];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u32, resize: ResizeMode, interpolation: Interpolation) -> PreprocessSpec {
        PreprocessSpec {
            size,
            resize,
            interpolation,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 1.0],
        }
    }

    #[test]
    fn python_rounding_is_half_to_even() {
        assert_eq!(round_half_even(0.5), 0.0);
        assert_eq!(round_half_even(1.5), 2.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(2.4), 2.0);
        assert_eq!(round_half_even(2.6), 3.0);
    }

    #[test]
    fn torchvision_geometry() {
        let s = spec(224, ResizeMode::Shortest, Interpolation::Bicubic);
        // 640×427 → short side 427 → 224, long int(224*640/427) = 335; crop left round(55.5)=56
        let p = Plan::new(640, 427, &s);
        assert_eq!(p.resized, (335, 224));
        assert_eq!(p.crop, (56, 0));
        assert!(p.vertical.is_some() && p.horizontal.is_some());
        let p = Plan::new(300, 224, &s);
        assert_eq!(p.resized, (300, 224));
        assert!(p.vertical.is_none());
        let sq = spec(224, ResizeMode::Squash, Interpolation::Bilinear);
        let p = Plan::new(640, 427, &sq);
        assert_eq!((p.resized, p.crop), ((224, 224), (0, 0)));
    }

    #[test]
    fn an_extreme_strip_needs_taps_for_the_crop_only() {
        // 1 × 4 000 000 resizes to 224 × 896 000 000: taps for the whole axis would be 18 GB.
        let s = spec(224, ResizeMode::Shortest, Interpolation::Bicubic);
        let px = vec![90u8; 4_000_000 * 3];
        let mut p = Preprocessor::new(s);
        let rgb = p.resize_crop(RgbView::new(1, 4_000_000, &px).unwrap());
        assert!(rgb.iter().all(|&v| v == 90));
        let plan = p.plan.as_ref().unwrap();
        assert_eq!(plan.vertical.as_ref().unwrap().len(), 224);
    }

    #[test]
    fn a_flat_image_stays_flat_at_any_size() {
        for (w, h) in [(1, 1), (3, 1000), (640, 480), (224, 224), (225, 224)] {
            let px = vec![200u8; w * h * 3];
            let mut p = Preprocessor::new(spec(32, ResizeMode::Shortest, Interpolation::Bicubic));
            let rgb = p.resize_crop(RgbView::new(w as u32, h as u32, &px).unwrap());
            assert!(rgb.iter().all(|&v| v == 200), "{w}x{h}");
        }
    }

    #[test]
    fn same_size_is_identity_and_normalizes_per_channel() {
        let (w, h) = (4u32, 4u32);
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 5) as u8).collect();
        let mut p = Preprocessor::new(spec(4, ResizeMode::Shortest, Interpolation::Bicubic));
        assert_eq!(p.resize_crop(RgbView::new(w, h, &px).unwrap()), &px[..]);
        let mut out = vec![0f32; p.output_len()];
        p.run(RgbView::new(w, h, &px).unwrap(), &mut out).unwrap();
        // First pixel: r=0, g=5, b=10
        assert!((out[0] - (0.0 - 0.5) / 0.5).abs() < 1e-6);
        assert!((out[16] - (5.0 / 255.0 - 0.25) / 0.25).abs() < 1e-6);
        assert!((out[32] - 10.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn bad_buffers_are_errors_not_panics() {
        assert!(matches!(
            RgbView::new(0, 5, &[]),
            Err(PreprocessError::Empty { .. })
        ));
        assert!(matches!(
            RgbView::new(2, 2, &[0; 11]),
            Err(PreprocessError::BadPixels { .. })
        ));
        let mut p = Preprocessor::new(spec(8, ResizeMode::Squash, Interpolation::Bilinear));
        let px = [0u8; 12];
        let mut out = vec![0f32; 5];
        assert!(matches!(
            p.run(RgbView::new(2, 2, &px).unwrap(), &mut out),
            Err(PreprocessError::BadOutput { .. })
        ));
    }
}
