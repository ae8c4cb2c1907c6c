//! The webhook caregiver channel: HTTP(S) POSTs of JSON, on its own thread.
//!
//! Inputs: two disk [`Outbox`]es (the first contact's and, when `escalation_url` is set, the
//! second contact's) and a heartbeat snapshot kept up to date by the monitor. Outputs: one
//! POST per record (`Content-Type: application/json`, `Authorization: Bearer <token>` when a
//! token is configured), oldest first; a record leaves the outbox only on a 2xx answer.
//! Any other answer or a network error is retried with a wait that doubles from
//! `retry_min_seconds` to `retry_max_seconds`, forever: an alert is never given up. Every
//! `heartbeat_seconds` the heartbeat is POSTed to the first contact (not queued: a missed
//! heartbeat is itself the signal) so a carer without MQTT notices a dead device.
//! HTTPS checks the server's certificate against the built-in Mozilla roots, or only against
//! the CAs of `ca_file` when one is given; redirects are never followed.
//! Failures are logged with the host only: an address's path may hold a token, and the token
//! itself is never formatted.

use crate::home::thread::Stoppable;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::home::config::{redact_url, Secret, WebhookConfig};
use crate::home::outbox::Outbox;

/// How often the thread looks at its queues and the time.
const POLL: Duration = Duration::from_millis(100);
/// The `User-Agent` header.
const USER_AGENT: &str = concat!("clipsight/", env!("CARGO_PKG_VERSION"));

/// What a webhook POST got back.
#[derive(Debug)]
enum PostError {
    Status(u16),
    Transport(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Status(s) => write!(f, "HTTP status {s}"),
            PostError::Transport(s) => f.write_str(s),
        }
    }
}

/// A ureq error described without anything that may quote the address; a refused server
/// certificate says what to check.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => "bad address".into(),
        ureq::Error::RequireHttpsOnly(_) => "https required".into(),
        ureq::Error::Other(_) => "request failed".into(),
        other if certificate_refused(other) => format!(
            "{other}; check home.webhook.ca_file (the CA that signed the server's certificate, \
             which must name the address's host)"
        ),
        other => other.to_string(),
    }
}

/// Whether `e` is the TLS handshake refusing the server's certificate (an unknown CA, another
/// host's name, expired).
fn certificate_refused(e: &ureq::Error) -> bool {
    let tls = match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    matches!(tls, Some(rustls::Error::InvalidCertificate(_)))
}

/// One POST target with its queue and back-off.
struct Target {
    name: &'static str,
    url: String,
    shown: String,
    outbox: Arc<Outbox>,
    next_try: Instant,
    backoff: f64,
    failing: bool,
}

/// Counters the thread shares, for stats.
#[derive(Debug, Default)]
pub struct WebhookStatus {
    /// Records POSTed with a 2xx answer.
    pub delivered: std::sync::atomic::AtomicU64,
    /// Record POSTs that failed (each is retried).
    pub failures: std::sync::atomic::AtomicU64,
}

/// The running channel.
#[derive(Debug)]
pub(crate) struct WebhookChannel {
    thread: Stoppable,
    pub(crate) status: Arc<WebhookStatus>,
}

struct Worker {
    cfg: WebhookConfig,
    token: Option<Secret>,
    agent: ureq::Agent,
    targets: Vec<Target>,
    heartbeat: Arc<Mutex<serde_json::Value>>,
    stop: Receiver<()>,
    status: Arc<WebhookStatus>,
}

