//! The V4L2/USB camera through nokhwa (cargo feature `camera`, Linux).
//!
//! Deliberately thin: it opens the device, asks for a format, logs the format the device
//! actually negotiated, and decodes each frame to RGB8. Everything around it (reconnect with
//! backoff, stall detection, loss and return announcements) lives in
//! [`crate::capture::Reconnecting`] and the pipeline, where it is tested with a fake device.

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::Camera;

use crate::capture::{CameraDevice, CaptureError};

/// What to ask the camera for; it may give something else, which is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraRequest {
    /// The V4L2 device number (`/dev/videoN`).
    pub index: u32,
    /// Requested frame width, in pixels.
    pub width: u32,
    /// Requested frame height, in pixels.
    pub height: u32,
    /// Requested frame rate, in frames per second.
    pub fps: u32,
}

/// A V4L2/USB camera read through nokhwa as MJPEG, decoded to RGB8.
pub struct NokhwaCamera {
    request: CameraRequest,
    camera: Option<Camera>,
}

// SAFETY-relevant note: nokhwa's `Camera` holds a V4L2 handle that is only ever used from
// the capture thread that owns this value; moving it between threads before use is sound
// for the V4L2 backend (a file descriptor and mmap'd buffers).
unsafe impl Send for NokhwaCamera {}

impl NokhwaCamera {
    /// A camera that is not opened until [`CameraDevice::open`].
    pub fn new(request: CameraRequest) -> Self {
        NokhwaCamera {
            request,
            camera: None,
        }
    }
}

impl CameraDevice for NokhwaCamera {
    fn open(&mut self) -> Result<String, CaptureError> {
        self.close();
        let r = &self.request;
        let wanted = CameraFormat::new(
            Resolution::new(r.width, r.height),
            FrameFormat::MJPEG,
            r.fps,
        );
        let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
        let mut camera = Camera::new(CameraIndex::Index(r.index), format)
            .map_err(|e| CaptureError::Open(format!("/dev/video{}: {e}", r.index)))?;
        camera
            .open_stream()
            .map_err(|e| CaptureError::Open(format!("/dev/video{}: {e}", r.index)))?;
        let got = camera.camera_format();
        let description = format!(
            "/dev/video{} \"{}\": negotiated {}×{} {} at {} fps (asked {}×{} MJPEG at {} fps)",
            r.index,
            camera.info().human_name(),
            got.width(),
            got.height(),
            got.format(),
            got.frame_rate(),
            r.width,
            r.height,
            r.fps
        );
        self.camera = Some(camera);
        Ok(description)
    }

    fn read(&mut self) -> Result<RgbImage, CaptureError> {
        let camera = self
            .camera
            .as_mut()
            .ok_or_else(|| CaptureError::Disconnected("not open".into()))?;
        let buffer = camera
            .frame()
            .map_err(|e| CaptureError::Disconnected(e.to_string()))?;
        buffer
            .decode_image::<RgbFormat>()
            .map_err(|e| CaptureError::BadFrame(e.to_string()))
    }

    fn close(&mut self) {
        if let Some(mut c) = self.camera.take() {
            let _ = c.stop_stream();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Backoff, FrameSource, RealSleeper, Reconnecting};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn missing() -> NokhwaCamera {
        NokhwaCamera::new(CameraRequest {
            index: 99,
            width: 640,
            height: 480,
            fps: 15,
        })
    }

    /// The real camera backend, counting its opens.
    struct Counting(NokhwaCamera, Arc<AtomicUsize>);

    impl CameraDevice for Counting {
        fn open(&mut self) -> Result<String, CaptureError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.open()
        }
        fn read(&mut self) -> Result<RgbImage, CaptureError> {
            self.0.read()
        }
        fn close(&mut self) {
            self.0.close();
        }
    }

    #[test]
    fn a_missing_device_is_named_and_retried_with_backoff_not_in_a_busy_loop() {
        let e = missing().open().unwrap_err().to_string();
        assert!(e.contains("/dev/video99"), "{e}");

        let opens = Arc::new(AtomicUsize::new(0));
        let counter = opens.clone();
        let backoff = Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            stall: Duration::from_secs(3),
        };
        let mut src = Reconnecting::new(
            move || Counting(missing(), counter.clone()),
            RealSleeper,
            backoff,
        );
        // It never gives up on its own: let it try in the background for 3 s.
        std::thread::spawn(move || src.next().map(|_| ()));
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        let n = opens.load(Ordering::SeqCst);
        // Opens at 0, 0.25, 0.75 and 1.75 s (the next at 3.75 s): four, give or take one.
        assert!((3..=5).contains(&n), "{n} opens in {:?}", start.elapsed());
    }
}
