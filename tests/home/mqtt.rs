//! MQTT: alerts, outages, the last will, commands on the set topic.

use std::process::{Command, Stdio};
use std::time::Duration;

use clipsight::controls::bus;
use clipsight::home::{CommandSource, HomeCommand, HomeMonitor, HomeSecrets};

use crate::common::*;

#[test]
fn mqtt_fall_sequence_publishes_exactly_one_alert() {
    let broker = Broker::start("");
    let dir = tempfile::tempdir().unwrap();
    let prefix = "t1/home";
    let sub = Subscriber::connect(
        broker.port,
        &[&format!("{prefix}/#"), &format!("{prefix}-ha/#")],
    );
    let mut cfg = home_config(dir.path(), Some(broker.port), prefix);
    cfg.fall.ack_seconds = 100_000.0; // no escalation update in this test
    let (bus, commands) = bus();
    let mut m = HomeMonitor::start(cfg, HomeSecrets::default(), bus).unwrap();
    // Online, retained, and Home Assistant discovery.
    sub.wait_for(&format!("{prefix}/available"), |m| m.payload == "online");
    let disc = sub.wait_for(
        &format!("{prefix}-ha/binary_sensor/t1-home/fall/config"),
        |_| true,
    );
    assert_eq!(disc.json()["state_topic"], format!("{prefix}/state"));
    // Retained: a subscriber that connects afterwards is handed both, flagged as retained
    // (the first subscriber saw them live, where the broker clears the flag).
    let late = Subscriber::connect(
        broker.port,
        &[
            &format!("{prefix}/available"),
            &format!("{prefix}-ha/binary_sensor/t1-home/fall/config"),
        ],
    );
    let online = late.wait_for(&format!("{prefix}/available"), |_| true);
    assert_eq!(online.payload, "online");
    assert!(online.retain, "available is not retained: {online:?}");
    let disc_late = late.wait_for(
        &format!("{prefix}-ha/binary_sensor/t1-home/fall/config"),
        |_| true,
    );
    assert!(disc_late.retain, "discovery is not retained: {disc_late:?}");
    assert_eq!(disc_late.payload, disc.payload);
    drop(late);

    // Up for 5 s, then on the floor for ten minutes.
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 600.0);
    assert_eq!(
        feed.said.len(),
        2,
        "check-in and alert sentences: {:?}",
        feed.said
    );
    let alerts_topic = format!("{prefix}/alerts");
    let alert = sub.wait_for(&alerts_topic, |_| true);
    wait_for("the outbox to drain", || {
        (m.pending_deliveries().0 == 0).then_some(())
    });
    let alerts = sub.settled_on(&alerts_topic);
    assert_eq!(alerts.len(), 1, "one fall, one alert message: {alerts:?}");
    let a = alert.json();
    let id = a["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("t1-home-") && id.ends_with("-fall"), "{id}");
    assert_eq!(a["type"], "new");
    assert_eq!(a["kind"], "fall");
    assert_eq!(a["step"], "alert");
    assert_eq!(a["label"], "person lying on the floor");
    assert_eq!(a["seq"], 2);
    assert_eq!(a["alert"]["state"], "active");
    assert_eq!(a["alert"]["contact"], "primary");
    assert_eq!(a["alert"]["escalated"], false);
    assert!((a["scores"]["lying"].as_f64().unwrap() - 0.55).abs() < 1e-6);
    assert!((a["scores"]["lying_threshold"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    let start = a["start_time"].as_f64().unwrap();
    let time = a["time"].as_f64().unwrap();
    assert!(
        (time - start - 40.0).abs() < 0.01,
        "T1 + T2 after the fall: {a}"
    );
    assert!(a["end_time"].is_null());
    assert_eq!(a["spoken"], "I have sent an alert to your carer.");
    // The events stream has the check-in and the alert under the same id.
    let events: Vec<_> = sub
        .on(&format!("{prefix}/events"))
        .iter()
        .map(|m| m.json())
        .filter(|v| v["id"] == id)
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["type"], "new");
    assert_eq!(events[0]["step"], "check_in");
    assert_eq!(
        events[0]["spoken"],
        "Are you all right? Press the button if you are."
    );
    assert_eq!(events[1]["type"], "update");
    // The retained state says "alert".
    let state = sub.wait_for(&format!("{prefix}/state"), |m| m.json()["fall"] == "alert");
    assert_eq!(state.json()["fall_alert"]["id"], id.as_str());

    // A caregiver acknowledges over MQTT: an update of the same alert, then the person gets up.
    sub.publish(
        &format!("{prefix}/set"),
        r#"{"command": "acknowledge", "by": "Anna"}"#,
    );
    wait_for("the acknowledge command", || {
        (feed.route_commands(&mut m, &commands) > 0).then_some(())
    });
    feed.up(&mut m, 25.0);
    let end = sub.wait_for(&alerts_topic, |m| m.json()["type"] == "end");
    let alerts: Vec<_> = sub.on(&alerts_topic).iter().map(|m| m.json()).collect();
    assert_eq!(
        alerts
            .iter()
            .map(|v| v["step"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["alert", "acknowledged", "resolved"]
    );
    assert!(alerts.iter().all(|v| v["id"] == id.as_str()));
    assert_eq!(alerts[1]["alert"]["acknowledged_by"], "Anna");
    assert_eq!(end.json()["alert"]["state"], "resolved");
    assert!(end.json()["end_time"].is_number());

    // Clean exit: offline. It is the monitor's last message on its connection, so every
    // alert it sent is in by now: still exactly these three.
    m.shutdown();
    sub.wait_for(&format!("{prefix}/available"), |m| m.payload == "offline");
    let steps: Vec<_> = sub
        .settled_on(&alerts_topic)
        .iter()
        .map(|m| m.json()["step"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(steps, ["alert", "acknowledged", "resolved"]);
    // Stats were published at start.
    assert!(!sub.on(&format!("{prefix}/stats")).is_empty());
}

#[test]
fn mqtt_alert_survives_broker_outage_and_restart() {
    let port = free_port();
    let mut broker =
        Broker::configured(port, "persistence true\npersistence_location PLACEHOLDER\n");
    // Point persistence at the broker's own temporary directory.
    let conf = broker.dir.path().join("mosquitto.conf");
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("PLACEHOLDER", &format!("{}/", broker.dir.path().display()));
    std::fs::write(&conf, text).unwrap();
    let prefix = "t2/home";
    let alerts_topic = format!("{prefix}/alerts");
    let watcher = |port| {
        Subscriber::connect_with(
            port,
            &[&alerts_topic],
            SubOptions {
                id: "t2-alert-watcher",
                clean: false,
                credentials: None,
            },
        )
    };
    // A caregiver's persistent session exists on the broker, then the broker goes down.
    broker.run();
    drop(watcher(port));
    broker.stop();

    // A fall while the broker is down: the alert waits on disk.
    let dir = tempfile::tempdir().unwrap();
    let cfg = home_config(dir.path(), Some(port), prefix);
    let mut m = HomeMonitor::start(cfg.clone(), HomeSecrets::default(), bus().0).unwrap();
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 60.0);
    assert!(feed.said.len() >= 2);
    assert!(
        m.pending_deliveries().0 >= 3,
        "check-in + alert (events, alerts) queued"
    );
    // The process restarts while the broker is still down.
    m.shutdown();
    let outbox = dir.path().join("outbox/mqtt");
    assert!(std::fs::read_dir(&outbox).unwrap().count() >= 3);
    let m = HomeMonitor::start(cfg, HomeSecrets::default(), bus().0).unwrap();

    // The broker comes back: the queued alert is delivered and leaves the disk.
    broker.run();
    let sub = watcher(port);
    let alert = sub.wait_for(&alerts_topic, |_| true);
    assert_eq!(alert.json()["type"], "new");
    assert_eq!(alert.json()["kind"], "fall");
    wait_for("the outbox to drain", || {
        (m.pending_deliveries().0 == 0).then_some(())
    });
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 0);
    // Neither the monitor (a resend from the outbox) nor the broker (the persistent session's
    // queue) may deliver a second copy: the count must settle at one.
    let alerts = sub.settled_on(&alerts_topic);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    m.shutdown();
}

/// Not a test of its own: the body of the child process that `mqtt_last_will...` kills.
#[test]
fn mqtt_child_process_helper() {
    let Ok(port) = std::env::var("CLIPSIGHT_HOME_TEST_CHILD_PORT") else {
        return; // an ordinary test run
    };
    let port: u16 = port.parse().unwrap();
    let dir = std::env::var("CLIPSIGHT_HOME_TEST_CHILD_DIR").unwrap();
    let cfg = home_config(std::path::Path::new(&dir), Some(port), "t3/home");
    let _m = HomeMonitor::start(cfg, HomeSecrets::default(), bus().0).unwrap();
    println!("CHILD READY");
    // Wait to be killed; give up after a while so an orphan cannot linger.
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn mqtt_last_will_marks_offline_when_killed() {
    let broker = Broker::start("");
    let sub = Subscriber::connect(broker.port, &["t3/home/available"]);
    let child_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "mqtt::mqtt_child_process_helper", "--nocapture"])
        .env("CLIPSIGHT_HOME_TEST_CHILD_PORT", broker.port.to_string())
        .env("CLIPSIGHT_HOME_TEST_CHILD_DIR", child_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sub.wait_for("t3/home/available", |m| m.payload == "online");
    child.kill().unwrap(); // SIGKILL: no clean exit
    child.wait().unwrap();
    let offline = sub.wait_for("t3/home/available", |m| m.payload == "offline");
    assert_eq!(offline.payload, "offline");
    // The will is retained: a newcomer sees it too.
    let late = Subscriber::connect(broker.port, &["t3/home/available"]);
    let seen = late.wait_for("t3/home/available", |_| true);
    assert_eq!(seen.payload, "offline");
    assert!(seen.retain);
}

#[test]
fn mqtt_set_cancel_during_check_in_means_no_alert() {
    let broker = Broker::start("");
    let dir = tempfile::tempdir().unwrap();
    let prefix = "t4/home";
    let sub = Subscriber::connect(broker.port, &[&format!("{prefix}/#")]);
    let (bus_tx, commands) = bus();
    let mut m = HomeMonitor::start(
        home_config(dir.path(), Some(broker.port), prefix),
        HomeSecrets::default(),
        bus_tx,
    )
    .unwrap();
    sub.wait_for(&format!("{prefix}/available"), |m| m.payload == "online");
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 12.0); // check-in spoken
    assert_eq!(feed.said.len(), 1);
    sub.wait_for(&format!("{prefix}/events"), |m| {
        m.json()["step"] == "check_in"
    });

    sub.publish(&format!("{prefix}/set"), "cancel");
    let cmd = commands.recv_timeout(WAIT).expect("the cancel command");
    let clipsight::Command::Home(cmd) = cmd else {
        panic!("not a home command: {cmd:?}")
    };
    assert_eq!(
        cmd,
        HomeCommand::Cancel {
            source: CommandSource::Mqtt
        }
    );
    let at = feed.at();
    feed.said.extend(m.command(&at, cmd));
    // Still on the floor well past T2: no alert.
    feed.lying(&mut m, 120.0);
    let end = sub.wait_for(&format!("{prefix}/events"), |m| {
        m.json()["step"] == "check_in_cancelled"
    });
    assert_eq!(end.json()["type"], "end");
    assert_eq!(end.json()["by"], "mqtt");
    wait_for("the outbox to drain", || {
        (m.pending_deliveries().0 == 0).then_some(())
    });
    let alerts = sub.settled_on(&format!("{prefix}/alerts"));
    assert!(alerts.is_empty(), "{alerts:?}");
    assert_eq!(
        feed.said
            .iter()
            .map(|u| u.text.as_str())
            .collect::<Vec<_>>(),
        vec![
            "Are you all right? Press the button if you are.",
            "All right. I will not call anyone."
        ]
    );
    // A retained command on the set topic would be replayed on every reconnect: a monitor
    // that connects later must ignore it.
    sub.client
        .publish(
            format!("{prefix}/set"),
            rumqttc::QoS::AtLeastOnce,
            true,
            "cancel",
        )
        .unwrap();
    let live = commands
        .recv_timeout(WAIT)
        .expect("delivered live, it is a command");
    assert!(
        matches!(live, clipsight::Command::Home(HomeCommand::Cancel { .. })),
        "{live:?}"
    );
    let onlines = || {
        sub.on(&format!("{prefix}/available"))
            .iter()
            .filter(|m| m.payload == "online")
            .count()
    };
    let before = onlines();
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg2 = home_config(dir2.path(), Some(broker.port), prefix);
    if let Some(mq) = &mut cfg2.mqtt {
        mq.client_id = Some("t4-second".into());
    }
    let (second_bus, second_commands) = bus();
    let second = HomeMonitor::start(cfg2, HomeSecrets::default(), second_bus).unwrap();
    wait_for("the second monitor online", || {
        (onlines() > before).then_some(())
    });
    // A live command after the second monitor subscribed: the broker hands a retained message
    // to a new subscription before anything published later, so the first command the second
    // monitor acts on must be this one, not the retained cancel.
    sub.publish(
        &format!("{prefix}/set"),
        r#"{"command": "acknowledge", "by": "probe"}"#,
    );
    let first = second_commands
        .recv_timeout(WAIT)
        .expect("the live command reaches the second monitor");
    assert!(
        matches!(
            first,
            clipsight::Command::Home(HomeCommand::Acknowledge { .. })
        ),
        "{first:?}: a retained command was acted on"
    );
    second.shutdown();
    m.shutdown();
    // Both monitors are gone: still no alert, ever, in this test.
    let alerts = sub.settled_on(&format!("{prefix}/alerts"));
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn mqtt_alert_still_goes_out_when_the_event_log_disk_is_full() {
    // The event log's file is /dev/full: every append fails with "no space left on device".
    let broker = Broker::start("");
    let dir = tempfile::tempdir().unwrap();
    let prefix = "full/home";
    let sub = Subscriber::connect(broker.port, &[&format!("{prefix}/#")]);
    std::os::unix::fs::symlink("/dev/full", dir.path().join("events.jsonl")).unwrap();
    let mut cfg = home_config(dir.path(), Some(broker.port), prefix);
    cfg.fall.ack_seconds = 100_000.0;
    cfg.stats_interval_seconds = 10.0;
    let mut m = HomeMonitor::start(cfg, HomeSecrets::default(), bus().0).unwrap();
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 120.0);
    assert_eq!(
        feed.said.len(),
        2,
        "check-in and alert are still spoken: {:?}",
        feed.said
    );
    let alert = sub.wait_for(&format!("{prefix}/alerts"), |_| true).json();
    assert_eq!(alert["step"], "alert");
    // The README's promise: each failed append is counted in `errors.event_log` of the stats
    // (the check-in and the alert are two records; the last stats message came after both).
    // Stats go out every 10 s of the feed's time; one after the alert carries the count.
    let stats = sub.wait_for(&format!("{prefix}/stats"), |m| {
        m.json()["errors"]["event_log"].as_u64() >= Some(2)
    });
    assert_eq!(stats.json()["errors"]["outbox"], 0, "{}", stats.payload);
    m.shutdown();
}
