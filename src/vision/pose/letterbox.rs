//! Letterbox preprocessing: scale the longer side to `size`, paste centred on a padded square,
//! map the levels to the input's element type, into a caller-owned tensor buffer.
//!
//! The scaling reproduces Pillow's `Image.resize` (its antialiased bilinear or bicubic filter,
//! the same 22-bit fixed-point coefficients, rounding to u8 between the two passes, and
//! Pillow 13's pass order: vertical first when the height shrinks by more than twice as many
//! pixels as the width, else horizontal first), which is what `models/person_eval.py` runs with
//! the pinned Pillow, so on the same decoded pixels the square is PIL's to the level. The geometry follows the model card: `s = size / max(w, h)`,
//! `nw = round(w·s)`, `nh = round(h·s)` (half to even, as Python rounds),
//! `px = (size − nw) div 2`, `py = (size − nh) div 2`. Coefficients are cached per input size
//! and every buffer is reused, so a camera's steady stream allocates nothing here.

use crate::model::Interpolation;
use crate::types::RgbView;
use crate::vision::preprocess::PreprocessError;
use crate::vision::resample::{horizontal_row, vertical_row, Taps};

use super::manifest::{ChannelOrder, PersonManifest, TensorLayout};

/// Where the frame landed on the square: what decoding needs to map coordinates back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// The frame's width, in pixels.
    pub width: u32,
    /// The frame's height, in pixels.
    pub height: u32,
    /// The scaled frame's width on the square.
    pub nw: usize,
    /// The scaled frame's height on the square.
    pub nh: usize,
    /// Left padding, in input pixels.
    pub px: usize,
    /// Top padding, in input pixels.
    pub py: usize,
    /// Horizontal scale, `nw / width`.
    pub sx: f32,
    /// Vertical scale, `nh / height`.
    pub sy: f32,
}

impl Geometry {
    /// The letterbox of a `width × height` frame on a `size` square.
    pub fn new(width: u32, height: u32, size: usize) -> Geometry {
        let (w, h) = (f64::from(width), f64::from(height));
        let s = size as f64 / w.max(h);
        let nw = ((w * s).round_ties_even() as usize).clamp(1, size);
        let nh = ((h * s).round_ties_even() as usize).clamp(1, size);
        Geometry {
            width,
            height,
            nw,
            nh,
            px: (size - nw) / 2,
            py: (size - nh) / 2,
            sx: (nw as f64 / w) as f32,
            sy: (nh as f64 / h) as f32,
        }
    }
}

/// The cached plan for one input size.
#[derive(Debug, Clone)]
struct Plan {
    geometry: Geometry,
    horizontal: Option<Taps>,
    vertical: Option<Taps>,
    /// Pillow 13: `(h − nh) > 0 && (h − nh) > 2·(w − nw)` runs the vertical pass first.
    vertical_first: bool,
}

/// Letterboxes frames into the square RGB8 canvas and converts it to the input tensor,
/// reusing its buffers.
#[derive(Debug, Clone)]
pub struct Letterbox {
    size: usize,
    interpolation: Interpolation,
    pad: u8,
    layout: TensorLayout,
    /// Source channel of each tensor channel.
    channel_of: [usize; 3],
    /// Per tensor channel: the input value of each u8 level.
    lut: [[f32; 256]; 3],
    plan: Option<Plan>,
    /// Output of the horizontal pass: `height × nw × 3`.
    tmp: Vec<u8>,
    /// The padded `size × size` RGB8 square.
    canvas: Vec<u8>,
}

