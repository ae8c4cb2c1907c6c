//! TLS: MQTT to a mosquitto TLS listener and the webhook to an HTTPS server, each with a test
//! CA made at test time; a CA that does not vouch for the server keeps the alert on disk.

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use clipsight::cli::config::RunConfig;
use clipsight::controls::bus;
use clipsight::home::config::{HomeConfig, WebhookConfig};
use clipsight::home::{HomeMonitor, HomeSecrets};

use crate::common::*;

/// A broker with its plain listener (`broker.port`, for the test subscriber) and a TLS
/// listener whose certificate (for 127.0.0.1) `ca` signed; `extra` goes after the TLS
/// listener's lines. Returns the broker and the TLS listener's port.
fn tls_broker(ca: &TestCa, extra: &str) -> (Broker, u16) {
    let server = ca.issue("broker", false);
    let tls_port = free_port();
    let conf = format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{extra}",
        ca.cert.display(),
        server.cert.display(),
        server.key.display()
    );
    let broker = Broker::start(&conf);
    wait_for("the TLS listener", || {
        TcpStream::connect(("127.0.0.1", tls_port)).ok()
    });
    (broker, tls_port)
}

/// A monitor config with MQTT over TLS to `port`, trusting `ca_file`.
fn tls_config(dir: &Path, port: u16, prefix: &str, ca_file: &Path) -> HomeConfig {
    let mut cfg = home_config(dir, Some(port), prefix);
    cfg.fall.ack_seconds = 100_000.0; // no escalation update in these tests
    if let Some(m) = &mut cfg.mqtt {
        m.tls = true;
        m.ca_file = Some(ca_file.to_path_buf());
    }
    cfg
}

fn log_lines_with(needle: &str) -> Vec<String> {
    LOGGER
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn mqtt_tls_with_the_test_ca_delivers_the_alert() {
    capture_logs();
    let ca = TestCa::new("clipsight test CA");
    let (broker, tls_port) = tls_broker(&ca, "");
    let prefix = "tls1/home";
    let sub = Subscriber::connect(broker.port, &[&format!("{prefix}/#")]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = tls_config(dir.path(), tls_port, prefix, &ca.cert);
    let mut m = HomeMonitor::start(cfg, HomeSecrets::default(), bus().0).unwrap();
    // The TLS listener speaks nothing but TLS: `online` arriving means the handshake, with
    // the broker's certificate checked against the test CA, succeeded.
    sub.wait_for(&format!("{prefix}/available"), |m| m.payload == "online");
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 60.0);
    let alert = sub.wait_for(&format!("{prefix}/alerts"), |_| true).json();
    assert_eq!(alert["type"], "new");
    assert_eq!(alert["kind"], "fall");
    wait_for("the outbox to drain", || {
        (m.pending_deliveries().0 == 0).then_some(())
    });
    assert_eq!(files_in(&dir.path().join("outbox/mqtt")), 0);
    assert!(
        !log_lines_with(&format!("home MQTT: connected to 127.0.0.1:{tls_port}")).is_empty(),
        "no 'connected' line for the TLS listener"
    );
    assert!(log_lines_with(&format!("TLS handshake with 127.0.0.1:{tls_port}")).is_empty());
    m.shutdown();
}

#[test]
fn mqtt_tls_wrong_ca_keeps_the_alert_in_the_outbox() {
    capture_logs();
    let ca = TestCa::new("the broker's CA");
    let other = TestCa::new("some other CA");
    let (broker, tls_port) = tls_broker(&ca, "");
    let prefix = "tls2/home";
    let alerts_topic = format!("{prefix}/alerts");
    let sub = Subscriber::connect(broker.port, &[&format!("{prefix}/#")]);
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox/mqtt");
    let cfg = tls_config(dir.path(), tls_port, prefix, &other.cert);
    let mut m = HomeMonitor::start(cfg, HomeSecrets::default(), bus().0).unwrap();
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 60.0);
    assert_eq!(feed.said.len(), 2, "check-in and alert: {:?}", feed.said);
    let failure = format!("home MQTT: TLS handshake with 127.0.0.1:{tls_port} failed");
    let line = wait_for("the TLS failure in the log", || {
        log_lines_with(&failure).into_iter().next()
    });
    assert!(line.starts_with("WARN "), "{line}");
    assert!(line.contains("invalid peer certificate"), "{line}");
    assert!(
        line.contains(&format!(
            "check home.mqtt.ca_file ({}",
            other.cert.display()
        )),
        "{line}"
    );
    assert!(line.contains("alerts wait on disk"), "{line}");
    // Several reconnection attempts later (0.2 to 0.5 s apart) the alert is still on disk,
    // nothing reached the broker, and the outage was reported once, not once per attempt.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        m.pending_deliveries().0 >= 3,
        "check-in, alert (events) and alert (alerts) stay queued: {:?}",
        m.pending_deliveries()
    );
    assert!(
        files_in(&outbox) >= 3,
        "{} files in the outbox",
        files_in(&outbox)
    );
    assert!(
        sub.on(&alerts_topic).is_empty(),
        "{:?}",
        sub.on(&alerts_topic)
    );
    assert!(
        sub.on(&format!("{prefix}/available")).is_empty(),
        "the monitor never got onto the broker"
    );
    let warnings = log_lines_with(&failure)
        .into_iter()
        .filter(|l| l.starts_with("WARN "))
        .count();
    assert_eq!(warnings, 1, "one warning per outage");
    m.shutdown();

    // With the right CA the queued alert goes out from the outbox, and only then leaves it.
    let cfg = tls_config(dir.path(), tls_port, prefix, &ca.cert);
    let m = HomeMonitor::start(cfg, HomeSecrets::default(), bus().0).unwrap();
    let alert = sub.wait_for(&alerts_topic, |_| true).json();
    assert_eq!(alert["type"], "new");
    assert_eq!(alert["kind"], "fall");
    wait_for("the outbox to drain", || {
        (m.pending_deliveries().0 == 0).then_some(())
    });
    assert_eq!(files_in(&outbox), 0);
    assert_eq!(sub.settled_on(&alerts_topic).len(), 1);
    m.shutdown();
}

