//! Key presses from a Linux input device (evdev): a Bluetooth media remote, a headset key, a
//! GPIO button.
//!
//! Input: the device path (`/dev/input/by-id/…`; the service user needs read access, usually
//! the `input` group), read as raw `struct input_event` records, so a test can stand a file or
//! a FIFO in for the device. Output: the code of each key-down (not key-up, not auto-repeat),
//! passed to a callback. Failures: a missing or unplugged device is logged once and reopened
//! every `reopen`; the reader never panics and stops within [`POLL_MS`] of being asked to.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// How long one wait for input lasts, so a stop request is noticed.
pub const POLL_MS: u64 = 100;
/// `EV_KEY` from `linux/input-event-codes.h`.
const EV_KEY: u16 = 1;
/// Key-down value of an `EV_KEY` event (0 is up, 2 is auto-repeat).
const KEY_DOWN: i32 = 1;

/// The size of one `struct input_event` on this target (24 bytes on 64-bit Linux).
#[cfg(target_os = "linux")]
pub const INPUT_EVENT_BYTES: usize = std::mem::size_of::<libc::input_event>();
/// The size of one `struct input_event` off Linux: the 64-bit Linux layout, 24 bytes.
#[cfg(not(target_os = "linux"))]
pub const INPUT_EVENT_BYTES: usize = 24;

/// Key-down codes in a buffer of whole `input_event` records.
pub fn key_downs(buf: &[u8]) -> impl Iterator<Item = u16> + '_ {
    buf.chunks_exact(INPUT_EVENT_BYTES).filter_map(|ev| {
        // The time comes first; type, code and value are the last 8 bytes.
        let tail = &ev[INPUT_EVENT_BYTES - 8..];
        let kind = u16::from_ne_bytes([tail[0], tail[1]]);
        let code = u16::from_ne_bytes([tail[2], tail[3]]);
        let value = i32::from_ne_bytes([tail[4], tail[5], tail[6], tail[7]]);
        (kind == EV_KEY && value == KEY_DOWN).then_some(code)
    })
}

/// One `input_event` record (zero time), for tests and simulators.
pub fn encode_event(kind: u16, code: u16, value: i32) -> Vec<u8> {
    let mut v = vec![0u8; INPUT_EVENT_BYTES - 8];
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(&code.to_ne_bytes());
    v.extend_from_slice(&value.to_ne_bytes());
    v
}

/// A key-down event record, for tests.
pub fn key_down(code: u16) -> Vec<u8> {
    encode_event(EV_KEY, code, KEY_DOWN)
}

/// Reads key-downs from `path` until `stopped()` is true, calling `on_key` for each; `name`
/// says what the device is for in log lines ("home button", "input device").
pub fn watch_keys(
    path: &Path,
    name: &str,
    reopen: Duration,
    stopped: &dyn Fn() -> bool,
    on_key: &mut dyn FnMut(u16),
) {
    let mut reported = false;
    while !stopped() {
        match open(path) {
            Ok(file) => {
                log::info!("{name}: reading {}", path.display());
                reported = false;
                if read_keys(file, path, name, stopped, on_key) {
                    return;
                }
                log::warn!("{name}: {} went away; reopening", path.display());
            }
            Err(e) if !reported => {
                log::warn!(
                    "{name}: cannot open {} ({e}); retrying every {} s",
                    path.display(),
                    reopen.as_secs_f32()
                );
                reported = true;
            }
            Err(_) => {}
        }
        sleep_unless(reopen, stopped);
    }
}

/// Opens without blocking, so that neither the open nor a read can outlast a stop request.
fn open(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options.open(path)
}

/// Sleeps for `d` in [`POLL_MS`] steps, returning early once `stopped()` is true.
fn sleep_unless(d: Duration, stopped: &dyn Fn() -> bool) {
    let mut left = d;
    while !left.is_zero() && !stopped() {
        let step = left.min(Duration::from_millis(POLL_MS));
        std::thread::sleep(step);
        left -= step;
    }
}

