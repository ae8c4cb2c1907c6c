//! A camera that comes back: reads under a deadline, reopening with exponential backoff.
//!
//! A [`CameraDevice`] is the hardware edge (open, a blocking read, close). [`Reconnecting`]
//! runs each device on a reader thread of its own and waits for every open and read at most
//! [`Backoff::stall`]. A device that misses the deadline (a hung USB camera: a brown-out, a
//! loose cable, a UVC firmware stall) is abandoned to its thread, which ends and closes it
//! when the blocked call returns, and a fresh device from the factory is opened after the
//! backoff. A failed open or read closes and reopens the same device. Loss and return are
//! reported once each as [`SourceEvent`]s.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use image::RgbImage;

use super::{CaptureError, FrameSource, SourceEvent};
use crate::types::Frame;

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
    /// An open or a read that takes longer than this is a stalled camera (default 3 s): the
    /// device is dropped and a fresh one opened.
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
#[derive(Debug)]
pub struct RealSleeper;

impl Sleeper for RealSleeper {
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

enum Request {
    Open,
    Read,
}

enum Reply {
    Opened(Result<String, CaptureError>),
    Read(Result<RgbImage, CaptureError>),
}

/// One device on its reader thread. Dropping it closes the request channel: the thread ends
/// once its current call (if any) returns, closing the device on the way out. Nothing waits
/// for a thread stuck in a call.
struct Reader {
    requests: Sender<Request>,
    replies: Receiver<Reply>,
}

impl Reader {
    fn spawn<D: CameraDevice + 'static>(mut device: D) -> Result<Reader, CaptureError> {
        let (requests, rx) = crossbeam_channel::bounded::<Request>(1);
        let (tx, replies) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("camera-reader".into())
            .spawn(move || {
                for request in rx {
                    let reply = match request {
                        Request::Open => Reply::Opened(device.open()),
                        Request::Read => Reply::Read(device.read()),
                    };
                    if tx.send(reply).is_err() {
                        break;
                    }
                }
                device.close();
            })
            .map_err(|e| CaptureError::Open(format!("cannot start the camera reader: {e}")))?;
        Ok(Reader { requests, replies })
    }

    /// Asks for one call and waits for its reply at most `deadline`; `None`: it is late.
    fn call(&self, request: Request, deadline: Duration) -> Option<Reply> {
        self.requests.send(request).ok()?;
        self.replies.recv_timeout(deadline).ok()
    }
}

