//! Capture: where frames come from.
//!
//! Output: [`Frame`]s (RGB8, a sequence number and a timestamp in seconds on the source's own
//! clock). Sources sit behind one small trait, [`FrameSource`]:
//! - [`FolderSource`] replays an image folder in file-name order at a given rate (the demo
//!   and test source); a file that does not decode is reported as a bad frame and skipped.
//! - [`Reconnecting`] wraps a [`CameraDevice`] (the real one is
//!   `camera::NokhwaCamera`), reopening it with exponential backoff when it is unplugged or
//!   stalls, and reporting [`SourceEvent`]s so the user can be told.
//!
//! Failures are [`CaptureError`]s; none of them ends the run except the end of a folder.

pub mod decode;
#[cfg(all(feature = "camera", target_os = "linux"))]
pub mod nokhwa;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::capture::decode::{decode_file, DecodeError, DecodeLimits};
use crate::types::Frame;

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
            Err(e @ DecodeError::Io { .. }) | Err(e @ DecodeError::Directory { .. }) => {
                Err(CaptureError::BadFrame(e.to_string()))
            }
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

/// An openable camera: the hardware edge that [`Reconnecting`] drives.
pub trait CameraDevice: Send {
    /// Opens the device and starts streaming; returns a description of the format the
    /// device actually negotiated.
    fn open(&mut self) -> Result<String, CaptureError>;
    /// Blocks for the next frame's pixels (RGB8) and size.
    fn read(&mut self) -> Result<RgbImage, CaptureError>;
    /// Stops streaming and releases the device.
    fn close(&mut self);
}

/// Reconnect timing for a camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay before reopening a lost camera (default 250 ms).
    pub initial: Duration,
    /// The delay doubles after each failed reopen up to this cap (default 5 s).
    pub max: Duration,
    /// A camera that delivers nothing for this long is treated as lost.
    pub stall: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            stall: Duration::from_secs(3),
        }
    }
}

/// Something that sleeps: real time in service, recorded time in tests.
pub trait Sleeper: Send {
    /// Sleeps for `d` (or records it).
    fn sleep(&mut self, d: Duration);
}

/// Sleeps on the real clock.
pub struct RealSleeper;

impl Sleeper for RealSleeper {
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A camera that reopens itself with exponential backoff and reports loss and return.
pub struct Reconnecting<D: CameraDevice, S: Sleeper> {
    device: D,
    sleeper: S,
    backoff: Backoff,
    open: bool,
    lost: bool,
    delay: Duration,
    start: Instant,
    seq: u64,
    events: Vec<SourceEvent>,
    format: String,
    /// Give up (end the source) after this many failed opens in a row; `None` never.
    max_attempts: Option<u32>,
    attempts: u32,
}

impl<D: CameraDevice, S: Sleeper> Reconnecting<D, S> {
    /// Wraps a camera that is not open yet; it is opened on the first `next`.
    pub fn new(device: D, sleeper: S, backoff: Backoff) -> Self {
        Reconnecting {
            device,
            sleeper,
            backoff,
            open: false,
            lost: false,
            delay: backoff.initial,
            start: Instant::now(),
            seq: 0,
            events: Vec::new(),
            format: String::new(),
            max_attempts: None,
            attempts: 0,
        }
    }

    /// Ends the source after `n` failed opens in a row (for tests and one-shot runs).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// The delays slept so far are the sleeper's business; this is the next one.
    pub fn next_delay(&self) -> Duration {
        self.delay
    }

    fn lose(&mut self, why: String) {
        self.device.close();
        self.open = false;
        if !self.lost {
            log::warn!("camera lost: {why}");
            self.lost = true;
            self.events.push(SourceEvent::Lost(why));
        }
    }
}

impl<D: CameraDevice, S: Sleeper> FrameSource for Reconnecting<D, S> {
    fn next(&mut self) -> Result<Option<Frame>, CaptureError> {
        loop {
            if !self.open {
                match self.device.open() {
                    Ok(format) => {
                        log::info!("camera opened: {format}");
                        self.format = format;
                        self.open = true;
                        self.attempts = 0;
                        self.delay = self.backoff.initial;
                    }
                    Err(e) => {
                        self.attempts += 1;
                        self.lose(e.to_string());
                        if self.max_attempts.is_some_and(|m| self.attempts >= m) {
                            return Err(CaptureError::Open(format!(
                                "camera did not come back after {} attempts: {e}",
                                self.attempts
                            )));
                        }
                        log::debug!("camera reopen failed ({e}); retrying in {:?}", self.delay);
                        self.sleeper.sleep(self.delay);
                        self.delay = (self.delay * 2).min(self.backoff.max);
                        continue;
                    }
                }
            }
            match self.device.read() {
                Ok(image) => {
                    if self.lost {
                        log::warn!("camera back");
                        self.lost = false;
                        self.events.push(SourceEvent::Back);
                    }
                    let seq = self.seq;
                    self.seq += 1;
                    return Ok(Some(Frame {
                        seq,
                        t: self.start.elapsed().as_secs_f64(),
                        image,
                    }));
                }
                Err(CaptureError::BadFrame(e)) => return Err(CaptureError::BadFrame(e)),
                Err(e) => self.lose(e.to_string()),
            }
        }
    }

