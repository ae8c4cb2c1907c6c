//! Posture and direction of one person, from its box and keypoints in image pixels (y down).
//!
//! The rules are the model card's ("How clipsight reads this model", steps 5–9) with the
//! manifest's `[posture]` thresholds: the torso angle from the hip midpoint to the shoulder
//! midpoint says lying; the thigh angles, or failing them how far below the hips the legs
//! reach, say standing or sitting; without a torso, a wide box says lying. Direction is the
//! box centre's third of the frame.

use serde::{Deserialize, Serialize};

use super::manifest::{PersonManifest, PostureThresholds};
use super::Keypoint;

/// How a person holds their body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Posture {
    /// Upright torso, straight thighs (or legs reaching well below the hips).
    Standing,
    /// Upright torso, bent thighs.
    Sitting,
    /// Torso far from upright, or (without a torso) a wide box.
    Lying,
    /// Not enough visible keypoints to tell.
    #[default]
    Unknown,
}

impl Posture {
    /// The lowercase name (`"standing"`, `"sitting"`, `"lying"`, `"unknown"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Posture::Standing => "standing",
            Posture::Sitting => "sitting",
            Posture::Lying => "lying",
            Posture::Unknown => "unknown",
        }
    }
}

/// Where a person is, for the wearable: the third of the frame holding the box centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The left third.
    Left,
    /// The middle third.
    #[default]
    Ahead,
    /// The right third.
    Right,
}

impl Direction {
    /// The lowercase name (`"left"`, `"ahead"`, `"right"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Left => "left",
            Direction::Ahead => "ahead",
            Direction::Right => "right",
        }
    }

    /// The third of a `width`-pixel frame holding the box `[x0, y0, x1, y1]`'s centre.
    pub fn of_box(bbox: &[f32; 4], width: u32) -> Direction {
        let c = (bbox[0] + bbox[2]) / 2.0 / width.max(1) as f32;
        if c < 1.0 / 3.0 {
            Direction::Left
        } else if c > 2.0 / 3.0 {
            Direction::Right
        } else {
            Direction::Ahead
        }
    }
}

/// Indices of the keypoints the rules read, resolved from `[keypoints].names`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joints {
    shoulders: [usize; 2],
    hips: [usize; 2],
    knees: [usize; 2],
    ankles: [usize; 2],
}

impl Joints {
    /// The indices by name; `None` when the manifest lacks one (validation refuses that).
    pub(crate) fn of(m: &PersonManifest) -> Option<Joints> {
        let i = |name: &str| m.keypoint_index(name);
        Some(Joints {
            shoulders: [i("left_shoulder")?, i("right_shoulder")?],
            hips: [i("left_hip")?, i("right_hip")?],
            knees: [i("left_knee")?, i("right_knee")?],
            ankles: [i("left_ankle")?, i("right_ankle")?],
        })
    }
}

/// The measurements the posture rules read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Features {
    /// Box width / height.
    pub aspect: f32,
    /// Degrees of the hip-mid → shoulder-mid vector from straight up (0 upright, 90
    /// horizontal, 180 upside down); `None` without both midpoints.
    pub torso_angle: Option<f32>,
    /// Mean degrees of the visible hip → knee vectors from straight down.
    pub thigh_angle: Option<f32>,
    /// How far the lowest visible knee/ankle is below the hip midpoint, in torso lengths.
    pub leg_extent: Option<f32>,
}

/// The mean position of the visible ones of a left/right pair.
fn midpoint(kps: &[Keypoint], pair: [usize; 2], min_score: f32) -> Option<(f32, f32)> {
    let (mut x, mut y, mut n) = (0.0, 0.0, 0.0);
    for &i in &pair {
        let k = kps.get(i)?;
        if k.score >= min_score {
            x += k.x;
            y += k.y;
            n += 1.0;
        }
    }
    (n > 0.0).then(|| (x / n, y / n))
}