/// A camera that reads under a deadline, reopens itself with exponential backoff and
/// reports loss and return. `make` builds a fresh device: the first one, and one after each
/// stall (the stalled one stays with its thread).
pub struct Reconnecting<D: CameraDevice, S: Sleeper> {
    make: Box<dyn FnMut() -> D + Send>,
    reader: Option<Reader>,
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

impl<D: CameraDevice + 'static, S: Sleeper> Reconnecting<D, S> {
    /// A camera built by `make`, not open yet; it is opened on the first `next`.
    pub fn new(make: impl FnMut() -> D + Send + 'static, sleeper: S, backoff: Backoff) -> Self {
        Reconnecting {
            make: Box::new(make),
            reader: None,
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

    /// The wait before the next reopen attempt.
    pub fn next_delay(&self) -> Duration {
        self.delay
    }

    fn lose(&mut self, why: String) {
        self.open = false;
        if !self.lost {
            log::warn!("camera lost: {why}");
            self.lost = true;
            self.events.push(SourceEvent::Lost(why));
        }
    }

    /// The device missed its deadline: leave it to its thread and start over with a new one.
    fn stalled(&mut self) {
        // Dropped, not joined: its thread ends by itself when the blocked call returns.
        self.reader = None;
        self.lose(CaptureError::Stalled(self.backoff.stall).to_string());
    }

    /// After a failed open: counts it, waits the backoff, or gives up.
    fn open_failed(&mut self, e: String) -> Result<(), CaptureError> {
        self.attempts += 1;
        self.lose(e.clone());
        if self.max_attempts.is_some_and(|m| self.attempts >= m) {
            return Err(CaptureError::Open(format!(
                "camera did not come back after {} attempts: {e}",
                self.attempts
            )));
        }
        log::debug!("camera reopen failed ({e}); retrying in {:?}", self.delay);
        self.sleeper.sleep(self.delay);
        self.delay = (self.delay * 2).min(self.backoff.max);
        Ok(())
    }

    fn try_open(&mut self) -> Result<(), CaptureError> {
        let reader = match self.reader.take() {
            Some(r) => r,
            None => Reader::spawn((self.make)())?,
        };
        match reader.call(Request::Open, self.backoff.stall) {
            Some(Reply::Opened(Ok(format))) => {
                log::info!("camera opened: {format}");
                self.reader = Some(reader);
                self.format = format;
                self.open = true;
                self.attempts = 0;
                self.delay = self.backoff.initial;
                Ok(())
            }
            Some(Reply::Opened(Err(e))) => {
                self.reader = Some(reader);
                self.open_failed(e.to_string())
            }
            _ => {
                drop(reader);
                self.open_failed(CaptureError::Stalled(self.backoff.stall).to_string())
            }
        }
    }
}

impl<D: CameraDevice + 'static, S: Sleeper> FrameSource for Reconnecting<D, S> {
    fn next(&mut self) -> Result<Option<Frame>, CaptureError> {
        loop {
            if !self.open {
                self.try_open()?;
                continue;
            }
            let Some(reader) = self.reader.as_ref() else {
                self.open = false;
                continue;
            };
            match reader.call(Request::Read, self.backoff.stall) {
                Some(Reply::Read(Ok(image))) => {
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
                Some(Reply::Read(Err(CaptureError::BadFrame(e)))) => {
                    return Err(CaptureError::BadFrame(e))
                }
                // A failed read: the same device is reopened (its open closes it first).
                Some(Reply::Read(Err(e))) => self.lose(e.to_string()),
                Some(Reply::Opened(_)) | None => self.stalled(),
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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A scripted camera: each open and read takes the next scripted outcome.
    struct FakeCamera {
        opens: VecDeque<bool>,
        reads: VecDeque<Result<(), &'static str>>,
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
        fn close(&mut self) {}
    }

    /// The factory of a source that has exactly one (scripted) device.
    fn once(cam: FakeCamera) -> impl FnMut() -> FakeCamera + Send + 'static {
        let mut cam = Some(cam);
        move || {
            cam.take().unwrap_or(FakeCamera {
                opens: VecDeque::new(),
                reads: VecDeque::new(),
            })
        }
    }

    #[derive(Default, Clone)]
    struct Sleeps(Arc<std::sync::Mutex<Vec<Duration>>>);
    impl Sleeper for Sleeps {
        fn sleep(&mut self, d: Duration) {
            self.0.lock().unwrap().push(d);
        }
    }

    #[test]
    fn reconnects_with_exponential_backoff_and_reports_loss_once() {
        let cam = FakeCamera {
            // first open works, then 4 failed reopens, then success
            opens: [true, false, false, false, false, true].into(),
            reads: [Ok(()), Err("unplugged"), Ok(()), Ok(())].into(),
        };
        let rec = Sleeps::default();
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            stall: Duration::from_secs(1),
        };
        let mut src = Reconnecting::new(once(cam), rec.clone(), backoff);
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
        let ms: Vec<u128> = rec
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(ms, vec![100, 200, 400, 500]);
    }

    #[test]
    fn a_stall_counts_as_a_loss_and_bad_frames_pass_through() {
        let cam = FakeCamera {
            opens: [true, true].into(),
            reads: [Err("bad"), Err("stall"), Ok(())].into(),
        };
        let mut src = Reconnecting::new(once(cam), Sleeps::default(), Backoff::default());
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
        };
        let mut src = Reconnecting::new(once(cam), Sleeps::default(), Backoff::default())
            .with_max_attempts(3);
        let err = src.next().unwrap_err().to_string();
        assert!(err.contains("3 attempts"), "{err}");
    }

    /// A camera whose reads hang while `hung` is set (as a stalled UVC device does) and
    /// return an error once it is cleared; it counts the devices alive.
    struct Hanging {
        hung: Arc<AtomicBool>,
        alive: Arc<AtomicUsize>,
    }

    impl Hanging {
        fn new(hung: &Arc<AtomicBool>, alive: &Arc<AtomicUsize>) -> Hanging {
            alive.fetch_add(1, Ordering::SeqCst);
            Hanging {
                hung: hung.clone(),
                alive: alive.clone(),
            }
        }
    }

    impl Drop for Hanging {
        fn drop(&mut self) {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl CameraDevice for Hanging {
        fn open(&mut self) -> Result<String, CaptureError> {
            Ok("hanging fake".into())
        }
        fn read(&mut self) -> Result<RgbImage, CaptureError> {
            if self.hung.load(Ordering::SeqCst) {
                while self.hung.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return Err(CaptureError::Disconnected("reset".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
            Ok(RgbImage::new(4, 2))
        }
        fn close(&mut self) {}
    }

    fn fds() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    /// A source of hanging cameras with `stall` as deadline, already delivering; the flag
    /// that hangs its reads, and the count of devices alive.
    fn hanging_source(
        stall_ms: u64,
    ) -> (
        Reconnecting<Hanging, Sleeps>,
        Arc<AtomicBool>,
        Arc<AtomicUsize>,
    ) {
        let (hung, alive) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (h, a) = (hung.clone(), alive.clone());
        let backoff = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(10),
            stall: Duration::from_millis(stall_ms),
        };
        let mut src = Reconnecting::new(move || Hanging::new(&h, &a), Sleeps::default(), backoff);
        assert!(src.next().unwrap().is_some());
        (src, hung, alive)
    }

    /// Hangs the camera now, and lets it recover after `ms` (on another thread).
    fn hang_for(hung: &Arc<AtomicBool>, ms: u64) -> std::thread::JoinHandle<()> {
        hung.store(true, Ordering::SeqCst);
        let hung = hung.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            hung.store(false, Ordering::SeqCst);
        })
    }

    /// Waits (at most 5 s) until at most `n` devices are alive; returns how many are.
    fn settle(alive: &AtomicUsize, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive.load(Ordering::SeqCst) > n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        alive.load(Ordering::SeqCst)
    }

    #[test]
    fn a_read_that_hangs_is_abandoned_after_the_deadline_and_a_fresh_device_opened() {
        let (mut src, hung, alive) = hanging_source(300);
        let t = Instant::now();
        // The deadline fires; the next device hangs too, until the camera recovers.
        let releaser = hang_for(&hung, 1000);
        assert!(src.next().unwrap().is_some());
        releaser.join().unwrap();
        let events = src.take_events();
        assert!(
            matches!(&events[0], SourceEvent::Lost(why) if why.contains("stalled")),
            "{events:?}"
        );
        assert_eq!(events.last(), Some(&SourceEvent::Back));
        assert!(t.elapsed() >= Duration::from_millis(1000));
        drop(src);
        // Every device, the stuck ones too, is closed and dropped once its read returns.
        assert_eq!(settle(&alive, 0), 0);
    }

    #[test]
    fn fifty_stalls_leak_no_thread_and_no_descriptor() {
        let (mut src, hung, alive) = hanging_source(30);
        // Other tests open files of their own meanwhile: allow for their noise (a leak of one
        // descriptor a cycle would be 50).
        let fds0 = fds();
        for _ in 0..50 {
            let releaser = hang_for(&hung, 60);
            assert!(src.next().unwrap().is_some());
            releaser.join().unwrap();
            let events = src.take_events();
            assert!(
                matches!(events.first(), Some(SourceEvent::Lost(_))),
                "{events:?}"
            );
            assert_eq!(events.last(), Some(&SourceEvent::Back));
        }
        // A reader thread owns its device until it ends: one device alive is one thread.
        assert_eq!(settle(&alive, 1), 1, "only the open device is alive");
        assert!(
            fds() <= fds0 + 24,
            "{fds0} descriptors before, {} after",
            fds()
        );
    }
}