    fn describe(&self) -> String {
        if self.format.is_empty() {
            "camera (not open yet)".to_string()
        } else {
            format!("camera {}", self.format)
        }
    }

    fn take_events(&mut self) -> Vec<SourceEvent> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted camera: each open and read takes the next scripted outcome.
    struct FakeCamera {
        opens: VecDeque<bool>,
        reads: VecDeque<Result<(), &'static str>>,
        closes: usize,
    }

    impl CameraDevice for FakeCamera {
        fn open(&mut self) -> Result<String, CaptureError> {
            match self.opens.pop_front() {
                Some(true) => Ok("fake 4×2 RGB3 @ 30 fps".into()),
                _ => Err(CaptureError::Open("no such device".into())),
            }
        }
        fn read(&mut self) -> Result<RgbImage, CaptureError> {
            match self.reads.pop_front() {
                Some(Ok(())) => Ok(RgbImage::new(4, 2)),
                Some(Err("stall")) => Err(CaptureError::Stalled(Duration::from_secs(3))),
                Some(Err("bad")) => Err(CaptureError::BadFrame("corrupt MJPG".into())),
                _ => Err(CaptureError::Disconnected("unplugged".into())),
            }
        }
        fn close(&mut self) {
            self.closes += 1;
        }
    }

    #[derive(Default)]
    struct Recorder(Vec<Duration>);
    impl Sleeper for &mut Recorder {
        fn sleep(&mut self, d: Duration) {
            self.0.push(d);
        }
    }

    #[test]
    fn reconnects_with_exponential_backoff_and_reports_loss_once() {
        let cam = FakeCamera {
            // first open works, then 4 failed reopens, then success
            opens: [true, false, false, false, false, true].into(),
            reads: [Ok(()), Err("unplugged"), Ok(()), Ok(())].into(),
            closes: 0,
        };
        let mut rec = Recorder::default();
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            stall: Duration::from_secs(1),
        };
        let mut src = Reconnecting::new(cam, &mut rec, backoff);
        assert_eq!(src.next().unwrap().unwrap().seq, 0);
        assert!(src.take_events().is_empty());
        // The read fails; four reopen attempts fail with growing delays; then it is back.
        assert_eq!(src.next().unwrap().unwrap().seq, 1);
        let events = src.take_events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(events[0], SourceEvent::Lost(_)));
        assert_eq!(events[1], SourceEvent::Back);
        assert_eq!(src.next().unwrap().unwrap().seq, 2);
        drop(src);
        let ms: Vec<u128> = rec.0.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 500]);
    }

    #[test]
    fn a_stall_counts_as_a_loss_and_bad_frames_pass_through() {
        let cam = FakeCamera {
            opens: [true, true].into(),
            reads: [Err("bad"), Err("stall"), Ok(())].into(),
            closes: 0,
        };
        let mut rec = Recorder::default();
        let mut src = Reconnecting::new(cam, &mut rec, Backoff::default());
        assert!(matches!(src.next(), Err(CaptureError::BadFrame(_))));
        assert!(src.next().unwrap().is_some());
        let events = src.take_events();
        assert!(matches!(&events[0], SourceEvent::Lost(why) if why.contains("stalled")));
        assert_eq!(events[1], SourceEvent::Back);
    }

    #[test]
    fn gives_up_after_max_attempts_when_asked() {
        let cam = FakeCamera {
            opens: VecDeque::new(),
            reads: VecDeque::new(),
            closes: 0,
        };
        let mut rec = Recorder::default();
        let mut src = Reconnecting::new(cam, &mut rec, Backoff::default()).with_max_attempts(3);
        let err = src.next().unwrap_err().to_string();
        assert!(err.contains("3 attempts"), "{err}");
    }

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