/// Reads until the device fails (false) or a stop is asked for (true).
fn read_keys(
    mut file: File,
    path: &Path,
    name: &str,
    stopped: &dyn Fn() -> bool,
    on_key: &mut dyn FnMut(u16),
) -> bool {
    let mut buf = vec![0u8; INPUT_EVENT_BYTES * 64];
    let mut filled = 0usize;
    loop {
        if stopped() {
            return true;
        }
        match wait_readable(&file, path, name) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(()) => return false,
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(e) => {
                log::warn!("{name}: read {}: {e}", path.display());
                return false;
            }
        };
        filled += n;
        let whole = filled - filled % INPUT_EVENT_BYTES;
        key_downs(&buf[..whole]).for_each(&mut *on_key);
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// Waits up to [`POLL_MS`] for input: Ok(true) readable, Ok(false) nothing yet, Err gone.
#[cfg(unix)]
fn wait_readable(file: &File, path: &Path, name: &str) -> Result<bool, ()> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; the fd is owned by `file`.
    let r = unsafe { libc::poll(&mut pfd, 1, POLL_MS as libc::c_int) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        log::warn!("{name}: poll {}: {e}", path.display());
        return Err(());
    }
    if r == 0 {
        return Ok(false);
    }
    if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(());
    }
    Ok(true)
}

#[cfg(not(unix))]
fn wait_readable(_file: &File, _path: &Path, _name: &str) -> Result<bool, ()> {
    std::thread::sleep(Duration::from_millis(POLL_MS));
    Ok(true)
}

/// Makes a FIFO at `path` to stand in for an input device in tests.
#[cfg(test)]
pub(crate) fn make_fifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    type Reader = (
        Arc<AtomicBool>,
        crossbeam_channel::Receiver<u16>,
        std::thread::JoinHandle<()>,
    );

    /// `watch_keys` on `dev` on its own thread: its stop flag, the codes it reads, the thread.
    fn spawn_reader(dev: &Path) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        let (dev, flag) = (dev.to_path_buf(), stop.clone());
        let reader = std::thread::spawn(move || {
            watch_keys(
                &dev,
                "test device",
                Duration::from_millis(50),
                &|| flag.load(Ordering::Relaxed),
                &mut |code| tx.send(code).unwrap(),
            )
        });
        (stop, rx, reader)
    }

    #[test]
    fn key_downs_are_found_in_raw_events() {
        let mut buf = Vec::new();
        buf.extend(encode_event(4, 4, 30)); // EV_MSC scan code
        buf.extend(encode_event(EV_KEY, 28, 1)); // KEY_ENTER down
        buf.extend(encode_event(0, 0, 0)); // SYN
        buf.extend(encode_event(EV_KEY, 28, 2)); // repeat
        buf.extend(encode_event(EV_KEY, 28, 0)); // up
        buf.extend(encode_event(EV_KEY, 57, 1)); // KEY_SPACE down
        buf.extend(&encode_event(EV_KEY, 1, 1)[..10]); // a partial record is not read
        assert_eq!(key_downs(&buf).collect::<Vec<_>>(), vec![28, 57]);
    }

    /// A FIFO behaves like a device: reads block until a key comes, and the reader must still
    /// notice a stop while nothing is pressed. Records split across writes are put together.
    #[test]
    fn keys_from_a_fifo_and_a_stop_while_idle() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("event0");
        make_fifo(&dev);
        let (stop, rx, reader) = spawn_reader(&dev);
        let mut w = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
        let mut bytes = key_down(164);
        bytes.extend(encode_event(EV_KEY, 164, 0));
        bytes.extend(key_down(113));
        let (a, b) = bytes.split_at(INPUT_EVENT_BYTES + 5);
        std::io::Write::write_all(&mut w, a).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        std::io::Write::write_all(&mut w, b).unwrap();
        let got: Vec<u16> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, vec![164, 113]);
        // The writer stays open, so the reader is blocked waiting for input when asked to stop.
        let asked = Instant::now();
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        drop(w);
    }

    #[test]
    fn a_missing_device_is_retried_until_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("event7");
        let (stop, rx, reader) = spawn_reader(&dev);
        std::thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err());
        std::fs::write(&dev, key_down(28)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 28);
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }
}
