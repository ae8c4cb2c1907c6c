//! Controls without a screen: an input device's keys, a local control socket, and stdin.
//!
//! Output: [`Command`]s on the one command bus ([`bus`]) that the pipeline reads; the home
//! monitor's button and MQTT `set` topic send theirs to the same bus. Sources here:
//! - a Linux input device (evdev: a Bluetooth media remote, a headset key, a GPIO button),
//!   with key codes from the config; a device that disappears is reopened every few seconds;
//! - a Unix control socket, created with mode 0600 (owner only) before anyone can connect:
//!   one command word per line, answered with `ok` or `error: …`;
//! - command words typed on stdin when it is a terminal.
//!
//! Each source runs on its own thread and checks the stop flag at least every
//! [`crate::pipeline::POLL`]. None of them is a network listener.

pub mod input;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::controls::input::watch_keys;
use crate::pipeline::POLL;
use crate::types::{parse_command, Command, Control, Origin};

/// Commands that may wait on the bus.
pub const COMMAND_QUEUE: usize = 64;

/// The one command bus: every source of commands (keys, the control socket, stdin, the home
/// button, MQTT `set`) sends on a clone of the sender; the pipeline reads the receiver.
pub fn bus() -> (Sender<Command>, Receiver<Command>) {
    crossbeam_channel::bounded(COMMAND_QUEUE)
}

/// Wait before reopening an input device that is missing or went away.
pub const REOPEN_WAIT: Duration = Duration::from_secs(3);

/// Linux key codes (linux/input-event-codes.h) used by the defaults.
pub mod keys {
    /// Enter (default for ok).
    pub const KEY_ENTER: u16 = 28;
    /// Space bar (default for describe).
    pub const KEY_SPACE: u16 = 57;
    /// Mute, a media key (default for mute).
    pub const KEY_MUTE: u16 = 113;
    /// Next track, a media key (default for verbosity).
    pub const KEY_NEXTSONG: u16 = 163;
    /// Play/pause, a media key (default for describe).
    pub const KEY_PLAYPAUSE: u16 = 164;
    /// Previous track, a media key (default for repeat).
    pub const KEY_PREVIOUSSONG: u16 = 165;
    /// OK, a remote's key (default for ok).
    pub const KEY_OK: u16 = 352;
    /// The first generic button, e.g. a GPIO button (default for ok).
    pub const BTN_0: u16 = 256;
}

/// Which key codes mean what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyMap {
    /// Keys that say what is in view now (default play/pause, space).
    pub describe: Vec<u16>,
    /// Keys that mute or unmute objects and people (default mute).
    pub mute: Vec<u16>,
    /// Keys that say the last sentence again (default previous track).
    pub repeat: Vec<u16>,
    /// Keys that cycle the verbosity (default next track).
    pub verbosity: Vec<u16>,
    /// Keys that mean "I am all right", cancelling a fall check-in (default OK, enter, BTN_0).
    pub ok: Vec<u16>,
    /// Keys with which a caregiver acknowledges an alert (default none).
    pub acknowledge: Vec<u16>,
}

impl Default for KeyMap {
    fn default() -> Self {
        use keys::*;
        KeyMap {
            describe: vec![KEY_PLAYPAUSE, KEY_SPACE],
            mute: vec![KEY_MUTE],
            repeat: vec![KEY_PREVIOUSSONG],
            verbosity: vec![KEY_NEXTSONG],
            ok: vec![KEY_OK, KEY_ENTER, BTN_0],
            acknowledge: vec![],
        }
    }
}

impl KeyMap {
    /// The control a key code is mapped to, if any (the first match in field order).
    pub fn control(&self, code: u16) -> Option<Control> {
        [
            (Control::Describe, &self.describe),
            (Control::Mute, &self.mute),
            (Control::Repeat, &self.repeat),
            (Control::Verbosity, &self.verbosity),
            (Control::Ok, &self.ok),
            (Control::Acknowledge, &self.acknowledge),
        ]
        .into_iter()
        .find(|(_, codes)| codes.contains(&code))
        .map(|(c, _)| c)
    }
}

/// The controls' settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ControlsConfig {
    /// Input devices to read keys from (`/dev/input/by-id/…`). Empty: none.
    pub evdev: Vec<PathBuf>,
    /// `[controls.keys]`: which key codes mean what.
    pub keys: KeyMap,
    /// The control socket's path. Empty: no socket.
    pub socket: Option<PathBuf>,
    /// Read command words from stdin when it is a terminal.
    pub stdin: bool,
}

/// Why the controls could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlsError {
    /// The control socket cannot be created, bound or restricted to its owner.
    #[error("{path}: cannot create the control socket: {source}")]
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A source's thread cannot be spawned.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Running control sources; dropping it does not wait for them.
pub struct Controls {
    socket: Option<PathBuf>,
    threads: Vec<JoinHandle<()>>,
}

