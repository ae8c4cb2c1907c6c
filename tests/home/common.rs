//! Test harness: a real mosquitto on loopback, an MQTT subscriber, a tiny HTTP(S) server, a
//! log capture, a test certificate authority (made with the `openssl` command), and synthetic
//! observation streams.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use clipsight::home::config::{HomeConfig, MqttConfig};
use clipsight::home::{HomeMonitor, PersonObservation, Stamp, View};
use clipsight::Utterance;
use crossbeam_channel::Receiver;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The broker binary (override with `CLIPSIGHT_MOSQUITTO`).
pub fn mosquitto_path() -> PathBuf {
    std::env::var_os("CLIPSIGHT_MOSQUITTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}

/// Longest any wait in these tests lasts.
pub const WAIT: Duration = Duration::from_secs(15);

/// Polls `f` every 20 ms until it returns Some, or panics after `WAIT` naming `what`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a count must stay unchanged before [`settled`] believes it: three times the
/// slowest retry delay these tests configure, so a late duplicate has time to show.
pub const QUIET: Duration = Duration::from_millis(1500);

/// Polls `count` every 20 ms until its value has stayed the same for `quiet`, then returns it;
/// panics after `WAIT` naming `what` if it never settles. Use it instead of "sleep, then
/// count": a duplicate that arrives late restarts the quiet period and is counted.
pub fn settled(what: &str, quiet: Duration, mut count: impl FnMut() -> usize) -> usize {
    let deadline = Instant::now() + WAIT + quiet;
    let mut last = count();
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = count();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return last;
        }
        if Instant::now() > deadline {
            panic!("{what} never settled (last count {last})");
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A mosquitto process on 127.0.0.1; killed on drop.
pub struct Broker {
    pub port: u16,
    pub dir: tempfile::TempDir,
    conf: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker; `extra` is appended to its config (e.g. a password file).
    pub fn start(extra: &str) -> Broker {
        Self::start_on(free_port(), extra)
    }

    /// A broker that is configured but not running yet.
    pub fn configured(port: u16, extra: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\nlog_dest file {}\n",
            dir.path().join("mosquitto.log").display()
        );
        // As root, mosquitto would switch to the `mosquitto` user, which cannot read our
        // private temporary directory.
        text.push_str("user root\n");
        if !extra.contains("allow_anonymous") {
            text.push_str("allow_anonymous true\n");
        }
        if !extra.contains("persistence") {
            text.push_str("persistence false\n");
        }
        text.push_str(extra);
        std::fs::write(&conf, text).unwrap();
        Broker {
            port,
            dir,
            conf,
            child: None,
        }
    }

    pub fn start_on(port: u16, extra: &str) -> Broker {
        let mut b = Self::configured(port, extra);
        b.run();
        b
    }

    /// Starts (or restarts) the process and waits until it accepts connections.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let bin = mosquitto_path();
        assert!(
            bin.exists(),
            "{} not found: install mosquitto (apt-get install mosquitto) or set CLIPSIGHT_MOSQUITTO",
            bin.display()
        );
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let port = self.port;
        wait_for("mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// Stops it gracefully (SIGTERM: a persistent broker saves its sessions) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message a subscriber saw.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// An MQTT client in a thread that records everything on its subscriptions.
pub struct Subscriber {
    pub client: Client,
    msgs: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct SubOptions<'a> {
    pub id: &'a str,
    pub clean: bool,
    pub credentials: Option<(&'a str, &'a str)>,
}

impl Subscriber {
    pub fn connect(port: u16, topics: &[&str]) -> Subscriber {
        Self::connect_with(
            port,
            topics,
            SubOptions {
                id: &format!("test-sub-{}", free_port()),
                clean: true,
                credentials: None,
            },
        )
    }

    /// Connects and waits until the subscriptions are acknowledged.
    pub fn connect_with(port: u16, topics: &[&str], o: SubOptions<'_>) -> Subscriber {
        let mut opts = MqttOptions::new(o.id, "127.0.0.1", port);
        opts.set_clean_session(o.clean)
            .set_keep_alive(Duration::from_secs(5));
        if let Some((u, p)) = o.credentials {
            opts.set_credentials(u, p);
        }
        let (client, mut conn) = Client::new(opts, 64);
        for t in topics {
            client.subscribe(*t, QoS::AtLeastOnce).unwrap();
        }
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sub_tx, sub_rx) = crossbeam_channel::unbounded();
        let thread = {
            let msgs = msgs.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match conn.recv_timeout(Duration::from_millis(100)) {
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            msgs.lock().unwrap().push(Msg {
                                topic: p.topic.clone(),
                                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                                retain: p.retain,
                            });
                        }
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            let _ = sub_tx.send(());
                        }
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                        _ => {}
                    }
                }
            })
        };
        for _ in topics {
            sub_rx.recv_timeout(WAIT).expect("SUBACK");
        }
        Subscriber {
            client,
            msgs,
            stop,
            thread: Some(thread),
        }
    }

    pub fn messages(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    pub fn on(&self, topic: &str) -> Vec<Msg> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until a message on `topic` satisfies `pred`; returns it.
    pub fn wait_for(&self, topic: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        wait_for(&format!("a matching message on {topic}"), || {
            self.on(topic).into_iter().find(|m| pred(m))
        })
    }

    /// The messages on `topic` once their number has stayed the same for [`QUIET`].
    pub fn settled_on(&self, topic: &str) -> Vec<Msg> {
        settled(&format!("the messages on {topic}"), QUIET, || {
            self.on(topic).len()
        });
        self.on(topic)
    }

    pub fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .unwrap();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A home config for tests: state in `dir`, MQTT on `port` under `prefix`, quick reconnects.
pub fn home_config(dir: &Path, port: Option<u16>, prefix: &str) -> HomeConfig {
    HomeConfig {
        node_id: prefix.replace('/', "-"),
        state_dir: dir.to_path_buf(),
        mqtt: port.map(|port| MqttConfig {
            host: "127.0.0.1".into(),
            port,
            topic_prefix: prefix.into(),
            discovery_prefix: format!("{prefix}-ha"),
            reconnect_min_seconds: 0.2,
            reconnect_max_seconds: 0.5,
            ..MqttConfig::default()
        }),
        ..HomeConfig::default()
    }
}

/// Drives a monitor with synthetic frames (2 per second) and synthetic time.
pub struct Feed {
    pub t: f64,
    pub said: Vec<Utterance>,
}

pub const THRESHOLD: f32 = 0.3;
const FRAME_S: f64 = 0.5;
/// Synthetic days start at noon (no inactivity window in play).
const NOON: f64 = 12.0 * 3600.0;

impl Feed {
    pub fn new() -> Feed {
        Feed {
            t: 0.0,
            said: Vec::new(),
        }
    }

    pub fn at(&self) -> Stamp {
        Stamp::synthetic(self.t, NOON)
    }

    pub fn run(&mut self, m: &mut HomeMonitor, seconds: f64, lying: f32, up: bool) {
        let end = self.t + seconds;
        while self.t < end {
            self.t += FRAME_S;
            let obs = PersonObservation {
                at: self.at(),
                view: View::Seen {
                    lying,
                    lying_threshold: THRESHOLD,
                    up,
                },
            };
            self.said.extend(m.observe(&obs));
        }
    }

    pub fn up(&mut self, m: &mut HomeMonitor, seconds: f64) {
        self.run(m, seconds, 0.1, true);
    }

    pub fn lying(&mut self, m: &mut HomeMonitor, seconds: f64) {
        self.run(m, seconds, 0.55, false);
    }

    /// Routes the home commands that arrived on the command bus, as the pipeline would.
    pub fn route_commands(
        &mut self,
        m: &mut HomeMonitor,
        rx: &Receiver<clipsight::Command>,
    ) -> usize {
        let mut n = 0;
        while let Ok(cmd) = rx.try_recv() {
            if let clipsight::Command::Home(cmd) = cmd {
                let at = self.at();
                self.said.extend(m.command(&at, cmd));
                n += 1;
            }
        }
        n
    }
}

/// Records every log line of the process (all crates, all levels) for the secrets test.
pub struct CaptureLogger {
    pub lines: Mutex<Vec<String>>,
}

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        if record.level() <= log::Level::Warn && record.target().starts_with("clipsight") {
            eprintln!("{line}");
        }
        if let Ok(mut l) = self.lines.lock() {
            l.push(line);
        }
    }

    fn flush(&self) {}
}