#[test]
fn mqtt_tls_client_certificate_for_a_broker_that_requires_one() {
    capture_logs();
    let ca = TestCa::new("clipsight mutual TLS CA");
    let client = ca.issue("monitor", true);
    let (broker, tls_port) = tls_broker(&ca, "require_certificate true\n");
    let prefix = "tls3/home";
    let sub = Subscriber::connect(broker.port, &[&format!("{prefix}/available")]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tls_config(dir.path(), tls_port, prefix, &ca.cert);
    if let Some(m) = &mut cfg.mqtt {
        m.client_cert_file = Some(client.cert.clone());
        m.client_key_file = Some(client.key.clone());
    }
    let m = HomeMonitor::start(cfg, HomeSecrets::default(), bus().0).unwrap();
    sub.wait_for(&format!("{prefix}/available"), |m| m.payload == "online");
    m.shutdown();
}

fn https_webhook(url: String, ca_file: Option<&Path>) -> WebhookConfig {
    WebhookConfig {
        url,
        heartbeat_seconds: 0.0,
        timeout_seconds: 5.0,
        retry_min_seconds: 0.3,
        retry_max_seconds: 1.0,
        ca_file: ca_file.map(Path::to_path_buf),
        ..WebhookConfig::default()
    }
}

#[test]
fn webhook_https_is_refused_without_the_ca_and_accepted_with_it() {
    capture_logs();
    let ca = TestCa::new("clipsight webhook test CA");
    let server = HttpServer::start_https(&ca.issue("hook", false));
    let url = server.url("/hook");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox/webhook");
    let mut cfg = home_config(dir.path(), None, "wtls");
    cfg.webhook = Some(https_webhook(url.clone(), None));
    let mut m = HomeMonitor::start(cfg.clone(), HomeSecrets::default(), bus().0).unwrap();
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 60.0);
    // The built-in roots do not know the test CA: the handshake is refused, no request is
    // made, and the alert stays queued.
    let failure = format!(
        "home webhook: POST to the first contact (https://127.0.0.1:{}/…) failed",
        server.port
    );
    let line = wait_for("the refused POST in the log", || {
        log_lines_with(&failure).into_iter().next()
    });
    assert!(line.contains("invalid peer certificate"), "{line}");
    assert!(line.contains("check home.webhook.ca_file"), "{line}");
    wait_for("a retried connection", || {
        (server
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2)
            .then_some(())
    });
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(m.pending_deliveries().1, 1, "the alert stays queued");
    assert_eq!(files_in(&outbox), 1);
    m.shutdown();

    // Trusting the test CA, the queued alert is delivered.
    cfg.webhook = Some(https_webhook(url, Some(&ca.cert)));
    let m = HomeMonitor::start(cfg, HomeSecrets::default(), bus().0).unwrap();
    let req = wait_for("the POST over HTTPS", || {
        server.requests().into_iter().next()
    });
    assert_eq!(req.path, "/hook");
    let v = req.json();
    assert_eq!(v["topic"], "alerts");
    assert_eq!(v["type"], "new");
    assert_eq!(v["kind"], "fall");
    wait_for("the webhook outbox to drain", || {
        (m.pending_deliveries().1 == 0).then_some(())
    });
    assert_eq!(files_in(&outbox), 0);
    m.shutdown();
}

