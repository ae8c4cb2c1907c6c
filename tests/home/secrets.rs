//! Credentials: used on the wire, never in the log.

use std::process::Command;

use clipsight::home::config::{HomeConfig, WebhookConfig};
use clipsight::home::{HomeMonitor, HomeSecrets};

use crate::common::*;

const MQTT_PASSWORD: &str = "pw-Zq81-never-log-me";
const WEBHOOK_TOKEN: &str = "tok-Kx27-never-log-me";

#[test]
fn secrets_never_logged_mqtt_webhook() {
    capture_logs();
    // A broker that refuses anonymous clients.
    let pw_dir = tempfile::tempdir().unwrap();
    let pw_file = pw_dir.path().join("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&pw_file)
        .args(["carer", MQTT_PASSWORD])
        .status()
        .expect("mosquitto_passwd (package mosquitto)");
    assert!(status.success());
    let broker = Broker::start(&format!(
        "allow_anonymous false\npassword_file {}\n",
        pw_file.display()
    ));
    // 503 to the first alert POST only: heartbeats (every 0.2 s) are answered 200 and cannot
    // use up the script.
    let server = HttpServer::start_for_topic("alerts", vec![503]);
    let dir = tempfile::tempdir().unwrap();
    let secret_dir = tempfile::tempdir().unwrap();
    let token_file = secret_dir.path().join("token");
    std::fs::write(&token_file, format!("{WEBHOOK_TOKEN}\n")).unwrap();

    let prefix = "s1/home";
    let mut cfg: HomeConfig = home_config(dir.path(), Some(broker.port), prefix);
    if let Some(m) = &mut cfg.mqtt {
        m.username = Some("carer".into());
        m.password_env = Some("CLIPSIGHT_TEST_MQTT_PASSWORD".into());
    }
    cfg.webhook = Some(WebhookConfig {
        url: server.url("/hook/path-secret-xyz"),
        token_file: Some(token_file),
        heartbeat_seconds: 0.2,
        retry_min_seconds: 0.2,
        retry_max_seconds: 0.5,
        ..WebhookConfig::default()
    });
    let secrets = HomeSecrets::load_with(&cfg, |var| {
        (var == "CLIPSIGHT_TEST_MQTT_PASSWORD").then(|| MQTT_PASSWORD.to_string())
    })
    .unwrap();
    log::info!("test: config {cfg:?}, secrets {secrets:?}");

    // A wrong password first: refused, and the refusal is logged without the password.
    let mut bad_cfg = cfg.clone();
    bad_cfg.state_dir = dir.path().join("bad");
    if let Some(m) = &mut bad_cfg.mqtt {
        m.client_id = Some("s1-bad".into());
    }
    let bad_secrets = HomeSecrets {
        mqtt_password: Some(clipsight::home::Secret::new(format!(
            "{MQTT_PASSWORD}-wrong"
        ))),
        webhook_token: None,
    };
    let mut bad_cfg_no_hook = bad_cfg.clone();
    bad_cfg_no_hook.webhook = None;
    let bad =
        HomeMonitor::start(bad_cfg_no_hook, bad_secrets, clipsight::controls::bus().0).unwrap();

    let sub = Subscriber::connect_with(
        broker.port,
        &[&format!("{prefix}/#")],
        SubOptions {
            id: "s1-watcher",
            clean: true,
            credentials: Some(("carer", MQTT_PASSWORD)),
        },
    );
    let mut m = HomeMonitor::start(cfg, secrets, clipsight::controls::bus().0).unwrap();
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 60.0);
    // The right password works: the alert arrives.
    sub.wait_for(&format!("{prefix}/alerts"), |_| true);
    // The token is sent with the alert, and again with its retry after the 503.
    let reqs = wait_for("the alert POST and its retry", || {
        let r: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.json()["topic"] == "alerts")
            .collect();
        (r.len() >= 2).then_some(r)
    });
    assert_eq!((reqs[0].status, reqs[1].status), (503, 200));
    assert_eq!(reqs[0].body, reqs[1].body, "the retry sends the same alert");
    let expected = format!("Bearer {WEBHOOK_TOKEN}");
    for r in &reqs {
        assert_eq!(r.header("authorization"), Some(expected.as_str()));
    }
    // The heartbeats carry it too.
    let beat = wait_for("a heartbeat", || {
        server
            .requests()
            .into_iter()
            .find(|r| r.json()["topic"] == "heartbeat")
    });
    assert_eq!(beat.header("authorization"), Some(expected.as_str()));
    wait_for("the refused login to be logged", || {
        LOGGER
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("home MQTT: no connection"))
            .then_some(())
    });
    m.shutdown();
    bad.shutdown();

    let lines = LOGGER.lines.lock().unwrap().clone();
    assert!(lines.len() > 10, "the capture works: {} lines", lines.len());
    for secret in [MQTT_PASSWORD, WEBHOOK_TOKEN] {
        let leaks: Vec<_> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} was logged: {leaks:?}");
    }
    // A token in the webhook address: clipsight's own lines show only the host. (ureq itself
    // prints request paths at trace level, so tokens belong in token_env/token_file.)
    let ours: Vec<_> = lines
        .iter()
        .filter(|l| {
            let target = l.split(' ').nth(1).unwrap_or("");
            target.starts_with("clipsight") && l.contains("path-secret-xyz")
        })
        .collect();
    assert!(ours.is_empty(), "the webhook path was logged: {ours:?}");
    // Files the monitor wrote are private and hold no secret either.
    for entry in walk(dir.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        for secret in [MQTT_PASSWORD, WEBHOOK_TOKEN] {
            assert!(!text.contains(secret), "{} holds a secret", entry.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", entry.display());
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
