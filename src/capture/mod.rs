//! Capture: where frames come from.
//!
//! Output: [`Frame`]s (RGB8, a sequence number and a timestamp in seconds on the source's own
//! clock). Sources sit behind one small trait, [`FrameSource`]:
//! - [`FolderSource`] replays an image folder in file-name order at a given rate (the demo
//!   and test source); a file that does not decode is reported as a bad frame and skipped.
//! - [`Reconnecting`] wraps a [`CameraDevice`] (the real one is `nokhwa::NokhwaCamera`),
//!   reading it on its own thread under a deadline, reopening it with exponential backoff
//!   when it is unplugged or stalls, and reporting [`SourceEvent`]s so the user can be told.
//!
//! Failures are [`CaptureError`]s; none of them ends the run except the end of a folder.

pub mod decode;
#[cfg(all(feature = "camera", target_os = "linux"))]
pub mod nokhwa;
pub mod reconnect;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::capture::decode::{decode_file, DecodeLimits};
use crate::types::Frame;

pub use reconnect::{Backoff, CameraDevice, RealSleeper, Reconnecting, Sleeper};

/// What `--source` (or `source` in the config) names: a camera or an image folder. Parsed
/// once, here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A V4L2 camera by index (`camera`, `camera:N`, `/dev/videoN`).
    Camera(u32),
    /// A folder of images replayed in file-name order.
    Folder(PathBuf),
}

impl SourceSpec {
    /// Parses a source name; a malformed camera name is an error that quotes it.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        let number = |n: &str, what: &str| {
            n.parse::<u32>()
                .map(SourceSpec::Camera)
                .map_err(|_| format!("source {s:?}: bad {what}"))
        };
        if s == "camera" {
            Ok(SourceSpec::Camera(0))
        } else if let Some(n) = s.strip_prefix("camera:") {
            number(n, "camera number")
        } else if let Some(n) = s.strip_prefix("/dev/video") {
            number(n, "device")
        } else {
            Ok(SourceSpec::Folder(PathBuf::from(s)))
        }
    }
}

/// Why a frame source could not deliver a frame.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// One frame was unreadable; the source goes on.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// The device is gone (unplugged, I/O error); it may come back.
    #[error("camera disconnected: {0}")]
    Disconnected(String),
    /// The device has not delivered a frame for too long.
    #[error("camera stalled: no frame for {0:.1?}")]
    Stalled(Duration),
    /// The source cannot start at all.
    #[error("{0}")]
    Open(String),
}

/// What a source tells the pipeline besides frames.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// The camera went away (first failure of a streak).
    Lost(String),
    /// The camera is back after a loss.
    Back,
}

/// A source of frames. `next` blocks until a frame is ready, the source ends (`Ok(None)`),
/// or something went wrong.
pub trait FrameSource: Send {
    /// The next frame; `Ok(None)` when the source has ended.
    fn next(&mut self) -> Result<Option<Frame>, CaptureError>;
    /// A short description for logs ("folder demo/ at 5 fps", "camera /dev/video0 640×480 MJPG").
    fn describe(&self) -> String;
    /// Events since the last call (camera lost/back). Sources that cannot lose a device
    /// return none.
    fn take_events(&mut self) -> Vec<SourceEvent> {
        Vec::new()
    }
}

/// File extensions a folder source replays.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

/// The files of `dir` with an image extension ([`IMAGE_EXTENSIONS`]), in file-name order.
pub fn image_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Replays the images of a folder in file-name order, paced at `fps` on a real-time clock.
pub struct FolderSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    fps: f64,
    start: Option<Instant>,
    limits: DecodeLimits,
}

impl FolderSource {
    /// Lists the folder's images. `fps` must be positive.
    pub fn open(dir: &Path, fps: f64, limits: DecodeLimits) -> Result<Self, CaptureError> {
        if !(fps.is_finite() && fps > 0.0) {
            return Err(CaptureError::Open(format!(
                "fps must be positive, got {fps}"
            )));
        }
        let files = image_files(dir).map_err(|e| {
            CaptureError::Open(format!("{}: cannot read the folder: {e}", dir.display()))
        })?;
        if files.is_empty() {
            return Err(CaptureError::Open(format!(
                "{}: no images in the folder",
                dir.display()
            )));
        }
        Ok(FolderSource {
            dir: dir.to_path_buf(),
            files,
            next: 0,
            fps,
            start: None,
            limits,
        })
    }

    /// How many image files the folder holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the folder holds no image files (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for FolderSource {
    fn next(&mut self) -> Result<Option<Frame>, CaptureError> {
        let Some(path) = self.files.get(self.next).cloned() else {
            return Ok(None);
        };
        let seq = self.next as u64;
        self.next += 1;
        let t = seq as f64 / self.fps;
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(t);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        match decode_file(&path, self.limits) {
            Ok(image) => Ok(Some(Frame { seq, t, image })),
            Err(e) => Err(CaptureError::BadFrame(e.to_string())),
        }
    }

    fn describe(&self) -> String {
        format!(
            "folder {} ({} images at {} fps)",
            self.dir.display(),
            self.files.len(),
            self.fps
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    #[test]
    fn folder_replays_in_name_order_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.png", "a.png"] {
            RgbImage::new(3, 3).save(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("c.jpg"), b"not a jpeg").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let mut src = FolderSource::open(dir.path(), 1000.0, DecodeLimits::default()).unwrap();
        assert_eq!(src.len(), 3);
        let a = src.next().unwrap().unwrap();
        let b = src.next().unwrap().unwrap();
        assert_eq!((a.seq, b.seq), (0, 1));
        assert!((b.t - 0.001).abs() < 1e-9);
        let err = src.next().unwrap_err().to_string();
        assert!(err.contains("c.jpg"), "{err}");
        assert!(src.next().unwrap().is_none());
        assert!(FolderSource::open(dir.path(), 0.0, DecodeLimits::default()).is_err());
    }
}
