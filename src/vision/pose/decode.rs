//! Output rows → people: coordinates back to image pixels, candidate filter, greedy NMS, then
//! posture, direction, presence and the single-frame fall flag (model card steps 2–10).
//!
//! Everything about the row comes from `[output]` (offsets, value orders, row length); the
//! thresholds from `[person]` and `[posture]`. Buffers are the caller's and reused.

use super::letterbox::Geometry;
use super::manifest::{BoxField, KeypointField, PersonManifest};
use super::posture::{features, posture_of, Direction, Joints, Posture};
use super::{Keypoint, People, Person, MAX_KEYPOINTS};

/// Where each value sits in a row, resolved from `[output]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowLayout {
    /// Values per row.
    pub(crate) row_len: usize,
    /// Rows per frame.
    pub(crate) rows: usize,
    keypoints: usize,
    kp_offset: usize,
    kp_stride: usize,
    /// Offsets of y, x, score inside a keypoint's group.
    kp_yxs: [usize; 3],
    /// Indices of ymin, xmin, ymax, xmax in the row.
    box_yxyx: [usize; 4],
    score: usize,
}

impl RowLayout {
    pub(crate) fn of(m: &PersonManifest) -> RowLayout {
        let o = &m.output;
        let pos = |f: KeypointField| o.keypoint_order.iter().position(|&g| g == f).unwrap_or(0);
        let bpos =
            |f: BoxField| o.box_offset + o.box_order.iter().position(|&g| g == f).unwrap_or(0);
        RowLayout {
            row_len: o.shape[2],
            rows: o.shape[1],
            keypoints: m.keypoints.names.len().min(MAX_KEYPOINTS),
            kp_offset: o.keypoints_offset,
            kp_stride: o.keypoint_stride,
            kp_yxs: [
                pos(KeypointField::Y),
                pos(KeypointField::X),
                pos(KeypointField::Score),
            ],
            box_yxyx: [
                bpos(BoxField::Ymin),
                bpos(BoxField::Xmin),
                bpos(BoxField::Ymax),
                bpos(BoxField::Xmax),
            ],
            score: o.score_offset,
        }
    }
}

