//! The change gate and the darkness check: cheap looks at a frame before the encoder runs.
//!
//! Input: an RGB8 frame. Output: a tiny grey thumbnail (block means over a fixed grid), its
//! mean brightness and contrast, and the decision whether the frame differs enough from the
//! last encoded one to be worth encoding. A static scene then costs almost no CPU; the gate
//! still lets a frame through every `recheck` seconds. Pure arithmetic into reused buffers:
//! it cannot fail.

use crate::types::RgbView;

/// Thumbnail grid width, in cells.
pub const THUMB_W: usize = 32;
/// Thumbnail grid height, in cells.
pub const THUMB_H: usize = 24;

/// A frame's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    /// Mean luma per cell, 0–255.
    pub cells: Vec<f32>,
    /// Mean luma of the frame, 0–255.
    pub mean: f32,
    /// Standard deviation of the cell means, 0–255.
    pub contrast: f32,
}

impl Default for Thumbnail {
    fn default() -> Self {
        Thumbnail {
            cells: vec![0.0; THUMB_W * THUMB_H],
            mean: 0.0,
            contrast: 0.0,
        }
    }
}

impl Thumbnail {
    /// Recomputes the thumbnail of `img` in place (samples every other pixel for speed).
    pub fn update(&mut self, img: RgbView<'_>) {
        let (w, h) = (img.width as usize, img.height as usize);
        self.cells.resize(THUMB_W * THUMB_H, 0.0);
        let mut counts = [0u32; THUMB_W * THUMB_H];
        self.cells.iter_mut().for_each(|c| *c = 0.0);
        let step = if w * h > 100_000 { 2 } else { 1 };
        for y in (0..h).step_by(step) {
            let cy = y * THUMB_H / h;
            let row = &img.pixels[y * w * 3..(y + 1) * w * 3];
            for x in (0..w).step_by(step) {
                let p = &row[x * 3..x * 3 + 3];
                // ITU-R BT.601 luma.
                let luma =
                    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                let cell = cy * THUMB_W + x * THUMB_W / w;
                self.cells[cell] += luma;
                counts[cell] += 1;
            }
        }
        let mut sum = 0.0;
        let mut filled = 0.0;
        for (c, &n) in self.cells.iter_mut().zip(&counts) {
            if n > 0 {
                *c /= n as f32;
                sum += *c;
                filled += 1.0;
            }
        }
        self.mean = if filled > 0.0 { sum / filled } else { 0.0 };
        let var = self
            .cells
            .iter()
            .zip(&counts)
            .filter(|(_, &n)| n > 0)
            .map(|(c, _)| (c - self.mean).powi(2))
            .sum::<f32>()
            / filled.max(1.0);
        self.contrast = var.sqrt();
    }

    /// Mean absolute difference of the cells, 0–255.
    pub fn difference(&self, other: &Thumbnail) -> f32 {
        let n = self.cells.len().max(1) as f32;
        self.cells
            .iter()
            .zip(&other.cells)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / n
    }
}

/// When a frame is too dark to judge.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DarkConfig {
    /// Mean luma (0–255) below which a frame may be too dark.
    pub max_mean: f32,
    /// …and cell contrast below which there is nothing to see.
    pub max_contrast: f32,
}

impl Default for DarkConfig {
    fn default() -> Self {
        DarkConfig {
            max_mean: 28.0,
            max_contrast: 12.0,
        }
    }
}

impl DarkConfig {
    /// True when both the mean luma and the contrast are below their limits.
    pub fn is_dark(&self, t: &Thumbnail) -> bool {
        t.mean < self.max_mean && t.contrast < self.max_contrast
    }
}

/// The change gate's settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Gate frames at all; `false` encodes every frame (default true).
    pub enabled: bool,
    /// Mean absolute thumbnail difference (0–255) that counts as a change.
    pub threshold: f32,
    /// Encode at least this often, in seconds, even when nothing changed.
    pub recheck_s: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            enabled: true,
            threshold: 4.0,
            recheck_s: 3.0,
        }
    }
}

/// Decides per frame whether to encode it.
#[derive(Debug, Clone)]
pub struct ChangeGate {
    config: GateConfig,
    reference: Option<(Thumbnail, f64)>,
}

impl ChangeGate {
    /// A gate with no reference frame yet: the first frame is always encoded.
    pub fn new(config: GateConfig) -> Self {
        ChangeGate {
            config,
            reference: None,
        }
    }

    /// True when the frame at time `t` with thumbnail `thumb` should be encoded.
    pub fn should_encode(&self, thumb: &Thumbnail, t: f64) -> bool {
        if !self.config.enabled {
            return true;
        }
        match &self.reference {
            None => true,
            Some((reference, at)) => {
                t - at >= self.config.recheck_s
                    || t < *at
                    || thumb.difference(reference) >= self.config.threshold
            }
        }
    }

    /// Records that the frame with `thumb` was encoded at `t`.
    pub fn encoded(&mut self, thumb: &Thumbnail, t: f64) {
        match &mut self.reference {
            Some((r, at)) => {
                r.cells.copy_from_slice(&thumb.cells);
                r.mean = thumb.mean;
                r.contrast = thumb.contrast;
                *at = t;
            }
            None => self.reference = Some((thumb.clone(), t)),
        }
    }

    /// Forgets the reference, so the next frame is encoded.
    pub fn reset(&mut self) {
        self.reference = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb_of(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Thumbnail {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
        let mut t = Thumbnail::default();
        t.update((&img).into());
        t
    }

    #[test]
    fn dark_frames_are_recognized() {
        let dark = DarkConfig::default();
        assert!(dark.is_dark(&thumb_of(64, 48, |_, _| [5, 5, 5])));
        assert!(!dark.is_dark(&thumb_of(64, 48, |_, _| [120, 120, 120])));
        // A dark frame with a bright window in it can still be judged.
        assert!(!dark.is_dark(&thumb_of(64, 48, |x, _| if x < 16 {
            [250; 3]
        } else {
            [2; 3]
        })));
    }

    #[test]
    fn gate_skips_unchanged_frames_and_rechecks() {
        let mut gate = ChangeGate::new(GateConfig::default());
        let a = thumb_of(640, 480, |x, y| [(x % 256) as u8, (y % 256) as u8, 50]);
        let b = thumb_of(640, 480, |x, y| [(x % 256) as u8, (y % 256) as u8, 52]);
        let c = thumb_of(640, 480, |x, _| [255 - (x % 256) as u8, 0, 0]);
        assert!(gate.should_encode(&a, 0.0));
        gate.encoded(&a, 0.0);
        assert!(!gate.should_encode(&b, 1.0), "sensor noise is not a change");
        assert!(gate.should_encode(&c, 1.0), "a new scene is");
        assert!(gate.should_encode(&b, 3.0), "the recheck period has passed");
        let off = ChangeGate::new(GateConfig {
            enabled: false,
            ..Default::default()
        });
        assert!(off.should_encode(&a, 0.0));
    }
}
