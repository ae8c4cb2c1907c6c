//! The "I am all right" button: a Linux input device (evdev), read on its own thread.
//!
//! Input: the event device named in `[home.button]` (raw `struct input_event` records; the
//! user needs read access, usually the `input` group). Output: a
//! [`HomeCommand::Cancel`] from [`CommandSource::Button`] on the pipeline's command bus for
//! each press of a configured key (key-down only; presses within [`DEBOUNCE`] of the last one
//! are ignored). Failures: a missing or unplugged device is logged once and reopened every
//! [`REOPEN_WAIT`]; the thread never stops the monitor.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::controls::input::{watch_keys, POLL_MS};
use crate::home::config::ButtonConfig;
use crate::home::fall::CommandSource;
use crate::home::thread::Stoppable;
use crate::home::HomeCommand;
use crate::types::Command;

/// Presses closer together than this count once.
pub const DEBOUNCE: Duration = Duration::from_millis(1000);
/// Wait before reopening a device that is missing or went away.
pub const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// The running reader.
#[derive(Debug)]
pub(crate) struct ButtonReader {
    thread: Stoppable,
}

impl ButtonReader {
    pub(crate) fn start(
        cfg: &ButtonConfig,
        commands: Sender<Command>,
    ) -> std::io::Result<ButtonReader> {
        let cfg = cfg.clone();
        let wait = Duration::from_millis(POLL_MS * 10);
        let thread =
            Stoppable::spawn("home-button", wait, move |stop| run(&cfg, &commands, &stop))?;
        Ok(ButtonReader { thread })
    }

    pub(crate) fn shutdown(&mut self) {
        self.thread.stop();
    }
}

fn run(cfg: &ButtonConfig, commands: &Sender<Command>, stop: &Receiver<()>) {
    let mut last_press: Option<Instant> = None;
    let mut on_key = |code: u16| {
        if !cfg.keys.contains(&code) {
            return;
        }
        let now = Instant::now();
        if last_press.is_some_and(|t| now.duration_since(t) < DEBOUNCE) {
            return;
        }
        last_press = Some(now);
        log::info!("home button: key {code} pressed");
        let cmd = Command::Home(HomeCommand::Cancel {
            source: CommandSource::Button,
        });
        if commands.send_timeout(cmd, Duration::from_secs(1)).is_err() {
            log::warn!("home button: the command queue is full; press dropped");
        }
    };
    watch_keys(
        &cfg.device,
        "home button",
        REOPEN_WAIT,
        &|| !stop.is_empty(),
        &mut on_key,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::input::{encode_event, key_down};

    #[test]
    fn a_configured_key_press_sends_one_cancel() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("event0");
        // A FIFO held open stands in for the device: no end of file, so nothing is re-read.
        crate::controls::input::make_fifo(&dev);
        let (tx, rx) = crossbeam_channel::bounded(8);
        let mut reader = ButtonReader::start(
            &ButtonConfig {
                device: dev.clone(),
                keys: vec![28],
            },
            tx,
        )
        .unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
        let mut bytes = Vec::new();
        bytes.extend(key_down(30)); // KEY_A: not configured
        bytes.extend(key_down(28));
        bytes.extend(encode_event(1, 28, 0)); // up
        bytes.extend(key_down(28)); // bounce
        w.write_all(&bytes).unwrap();
        let cancel = Command::Home(HomeCommand::Cancel {
            source: CommandSource::Button,
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), cancel);
        // The four records went in one write and are read together: a bounce taken for a
        // press would be on the channel within milliseconds, long before the debounce time.
        std::thread::sleep(DEBOUNCE + Duration::from_millis(100));
        let extra: Vec<_> = rx.try_iter().collect();
        assert!(extra.is_empty(), "the bounce was a press: {extra:?}");
        // The reader is still there: a real press after the debounce time counts again.
        w.write_all(&key_down(28)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), cancel);
        reader.shutdown();
        drop(w);
    }
}