pub static LOGGER: CaptureLogger = CaptureLogger {
    lines: Mutex::new(Vec::new()),
};

/// Installs [`LOGGER`] at trace level for the whole test binary (once).
pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// One HTTP request the test server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
    /// The status code the server answered with.
    pub status: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A one-thread HTTP/1.1 server on loopback that answers with scripted status codes (then
/// 200) and records each request; over TLS when started with [`HttpServer::start_https`].
pub struct HttpServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
    /// TCP connections accepted (a refused TLS handshake is counted here, not in `requests`).
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    https: bool,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Answers the first requests with `script`'s status codes, in order, then 200.
    pub fn start(script: Vec<u16>) -> HttpServer {
        Self::start_scripted(None, script, None)
    }

    /// An HTTPS server (rustls, ring) with `cert`'s chain and key that answers 200.
    pub fn start_https(cert: &ServerCert) -> HttpServer {
        let chain = CertificateDer::pem_file_iter(&cert.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&cert.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Self::start_scripted(None, vec![], Some(Arc::new(config)))
    }

    /// Answers the first requests whose JSON `topic` is `topic` with `script`'s status codes,
    /// in order; every other request (a heartbeat, say) gets 200 and leaves the script alone.
    pub fn start_for_topic(topic: &'static str, script: Vec<u16>) -> HttpServer {
        Self::start_scripted(Some(topic), script, None)
    }

    fn start_scripted(
        topic: Option<&'static str>,
        script: Vec<u16>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let https = tls.is_some();
        let thread = {
            let requests = requests.clone();
            let connections = connections.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut script = script.into_iter();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if stream.set_nonblocking(false).is_err()
                                || stream
                                    .set_read_timeout(Some(Duration::from_secs(5)))
                                    .is_err()
                            {
                                continue;
                            }
                            let mut stream: Box<dyn ReadWrite> = match &tls {
                                Some(config) => {
                                    let Ok(conn) = rustls::ServerConnection::new(config.clone())
                                    else {
                                        continue;
                                    };
                                    Box::new(rustls::StreamOwned::new(conn, stream))
                                }
                                None => Box::new(stream),
                            };
                            if let Some(mut req) = read_request(&mut stream) {
                                let scripted = topic.is_none_or(|t| req.json()["topic"] == t);
                                let status = if scripted { script.next() } else { None };
                                let status = status.unwrap_or(200);
                                req.status = status;
                                let reply = format!(
                                    "HTTP/1.1 {status} S\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                                );
                                let _ = stream.write_all(reply.as_bytes());
                                let _ = stream.flush();
                                requests.lock().unwrap().push(req);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        HttpServer {
            port,
            requests,
            connections,
            https,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A plain or a TLS stream.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn read_request(stream: &mut dyn ReadWrite) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
        status: 0,
    })
}

/// Runs the `openssl` command (Debian's `openssl` package, installed by .ci/setup) in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test certificate authority, made at test time in a temporary directory (nothing is kept
/// in git): `ca.pem` is what a client names as its `ca_file`.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
}

/// A certificate signed by a [`TestCa`], with its private key (PEM, PKCS#8).
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA (P-256, valid for two days) called `name`.
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("ca.pem");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa { dir, cert }
    }

    /// A certificate for `file_name` (`.pem` and `.key` in the CA's directory): a server's
    /// for 127.0.0.1 and localhost, or with `client` a TLS client's.
    pub fn issue(&self, file_name: &str, client: bool) -> ServerCert {
        let dir = self.dir.path();
        let (cert, key) = (format!("{file_name}.pem"), format!("{file_name}.key"));
        let csr = format!("{file_name}.csr");
        let ext = format!("{file_name}.ext");
        let ext_text = if client {
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n"
        } else {
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        };
        std::fs::write(dir.join(&ext), ext_text).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={file_name}"),
            ],
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let serial = format!("0x{nanos:x}");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        );
        ServerCert {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}