impl Letterbox {
    /// The letterbox a manifest's `[model]` describes.
    pub fn new(manifest: &PersonManifest) -> Letterbox {
        let m = &manifest.model;
        let size = m.size as usize;
        let channel_of = match m.channels {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let [lo, hi] = m.value_range;
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                let scaled = v as f32 / 255.0 * (hi - lo) + lo;
                *out = (scaled - m.mean[c]) / m.std[c];
            }
        }
        Letterbox {
            size,
            interpolation: m.interpolation,
            pad: m.pad_value,
            layout: m.layout,
            channel_of,
            lut,
            plan: None,
            tmp: Vec::new(),
            canvas: vec![m.pad_value; size * size * 3],
        }
    }

    /// The number of values the tensor holds: `3 × size × size`.
    pub fn tensor_len(&self) -> usize {
        3 * self.size * self.size
    }

    /// The padded RGB8 square of the last [`Letterbox::run`] (`size × size × 3`).
    pub fn canvas(&self) -> &[u8] {
        &self.canvas
    }

    /// Scales and pads `src` onto the canvas; returns where it landed.
    pub fn run(&mut self, src: RgbView<'_>) -> Result<Geometry, PreprocessError> {
        let (w, h) = (src.width as usize, src.height as usize);
        if w == 0 || h == 0 {
            return Err(PreprocessError::Empty {
                width: src.width,
                height: src.height,
            });
        }
        if src.pixels.len() != w * h * 3 {
            return Err(PreprocessError::BadPixels {
                width: src.width,
                height: src.height,
                expected: w * h * 3,
                found: src.pixels.len(),
            });
        }
        let stale = self
            .plan
            .as_ref()
            .map(|p| (p.geometry.width, p.geometry.height))
            != Some((src.width, src.height));
        if stale {
            let g = Geometry::new(src.width, src.height, self.size);
            let shrink_y = h as i64 - g.nh as i64;
            let shrink_x = w as i64 - g.nw as i64;
            self.plan = Some(Plan {
                geometry: g,
                horizontal: (g.nw != w).then(|| Taps::new(w, g.nw, self.interpolation)),
                vertical: (g.nh != h).then(|| Taps::new(h, g.nh, self.interpolation)),
                vertical_first: shrink_y > 0 && shrink_y > 2 * shrink_x,
            });
        }
        let Some(plan) = self.plan.as_ref() else {
            return Err(PreprocessError::Empty {
                width: src.width,
                height: src.height,
            });
        };
        let g = plan.geometry;
        let (n, nw, nh) = (self.size, g.nw, g.nh);
        self.canvas.fill(self.pad);
        let row = nw * 3;
        let canvas_row = |y: usize| ((g.py + y) * n + g.px) * 3;
        match (&plan.horizontal, &plan.vertical) {
            (hz, Some(vt)) if plan.vertical_first => {
                // h → nh rows of w pixels into tmp, then w → nw columns onto the canvas.
                let (src_row, tmp) = (w * 3, &mut self.tmp);
                tmp.resize(nh * src_row, 0);
                for (y, out) in tmp.chunks_exact_mut(src_row).enumerate() {
                    vertical_row(vt, y, src.pixels, 0, out);
                }
                for (y, line) in tmp.chunks_exact(src_row).enumerate() {
                    let out = &mut self.canvas[canvas_row(y)..canvas_row(y) + row];
                    match hz {
                        Some(hz) => horizontal_row(hz, 0, line, out),
                        None => out.copy_from_slice(line),
                    }
                }
            }
            (hz, vt) => {
                // w → nw columns of every row into tmp (or the source as is), then h → nh rows
                // onto the canvas.
                let rows: &[u8] = match hz {
                    Some(hz) => {
                        self.tmp.resize(h * row, 0);
                        let lines = src.pixels.chunks_exact(w * 3);
                        for (line, out) in lines.zip(self.tmp.chunks_exact_mut(row)) {
                            horizontal_row(hz, 0, line, out);
                        }
                        &self.tmp
                    }
                    None => src.pixels,
                };
                for y in 0..nh {
                    let out = &mut self.canvas[canvas_row(y)..canvas_row(y) + row];
                    match vt {
                        Some(vt) => vertical_row(vt, y, rows, 0, out),
                        None => out.copy_from_slice(&rows[y * row..(y + 1) * row]),
                    }
                }
            }
        }
        Ok(g)
    }

    /// Writes the canvas into `out` in the tensor's layout through `convert` (a level's value
    /// per tensor channel).
    fn write<T: Copy>(&self, out: &mut [T], convert: impl Fn(usize, u8) -> T) {
        let plane = self.size * self.size;
        match self.layout {
            TensorLayout::Nhwc => {
                for (o, px) in out.chunks_exact_mut(3).zip(self.canvas.chunks_exact(3)) {
                    for c in 0..3 {
                        o[c] = convert(c, px[self.channel_of[c]]);
                    }
                }
            }
            TensorLayout::Nchw => {
                for c in 0..3 {
                    let dst = &mut out[c * plane..(c + 1) * plane];
                    for (o, px) in dst.iter_mut().zip(self.canvas.chunks_exact(3)) {
                        *o = convert(c, px[self.channel_of[c]]);
                    }
                }
            }
        }
    }

    /// The canvas as f32 input values (`out.len()` = [`Letterbox::tensor_len`]).
    pub fn write_f32(&self, out: &mut [f32]) {
        self.write(out, |c, v| self.lut[c][usize::from(v)]);
    }

    /// The canvas as i32 input values, rounded (`out.len()` = [`Letterbox::tensor_len`]).
    pub fn write_i32(&self, out: &mut [i32]) {
        self.write(out, |c, v| self.lut[c][usize::from(v)].round() as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::pose::manifest::tests::committed;
    use std::path::Path;

    fn manifest() -> PersonManifest {
        PersonManifest::parse(&committed(), Path::new("model.toml")).unwrap()
    }

    #[test]
    fn geometry_follows_the_card() {
        // 333×500 portrait: s = 0.512, nw = round(170.496) = 170, px = 43.
        let g = Geometry::new(333, 500, 256);
        assert_eq!((g.nw, g.nh, g.px, g.py), (170, 256, 43, 0));
        // 640×427: nh = round(170.8) = 171, py = 42.
        let g = Geometry::new(640, 427, 256);
        assert_eq!((g.nw, g.nh, g.px, g.py), (256, 171, 0, 42));
        // Python rounds half to even: 1 × 256 / 512 = 0.5 → 0, then at least 1.
        let g = Geometry::new(1, 512, 256);
        assert_eq!((g.nw, g.nh), (1, 256));
        let g = Geometry::new(256, 256, 256);
        assert_eq!(
            (g.nw, g.nh, g.px, g.py, g.sx, g.sy),
            (256, 256, 0, 0, 1.0, 1.0)
        );
    }

    #[test]
    fn a_square_frame_of_the_input_size_is_copied() {
        let px: Vec<u8> = (0..256 * 256 * 3).map(|i| (i % 251) as u8).collect();
        let mut lb = Letterbox::new(&manifest());
        lb.run(RgbView::new(256, 256, &px).unwrap()).unwrap();
        assert_eq!(lb.canvas(), &px[..]);
        let mut out = vec![0i32; lb.tensor_len()];
        lb.write_i32(&mut out);
        assert!(out.iter().zip(&px).all(|(a, b)| *a == i32::from(*b)));
    }

    #[test]
    fn pads_around_a_flat_frame() {
        let px = vec![200u8; 100 * 50 * 3];
        let mut lb = Letterbox::new(&manifest());
        let g = lb.run(RgbView::new(100, 50, &px).unwrap()).unwrap();
        assert_eq!((g.nw, g.nh, g.px, g.py), (256, 128, 0, 64));
        let c = lb.canvas();
        let at = |x: usize, y: usize| c[(y * 256 + x) * 3];
        assert_eq!(at(10, 63), 0);
        assert_eq!(at(10, 64), 200);
        assert_eq!(at(255, 191), 200);
        assert_eq!(at(10, 192), 0);
        // A second, smaller frame repaints the padding.
        let small = vec![90u8; 50 * 100 * 3];
        let g = lb.run(RgbView::new(50, 100, &small).unwrap()).unwrap();
        assert_eq!((g.nw, g.nh, g.px, g.py), (128, 256, 64, 0));
        let c = lb.canvas();
        assert_eq!(c[(10 * 256 + 10) * 3], 0);
        assert_eq!(c[(10 * 256 + 100) * 3], 90);
    }

    #[test]
    fn layouts_and_channel_orders() {
        let mut m = manifest();
        m.model.layout = TensorLayout::Nchw;
        m.model.channels = ChannelOrder::Bgr;
        m.model.value_range = [0.0, 1.0];
        m.model.mean = [0.5, 0.5, 0.5];
        m.model.std = [0.5, 0.5, 0.5];
        let px: Vec<u8> = [255u8, 0, 51].repeat(256 * 256);
        let mut lb = Letterbox::new(&m);
        lb.run(RgbView::new(256, 256, &px).unwrap()).unwrap();
        let mut out = vec![0f32; lb.tensor_len()];
        lb.write_f32(&mut out);
        let plane = 256 * 256;
        // Channel 0 is blue (51 → 0.2 → -0.6), channel 2 is red (255 → 1.0).
        assert!((out[0] + 0.6).abs() < 1e-5, "{}", out[0]);
        assert!((out[plane] + 1.0).abs() < 1e-6);
        assert!((out[2 * plane] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut lb = Letterbox::new(&manifest());
        let px = [0u8; 11];
        let view = RgbView {
            width: 2,
            height: 2,
            pixels: &px,
        };
        assert!(matches!(
            lb.run(view),
            Err(PreprocessError::BadPixels { .. })
        ));
    }
}