#[test]
fn tls_keys_in_a_run_config_file_parse_validate_and_load() {
    let ca = TestCa::new("clipsight config test CA");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let write = |name: &str, mqtt_ca: &Path, webhook_ca: &Path| {
        let path = dir.path().join(name);
        let text = format!(
            r#"
[home]
node_id = "cfg-tls"
state_dir = "{}"

[home.mqtt]
host = "127.0.0.1"
port = {}
tls = true
ca_file = "{}"
topic_prefix = "flat-3/clipsight"

[home.webhook]
url = "https://127.0.0.1:9/hook"
ca_file = "{}"
heartbeat_seconds = 0
"#,
            state.display(),
            free_port(),
            mqtt_ca.display(),
            webhook_ca.display()
        );
        std::fs::write(&path, text).unwrap();
        RunConfig::load(&path)
            .unwrap()
            .home
            .expect("a [home] table")
    };
    let home = write("good.toml", &ca.cert, &ca.cert);
    home.validate().unwrap();
    let mqtt = home.mqtt.as_ref().unwrap();
    assert!(mqtt.tls);
    assert_eq!(mqtt.ca_file.as_deref(), Some(ca.cert.as_path()));
    assert_eq!(mqtt.topic_prefix, "flat-3/clipsight");
    let webhook = home.webhook.as_ref().unwrap();
    assert_eq!(webhook.ca_file.as_deref(), Some(ca.cert.as_path()));
    // It starts (the CA files are read and parsed); nothing listens, so it just retries.
    HomeMonitor::start(home, HomeSecrets::default(), bus().0)
        .unwrap()
        .shutdown();

    // A CA file that is missing, or is no certificate, stops the start, naming key and file.
    let missing = dir.path().join("no-such-ca.pem");
    let home = write("missing.toml", &missing, &ca.cert);
    home.validate().unwrap();
    let e = HomeMonitor::start(home, HomeSecrets::default(), bus().0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("home.mqtt.ca_file") && e.contains("no-such-ca.pem"),
        "{e}"
    );
    let garbage = dir.path().join("not-a-ca.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let home = write("garbage.toml", &ca.cert, &garbage);
    let e = HomeMonitor::start(home, HomeSecrets::default(), bus().0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("home.webhook.ca_file") && e.contains("not-a-ca.pem"),
        "{e}"
    );
}