impl WebhookChannel {
    pub(crate) fn start(
        cfg: &WebhookConfig,
        token: Option<Secret>,
        roots: Option<Vec<ureq::tls::Certificate<'static>>>,
        primary: Arc<Outbox>,
        escalation: Option<Arc<Outbox>>,
        heartbeat: Arc<Mutex<serde_json::Value>>,
    ) -> std::io::Result<WebhookChannel> {
        let timeout = Duration::from_secs_f64(cfg.timeout_seconds);
        // Certificate checks are always on; `ca_file`'s CAs replace the built-in roots.
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(roots) = roots {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .build()
            .into();
        let now = Instant::now();
        let target = |name, url: &str, outbox| Target {
            name,
            url: url.to_string(),
            shown: redact_url(url),
            outbox,
            next_try: now,
            backoff: cfg.retry_min_seconds,
            failing: false,
        };
        let mut targets = vec![target("first contact", &cfg.url, primary)];
        if let (Some(url), Some(outbox)) = (&cfg.escalation_url, escalation) {
            targets.push(target("second contact", url, outbox));
        }
        let status = Arc::new(WebhookStatus::default());
        let (cfg, worker_status) = (cfg.clone(), status.clone());
        // A POST under way may take up to the request timeout.
        let wait = timeout + Duration::from_secs(1);
        let thread = Stoppable::spawn("home-webhook", wait, move |stop| {
            Worker {
                cfg,
                token,
                agent,
                targets,
                heartbeat,
                stop,
                status: worker_status,
            }
            .run()
        })?;
        Ok(WebhookChannel { thread, status })
    }

    /// Stops the thread (a POST under way may take up to the request timeout).
    pub(crate) fn shutdown(&mut self) {
        self.thread.stop();
    }
}

impl Worker {
    fn run(mut self) {
        let heartbeat_every = (self.cfg.heartbeat_seconds > 0.0)
            .then(|| Duration::from_secs_f64(self.cfg.heartbeat_seconds));
        let mut next_heartbeat = Instant::now();
        let mut heartbeat_failing = false;
        loop {
            match self.stop.recv_timeout(POLL) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            for i in 0..self.targets.len() {
                self.deliver(i);
            }
            if let Some(every) = heartbeat_every {
                if Instant::now() >= next_heartbeat {
                    next_heartbeat = Instant::now() + every;
                    let mut body = self
                        .heartbeat
                        .lock()
                        .map(|v| v.clone())
                        .unwrap_or_else(|e| e.into_inner().clone());
                    // `time` is when the monitor last ran; `sent_time` is now. A growing gap
                    // means the pipeline is stuck while this thread still runs.
                    body["sent_time"] = serde_json::json!(std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0));
                    let url = self.targets[0].url.clone();
                    match self.post(&url, &body) {
                        Ok(()) => {
                            if heartbeat_failing {
                                log::info!("home webhook: heartbeat delivered again");
                            }
                            heartbeat_failing = false;
                        }
                        Err(e) => {
                            if !heartbeat_failing {
                                log::warn!(
                                    "home webhook: heartbeat to {} failed: {e}",
                                    self.targets[0].shown
                                );
                            }
                            heartbeat_failing = true;
                        }
                    }
                }
            }
        }
    }

    /// Sends every due record of target `i`, oldest first, until one fails.
    fn deliver(&mut self, i: usize) {
        loop {
            if Instant::now() < self.targets[i].next_try || !self.stop.is_empty() {
                return;
            }
            let (seq, body) = match self.targets[i].outbox.oldest() {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    log::error!("home webhook: {e}");
                    return;
                }
            };
            let url = self.targets[i].url.clone();
            let result = self.post(&url, &body);
            let t = &mut self.targets[i];
            match result {
                Ok(()) => {
                    if let Err(e) = t.outbox.remove(seq) {
                        log::error!("home webhook: {e}");
                    }
                    self.status
                        .delivered
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if t.failing {
                        log::info!("home webhook: {} ({}) reachable again", t.name, t.shown);
                    }
                    t.failing = false;
                    t.backoff = self.cfg.retry_min_seconds;
                }
                Err(e) => {
                    self.status
                        .failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let level = if t.failing {
                        log::Level::Debug
                    } else {
                        log::Level::Warn
                    };
                    log::log!(
                        level,
                        "home webhook: POST to the {} ({}) failed: {e}; retrying in {:.1} s \
                         ({} queued)",
                        t.name,
                        t.shown,
                        t.backoff,
                        t.outbox.len()
                    );
                    t.failing = true;
                    t.next_try = Instant::now() + Duration::from_secs_f64(t.backoff);
                    t.backoff = (t.backoff * 2.0).min(self.cfg.retry_max_seconds);
                    return;
                }
            }
        }
    }

    fn post(&self, url: &str, body: &serde_json::Value) -> Result<(), PostError> {
        let bytes = body.to_string();
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", token.expose()));
        }
        match req.send(bytes.as_bytes()) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Read (a little of) the body so the connection can be reused.
                let _ = resp.into_body().read_to_vec();
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(PostError::Status(status))
                }
            }
            Err(e) => Err(PostError::Transport(describe(&e))),
        }
    }
}