/// Measures a person (box `[x0, y0, x1, y1]` and keypoints in image pixels).
pub(crate) fn features(
    bbox: &[f32; 4],
    kps: &[Keypoint],
    joints: &Joints,
    keypoint_score: f32,
) -> Features {
    let visible = |i: usize| kps.get(i).filter(|k| k.score >= keypoint_score);
    let bw = (bbox[2] - bbox[0]).max(1e-3);
    let bh = (bbox[3] - bbox[1]).max(1e-3);
    let mut f = Features {
        aspect: bw / bh,
        ..Features::default()
    };
    let shoulder = midpoint(kps, joints.shoulders, keypoint_score);
    let hip = midpoint(kps, joints.hips, keypoint_score);
    if let (Some(sh), Some(hip)) = (shoulder, hip) {
        let (vx, vy) = (sh.0 - hip.0, sh.1 - hip.1);
        let torso = vx.hypot(vy);
        if torso > 0.0 {
            f.torso_angle = Some(vx.abs().atan2(-vy).to_degrees());
            let low = joints
                .knees
                .iter()
                .chain(&joints.ankles)
                .filter_map(|&i| visible(i))
                .map(|k| k.y)
                .fold(None, |m: Option<f32>, y| Some(m.map_or(y, |m| m.max(y))));
            f.leg_extent = low.map(|y| (y - hip.1) / torso);
        }
    }
    let (mut sum, mut n) = (0.0, 0.0);
    for (&h, &k) in joints.hips.iter().zip(&joints.knees) {
        if let (Some(h), Some(k)) = (visible(h), visible(k)) {
            let (dx, dy) = (k.x - h.x, k.y - h.y);
            if dx.hypot(dy) > 0.0 {
                sum += dx.abs().atan2(dy).to_degrees();
                n += 1.0;
            }
        }
    }
    if n > 0.0 {
        f.thigh_angle = Some(sum / n);
    }
    f
}

/// The card's posture rule, first match: torso known → lying if tilted, else thighs →
/// standing/sitting, else leg extent → standing, else unknown; torso unknown → lying if the box
/// is wide, else unknown.
pub fn posture_of(f: &Features, th: &PostureThresholds) -> Posture {
    match f.torso_angle {
        Some(angle) if angle >= th.lying_torso_angle_deg => Posture::Lying,
        Some(_) => match (f.thigh_angle, f.leg_extent) {
            (Some(thigh), _) if thigh < th.standing_thigh_angle_deg => Posture::Standing,
            (Some(_), _) => Posture::Sitting,
            (None, Some(ext)) if ext >= th.standing_leg_extent => Posture::Standing,
            _ => Posture::Unknown,
        },
        None if f.aspect >= th.lying_box_aspect => Posture::Lying,
        None => Posture::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_by_thirds() {
        assert_eq!(
            Direction::of_box(&[0.0, 0.0, 60.0, 10.0], 300),
            Direction::Left
        );
        assert_eq!(
            Direction::of_box(&[100.0, 0.0, 200.0, 10.0], 300),
            Direction::Ahead
        );
        assert_eq!(
            Direction::of_box(&[250.0, 0.0, 300.0, 10.0], 300),
            Direction::Right
        );
    }

    #[test]
    fn names_serialize_lowercase() {
        assert_eq!(serde_json::to_string(&Posture::Lying).unwrap(), "\"lying\"");
        assert_eq!(
            serde_json::to_string(&Direction::Ahead).unwrap(),
            "\"ahead\""
        );
        for p in [
            Posture::Standing,
            Posture::Sitting,
            Posture::Lying,
            Posture::Unknown,
        ] {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
    }

    #[test]
    fn rules_in_order() {
        let th = PostureThresholds {
            lying_torso_angle_deg: 40.0,
            lying_box_aspect: 1.5,
            standing_leg_extent: 0.9,
            standing_thigh_angle_deg: 45.0,
        };
        let f = |torso, thigh, ext, aspect| Features {
            aspect,
            torso_angle: torso,
            thigh_angle: thigh,
            leg_extent: ext,
        };
        assert_eq!(
            posture_of(&f(Some(40.0), Some(0.0), None, 0.5), &th),
            Posture::Lying
        );
        assert_eq!(
            posture_of(&f(Some(170.0), None, None, 0.5), &th),
            Posture::Lying
        );
        assert_eq!(
            posture_of(&f(Some(10.0), Some(44.0), None, 3.0), &th),
            Posture::Standing
        );
        assert_eq!(
            posture_of(&f(Some(10.0), Some(45.0), Some(2.0), 0.5), &th),
            Posture::Sitting
        );
        assert_eq!(
            posture_of(&f(Some(10.0), None, Some(0.9), 0.5), &th),
            Posture::Standing
        );
        assert_eq!(
            posture_of(&f(Some(10.0), None, Some(0.5), 0.5), &th),
            Posture::Unknown
        );
        assert_eq!(
            posture_of(&f(None, Some(80.0), None, 1.5), &th),
            Posture::Lying
        );
        assert_eq!(posture_of(&f(None, None, None, 1.4), &th), Posture::Unknown);
    }
}
