//! The "I am all right" button: a Linux input device (evdev), read on its own thread.
//!
//! Input: the event device named in `[home.button]` (raw `struct input_event` records; the
//! user needs read access, usually the `input` group). Output: a
//! [`HomeCommand::Cancel`] from [`CommandSource::Button`] on the monitor's command channel for
//! each press of a configured key (key-down only; presses within [`DEBOUNCE`] of the last one
//! are ignored). Failures: a missing or unplugged device is logged once and reopened every
//! [`REOPEN_WAIT`]; the thread never stops the monitor.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::home::config::ButtonConfig;
use crate::home::fall::CommandSource;
use crate::home::HomeCommand;

/// Presses closer together than this count once.
pub const DEBOUNCE: Duration = Duration::from_millis(1000);
/// Wait before reopening a device that is missing or went away.
pub const REOPEN_WAIT: Duration = Duration::from_secs(5);
/// How long one wait for input lasts, so a shutdown is noticed.
const POLL_MS: i32 = 200;
/// `EV_KEY` from `linux/input-event-codes.h`.
const EV_KEY: u16 = 1;
/// Key-down value of an `EV_KEY` event (0 is up, 2 is auto-repeat).
const KEY_DOWN: i32 = 1;

/// The size of one `struct input_event` on this target (24 bytes on 64-bit Linux).
#[cfg(target_os = "linux")]
pub const INPUT_EVENT_BYTES: usize = std::mem::size_of::<libc::input_event>();
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

/// The running reader.
#[derive(Debug)]
pub(crate) struct ButtonReader {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
}

impl ButtonReader {
    pub(crate) fn start(
        cfg: &ButtonConfig,
        commands: Sender<HomeCommand>,
    ) -> std::io::Result<ButtonReader> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("home-button".into())
            .spawn(move || {
                run(&cfg, &commands, &stop_rx);
                let _ = done_tx.send(());
            })?;
        Ok(ButtonReader {
            stop: stop_tx,
            thread: Some(thread),
            done: done_rx,
        })
    }

    pub(crate) fn shutdown(&mut self) {
        let _ = self.stop.try_send(());
        if let Some(thread) = self.thread.take() {
            if self
                .done
                .recv_timeout(Duration::from_millis(POLL_MS as u64 * 5))
                .is_ok()
            {
                let _ = thread.join();
            } else {
                log::warn!("home button thread did not stop in time; leaving it");
            }
        }
    }
}

impl Drop for ButtonReader {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn stopped(stop: &Receiver<()>, wait: Duration) -> bool {
    !matches!(
        stop.recv_timeout(wait),
        Err(crossbeam_channel::RecvTimeoutError::Timeout)
    )
}

fn run(cfg: &ButtonConfig, commands: &Sender<HomeCommand>, stop: &Receiver<()>) {
    let mut reported = false;
    let mut last_press: Option<Instant> = None;
    loop {
        match File::open(&cfg.device) {
            Ok(file) => {
                log::info!("home button: reading {}", cfg.device.display());
                reported = false;
                if read_presses(file, cfg, commands, stop, &mut last_press) {
                    return;
                }
                log::warn!("home button: {} went away; reopening", cfg.device.display());
            }
            Err(e) => {
                if !reported {
                    log::warn!(
                        "home button: cannot open {} ({e}); retrying every {} s",
                        cfg.device.display(),
                        REOPEN_WAIT.as_secs()
                    );
                    reported = true;
                }
            }
        }
        if stopped(stop, REOPEN_WAIT) {
            return;
        }
    }
}

/// Reads until the device fails (false) or a stop is asked for (true).
fn read_presses(
    mut file: File,
    cfg: &ButtonConfig,
    commands: &Sender<HomeCommand>,
    stop: &Receiver<()>,
    last_press: &mut Option<Instant>,
) -> bool {
    let mut buf = vec![0u8; INPUT_EVENT_BYTES * 64];
    let mut filled = 0usize;
    loop {
        if !stop.is_empty() {
            return true;
        }
        match wait_readable(&file, &cfg.device) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(()) => return false,
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("home button: read {}: {e}", cfg.device.display());
                return false;
            }
        };
        filled += n;
        let whole = filled - filled % INPUT_EVENT_BYTES;
        for code in key_downs(&buf[..whole]) {
            if !cfg.keys.contains(&code) {
                continue;
            }
            let now = Instant::now();
            if last_press.is_some_and(|t| now.duration_since(t) < DEBOUNCE) {
                continue;
            }
            *last_press = Some(now);
            log::info!("home button: key {code} pressed");
            let cmd = HomeCommand::Cancel {
                source: CommandSource::Button,
            };
            if commands.send_timeout(cmd, Duration::from_secs(1)).is_err() {
                log::warn!("home button: the command queue is full; press dropped");
            }
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// Waits up to [`POLL_MS`] for input: Ok(true) readable, Ok(false) nothing yet, Err gone.
#[cfg(unix)]
fn wait_readable(file: &File, path: &Path) -> Result<bool, ()> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; the fd is owned by `file`.
    let r = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        log::warn!("home button: poll {}: {e}", path.display());
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
fn wait_readable(_file: &File, _path: &Path) -> Result<bool, ()> {
    std::thread::sleep(Duration::from_millis(POLL_MS as u64));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_downs_are_found_in_raw_events() {
        let mut buf = Vec::new();
        buf.extend(encode_event(4, 4, 30)); // EV_MSC scan code
        buf.extend(encode_event(EV_KEY, 28, 1)); // KEY_ENTER down
        buf.extend(encode_event(0, 0, 0)); // SYN
        buf.extend(encode_event(EV_KEY, 28, 2)); // repeat
        buf.extend(encode_event(EV_KEY, 28, 0)); // up
        buf.extend(encode_event(EV_KEY, 57, 1)); // KEY_SPACE down
        assert_eq!(key_downs(&buf).collect::<Vec<_>>(), vec![28, 57]);
    }

    #[test]
    fn a_configured_key_press_sends_one_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("event0");
        let mut bytes = Vec::new();
        bytes.extend(encode_event(EV_KEY, 30, 1)); // KEY_A: not configured
        bytes.extend(encode_event(EV_KEY, 28, 1));
        bytes.extend(encode_event(EV_KEY, 28, 0));
        bytes.extend(encode_event(EV_KEY, 28, 1)); // bounce
        std::fs::write(&dev, bytes).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(8);
        let mut reader = ButtonReader::start(
            &ButtonConfig {
                device: dev,
                keys: vec![28],
            },
            tx,
        )
        .unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            got,
            HomeCommand::Cancel {
                source: CommandSource::Button
            }
        );
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        reader.shutdown();
    }
}