impl Controls {
    /// Starts every configured source.
    pub fn start(
        config: &ControlsConfig,
        tx: Sender<Command>,
        stop: Arc<AtomicBool>,
    ) -> Result<Controls, ControlsError> {
        let mut threads = Vec::new();
        if let Some(path) = &config.socket {
            let listener = bind_private(path)?;
            let (tx, stop) = (tx.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("control-socket".into())
                    .spawn(move || serve_socket(listener, tx, stop))?,
            );
        }
        for dev in &config.evdev {
            let (dev, keys, tx, stop) =
                (dev.clone(), config.keys.clone(), tx.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("evdev".into())
                    .spawn(move || {
                        watch_keys(
                            &dev,
                            "input device",
                            REOPEN_WAIT,
                            &|| stop.load(Ordering::Relaxed),
                            &mut |code| {
                                if let Some(c) = keys.control(code) {
                                    let _ = tx.try_send(c.from(Origin::Key));
                                }
                            },
                        )
                    })?,
            );
        }
        if config.stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            let tx = tx.clone();
            // Blocks on stdin; it is detached and ends with the process.
            std::thread::Builder::new().name("stdin".into()).spawn(move || {
                eprintln!("keys: d describe, m mute, r repeat, v verbosity, o ok, a ack, q quit; teach|find|forget LABEL, list (then Enter)");
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    match parse_command(&line, Origin::Stdin) {
                        Some(c) => {
                            let _ = tx.try_send(c);
                        }
                        None if line.trim().is_empty() => {}
                        None => eprintln!("unknown command {line:?}"),
                    }
                }
            })?;
        }
        Ok(Controls {
            socket: config.socket.clone(),
            threads,
        })
    }

    /// Waits for the socket and device threads (they stop within a poll period of the
    /// stop flag) and removes the socket file.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds a Unix socket that only its owner can use: it is created under a temporary name,
/// made 0600, then renamed into place, so there is no moment when others can connect.
pub fn bind_private(path: &Path) -> Result<UnixListener, ControlsError> {
    let err = |source| ControlsError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    // A stale socket from a crashed run is replaced.
    std::fs::rename(&tmp, path).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

fn serve_socket(listener: UnixListener, tx: Sender<Command>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => handle_client(stream, &tx),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 2),
            Err(e) => {
                log::warn!("control socket: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// How long a socket client may take to send its command.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest command line read from a client.
const MAX_LINE: u64 = 256;

fn handle_client(stream: UnixStream, tx: &Sender<Command>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let reader = BufReader::new(std::io::Read::take(stream, MAX_LINE * 16));
    for line in reader.lines().take(16) {
        let Ok(line) = line else { break };
        let reply = match parse_command(&line, Origin::Socket) {
            Some(c) => match tx.try_send(c) {
                Ok(()) => "ok\n".to_string(),
                Err(_) => "error: busy\n".to_string(),
            },
            None => format!(
                "error: unknown command {:?}\n",
                line.chars().take(40).collect::<String>()
            ),
        };
        if writer.write_all(reply.as_bytes()).is_err() {
            break;
        }
    }
}

/// Sends one command word to a control socket and returns the reply line.
pub fn send_command(path: &Path, word: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.write_all(format!("{word}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn key_codes_map_to_controls() {
        let k = KeyMap::default();
        assert_eq!(k.control(keys::KEY_PLAYPAUSE), Some(Control::Describe));
        assert_eq!(k.control(keys::KEY_OK), Some(Control::Ok));
        assert_eq!(k.control(1), None);
    }

    #[test]
    fn the_socket_is_private_and_takes_commands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/control.sock");
        let (tx, rx) = crossbeam_channel::bounded(4);
        let stop = Arc::new(AtomicBool::new(false));
        let config = ControlsConfig {
            socket: Some(path.clone()),
            ..Default::default()
        };
        let controls = Controls::start(&config, tx, stop.clone()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        // SAFETY-free check of ownership: the socket belongs to the user running the service.
        assert_eq!(meta.uid(), std::fs::metadata(dir.path()).unwrap().uid());
        assert_eq!(send_command(&path, "describe").unwrap(), "ok");
        assert!(send_command(&path, "explode")
            .unwrap()
            .starts_with("error: unknown command"));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(1)).unwrap(),
            Control::Describe.from(Origin::Socket)
        );
        stop.store(true, Ordering::Relaxed);
        controls.join();
        assert!(!path.exists());
    }

    /// A key on an input device becomes a control, and stopping does not wait for the next
    /// key press (the device is a FIFO whose writer stays open, like an idle remote).
    #[test]
    fn an_input_device_key_is_a_control_and_stop_does_not_wait_for_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("event3");
        crate::controls::input::make_fifo(&dev);
        let (tx, rx) = crossbeam_channel::bounded(4);
        let stop = Arc::new(AtomicBool::new(false));
        let config = ControlsConfig {
            evdev: vec![dev.clone()],
            ..Default::default()
        };
        let controls = Controls::start(&config, tx, stop.clone()).unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
        w.write_all(&crate::controls::input::key_down(keys::KEY_MUTE))
            .unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Control::Mute.from(Origin::Key)
        );
        let asked = std::time::Instant::now();
        stop.store(true, Ordering::Relaxed);
        controls.join();
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        drop(w);
    }
}