/// What decoding needs besides the rows: layout, thresholds, joint indices, input side.
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    pub(crate) layout: RowLayout,
    joints: Joints,
    size: f32,
    candidate_score: f32,
    presence_score: f32,
    keypoint_score: f32,
    nms_iou: f32,
    posture: super::manifest::PostureThresholds,
    /// Row indices of the candidates, best first (reused).
    order: Vec<usize>,
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes (0 when the union is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

impl Decoder {
    /// `None` when the manifest lacks a posture joint (validation refuses that earlier).
    pub(crate) fn new(m: &PersonManifest) -> Option<Decoder> {
        let layout = RowLayout::of(m);
        Some(Decoder {
            layout,
            joints: Joints::of(m)?,
            size: m.model.size as f32,
            candidate_score: m.person.candidate_score,
            presence_score: m.person.presence_score,
            keypoint_score: m.person.keypoint_score,
            nms_iou: m.person.nms_iou,
            posture: m.posture.clone(),
            order: Vec::with_capacity(layout.rows),
        })
    }

    /// Decodes `rows` (`rows × row_len` values) of a frame letterboxed as `g` into `people`.
    pub(crate) fn decode(&mut self, rows: &[f32], g: &Geometry, people: &mut People) {
        let l = self.layout;
        let row = |r: usize| &rows[r * l.row_len..(r + 1) * l.row_len];
        self.order.clear();
        self.order.extend(
            (0..l.rows.min(rows.len() / l.row_len.max(1)))
                .filter(|&r| row(r)[l.score] >= self.candidate_score),
        );
        // Best first; equal scores keep row order (as Python's stable sort does).
        self.order
            .sort_unstable_by(|&a, &b| row(b)[l.score].total_cmp(&row(a)[l.score]).then(a.cmp(&b)));
        people.persons.clear();
        people.fallen = false;
        people.width = g.width;
        people.height = g.height;
        let (w, h) = (g.width as f32, g.height as f32);
        let to_x = |x: f32| (x * self.size - g.px as f32) / g.sx;
        let to_y = |y: f32| (y * self.size - g.py as f32) / g.sy;
        for &r in &self.order {
            let v = row(r);
            let [ymin, xmin, ymax, xmax] = l.box_yxyx.map(|i| v[i]);
            let bbox = [
                to_x(xmin).clamp(0.0, w),
                to_y(ymin).clamp(0.0, h),
                to_x(xmax).clamp(0.0, w),
                to_y(ymax).clamp(0.0, h),
            ];
            if people
                .persons
                .iter()
                .any(|kept| iou(&bbox, &kept.bbox) > self.nms_iou)
            {
                continue;
            }
            let mut keypoints = [Keypoint::default(); MAX_KEYPOINTS];
            for (k, kp) in keypoints.iter_mut().enumerate().take(l.keypoints) {
                let at = l.kp_offset + k * l.kp_stride;
                *kp = Keypoint {
                    x: to_x(v[at + l.kp_yxs[1]]),
                    y: to_y(v[at + l.kp_yxs[0]]),
                    score: v[at + l.kp_yxs[2]],
                };
            }
            let score = v[l.score];
            let f = features(
                &bbox,
                &keypoints[..l.keypoints],
                &self.joints,
                self.keypoint_score,
            );
            let posture = posture_of(&f, &self.posture);
            let lying = posture == Posture::Lying;
            people.fallen |= lying;
            people.persons.push(Person {
                bbox,
                score,
                keypoints,
                keypoint_count: l.keypoints,
                features: f,
                posture,
                direction: Direction::of_box(&bbox, g.width),
                present: score >= self.presence_score || lying,
            });
        }
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

    /// A 256×256 frame (no scaling, no padding): normalized coordinates × 256 are pixels.
    fn square() -> Geometry {
        Geometry::new(256, 256, 256)
    }

    /// One row in the committed layout from pixel keypoints `(index, x, y)` (score 0.9; the
    /// others 0) and a pixel box `[x0, y0, x1, y1]`.
    fn row(score: f32, bbox: [f32; 4], kps: &[(usize, f32, f32)]) -> Vec<f32> {
        let mut r = vec![0f32; 56];
        for &(k, x, y) in kps {
            r[3 * k] = y / 256.0;
            r[3 * k + 1] = x / 256.0;
            r[3 * k + 2] = 0.9;
        }
        r[51] = bbox[1] / 256.0;
        r[52] = bbox[0] / 256.0;
        r[53] = bbox[3] / 256.0;
        r[54] = bbox[2] / 256.0;
        r[55] = score;
        r
    }

    fn frame(rows: &[Vec<f32>]) -> Vec<f32> {
        let mut out: Vec<f32> = rows.concat();
        out.resize(6 * 56, 0.0);
        out
    }

    fn decode(rows: &[Vec<f32>]) -> People {
        let m = manifest();
        let mut d = Decoder::new(&m).unwrap();
        let mut people = People::default();
        d.decode(&frame(rows), &square(), &mut people);
        people
    }

    // Keypoint indices of the committed manifest.
    const L_SH: usize = 5;
    const R_SH: usize = 6;
    const L_HIP: usize = 11;
    const R_HIP: usize = 12;
    const L_KNEE: usize = 13;
    const R_KNEE: usize = 14;
    const L_ANK: usize = 15;
    const R_ANK: usize = 16;

    #[test]
    fn a_horizontal_torso_is_lying_and_fallen() {
        let p = decode(&[row(
            0.2,
            [40.0, 100.0, 220.0, 150.0],
            &[
                (L_SH, 60.0, 120.0),
                (R_SH, 60.0, 130.0),
                (L_HIP, 130.0, 122.0),
                (R_HIP, 130.0, 132.0),
            ],
        )]);
        assert_eq!(p.persons().len(), 1);
        let q = &p.persons()[0];
        assert_eq!(q.posture, Posture::Lying);
        assert!((q.features.torso_angle.unwrap() - 88.4).abs() < 0.1);
        // Below presence_score (0.25) but lying above candidate_score: present, fallen.
        assert!(q.present);
        assert!(p.fallen());
        assert!(p.anyone());
    }

    #[test]
    fn vertical_torso_and_straight_thighs_are_standing() {
        let p = decode(&[row(
            0.8,
            [100.0, 20.0, 160.0, 240.0],
            &[
                (L_SH, 120.0, 60.0),
                (R_SH, 140.0, 60.0),
                (L_HIP, 122.0, 130.0),
                (R_HIP, 138.0, 130.0),
                (L_KNEE, 124.0, 180.0),
                (R_KNEE, 136.0, 180.0),
                (L_ANK, 124.0, 230.0),
                (R_ANK, 136.0, 230.0),
            ],
        )]);
        let q = &p.persons()[0];
        assert_eq!(q.posture, Posture::Standing);
        assert_eq!(q.direction, Direction::Ahead);
        assert!(q.present && !p.fallen());
        // Keypoints come back in pixels, in manifest order.
        assert_eq!(q.keypoints().len(), 17);
        let k = q.keypoints()[L_KNEE];
        assert!((k.x - 124.0).abs() < 1e-3 && (k.y - 180.0).abs() < 1e-3 && k.score == 0.9);
    }

    #[test]
    fn bent_thighs_are_sitting() {
        let p = decode(&[row(
            0.6,
            [20.0, 40.0, 120.0, 200.0],
            &[
                (L_SH, 50.0, 60.0),
                (R_SH, 70.0, 60.0),
                (L_HIP, 52.0, 130.0),
                (R_HIP, 68.0, 130.0),
                // Thighs forward, near horizontal.
                (L_KNEE, 100.0, 140.0),
                (R_KNEE, 110.0, 140.0),
            ],
        )]);
        let q = &p.persons()[0];
        assert_eq!(q.posture, Posture::Sitting);
        assert_eq!(q.direction, Direction::Left);
        assert!(!p.fallen());
    }

    #[test]
    fn leg_extent_without_thighs() {
        // Hips and ankles but no knees: ankles 1.4 torso lengths below the hips → standing.
        let p = decode(&[row(
            0.6,
            [180.0, 20.0, 230.0, 240.0],
            &[
                (L_SH, 200.0, 60.0),
                (L_HIP, 200.0, 130.0),
                (L_ANK, 200.0, 228.0),
            ],
        )]);
        assert_eq!(p.persons()[0].posture, Posture::Standing);
        assert_eq!(p.persons()[0].direction, Direction::Right);
        // Only shoulders and hips: unknown, present by score.
        let p = decode(&[row(
            0.6,
            [100.0, 20.0, 160.0, 240.0],
            &[(L_SH, 120.0, 60.0), (L_HIP, 122.0, 130.0)],
        )]);
        assert_eq!(p.persons()[0].posture, Posture::Unknown);
        assert!(p.persons()[0].present);
    }

    #[test]
    fn box_aspect_fallback_without_a_torso() {
        // No shoulders visible: a box 2× wider than tall is lying; a tall one is unknown.
        let wide = row(0.15, [20.0, 100.0, 220.0, 200.0], &[(L_HIP, 100.0, 150.0)]);
        let p = decode(&[wide]);
        assert_eq!(p.persons()[0].posture, Posture::Lying);
        assert!(p.fallen());
        let tall = row(0.15, [20.0, 10.0, 120.0, 200.0], &[(L_HIP, 100.0, 150.0)]);
        let p = decode(&[tall]);
        let q = &p.persons()[0];
        assert_eq!(q.posture, Posture::Unknown);
        // Below presence_score and not lying: kept as a candidate, not present.
        assert!(!q.present && !p.anyone() && !p.fallen());
        assert_eq!(p.present().count(), 0);
    }

    #[test]
    fn candidates_below_the_score_are_dropped() {
        let low = row(0.1, [20.0, 100.0, 220.0, 200.0], &[]);
        assert!(decode(&[low]).persons().is_empty());
    }

    #[test]
    fn nms_drops_a_duplicate_and_keeps_others() {
        let a = row(0.5, [10.0, 10.0, 100.0, 200.0], &[]);
        let dup = row(0.7, [12.0, 12.0, 102.0, 198.0], &[]);
        let other = row(0.4, [150.0, 10.0, 250.0, 200.0], &[]);
        let p = decode(&[a, dup, other]);
        let scores: Vec<f32> = p.persons().iter().map(|q| q.score).collect();
        assert_eq!(scores, vec![0.7, 0.4]);
    }

    #[test]
    fn coordinates_undo_the_letterbox_and_boxes_are_clipped() {
        // 333×500 portrait: nw = 170, px = 43, sx = sy = 0.512.
        let g = Geometry::new(333, 500, 256);
        let m = manifest();
        let mut d = Decoder::new(&m).unwrap();
        let mut r = vec![0f32; 56];
        // Box from the left pad (x = 20 < px) to the middle; nose at input (128, 128).
        r[52] = 20.0 / 256.0;
        r[51] = 0.0;
        r[54] = 128.0 / 256.0;
        r[53] = 1.0;
        r[0] = 0.5;
        r[1] = 0.5;
        r[55] = 0.9;
        let mut people = People::default();
        d.decode(&frame(&[r]), &g, &mut people);
        let q = &people.persons()[0];
        assert_eq!(q.bbox[0], 0.0);
        assert!((q.bbox[2] - (128.0 - 43.0) / g.sx).abs() < 1e-3);
        assert!((q.bbox[3] - 500.0).abs() < 1e-3);
        let nose = q.keypoints()[0];
        assert!((nose.x - 85.0 / g.sx).abs() < 1e-3);
        assert!((nose.y - 128.0 / g.sy).abs() < 1e-3);
        assert_eq!((people.width(), people.height()), (333, 500));
    }
}
