//! Webhook: POSTs, retries, the heartbeat, the second contact.

use std::time::Duration;

use clipsight::home::config::WebhookConfig;
use clipsight::home::{HomeMonitor, HomeSecrets};

use crate::common::*;

fn webhook(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        heartbeat_seconds: 0.0,
        timeout_seconds: 5.0,
        retry_min_seconds: 0.3,
        retry_max_seconds: 1.0,
        ..WebhookConfig::default()
    }
}

#[test]
fn webhook_posts_the_alert_and_retries_after_a_500() {
    let server = HttpServer::start(vec![500]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = home_config(dir.path(), None, "w1");
    cfg.webhook = Some(webhook(server.url("/hook")));
    let mut m =
        HomeMonitor::start(cfg, HomeSecrets::default(), clipsight::controls::bus().0).unwrap();
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 60.0);
    let reqs = wait_for("a retried POST", || {
        let r = server.requests();
        (r.len() >= 2).then_some(r)
    });
    wait_for("the webhook outbox to drain", || {
        (m.pending_deliveries().1 == 0).then_some(())
    });
    let (first, second) = (&reqs[0], &reqs[1]);
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/hook");
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.body, second.body, "the retry sends the same record");
    let gap = second.at.duration_since(first.at);
    assert!(gap >= Duration::from_millis(250), "retried after {gap:?}");
    let v = second.json();
    assert_eq!(v["topic"], "alerts");
    assert_eq!(v["type"], "new");
    assert_eq!(v["kind"], "fall");
    assert_eq!(v["alert"]["state"], "active");
    assert!(v["id"].as_str().unwrap().ends_with("-fall"));
    assert!(
        first.header("authorization").is_none(),
        "no token configured"
    );
    // Only alerts go to the webhook by default (the check-in is an event), and the delivered
    // alert is not sent again: the count settles at the failed POST and its retry.
    let n = settled("the webhook requests", QUIET, || server.requests().len());
    assert_eq!(n, 2, "{:#?}", server.requests());
    assert_eq!(
        server
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [500, 200]
    );
    m.shutdown();
}

#[test]
fn webhook_heartbeat_is_posted_periodically() {
    let server = HttpServer::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = home_config(dir.path(), None, "w2");
    let mut w = webhook(server.url("/beat"));
    w.heartbeat_seconds = 0.3;
    cfg.webhook = Some(w);
    let m = HomeMonitor::start(cfg, HomeSecrets::default(), clipsight::controls::bus().0).unwrap();
    let reqs = wait_for("two heartbeats", || {
        let r = server.requests();
        (r.len() >= 2).then_some(r)
    });
    for r in &reqs[..2] {
        let v = r.json();
        assert_eq!(v["type"], "heartbeat");
        assert_eq!(v["topic"], "heartbeat");
        assert_eq!(v["node"], "w2");
        assert!(v["sent_time"].is_number(), "{v}");
        assert_eq!(v["state"]["fall"], "watching");
    }
    m.shutdown();
}

#[test]
fn webhook_escalation_reaches_the_second_contact() {
    let first = HttpServer::start(vec![]);
    let second = HttpServer::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = home_config(dir.path(), None, "w3");
    let mut w = webhook(first.url("/first"));
    w.escalation_url = Some(second.url("/second"));
    cfg.webhook = Some(w);
    cfg.fall.ack_seconds = 60.0;
    let mut m =
        HomeMonitor::start(cfg, HomeSecrets::default(), clipsight::controls::bus().0).unwrap();
    let mut feed = Feed::new();
    feed.up(&mut m, 5.0);
    feed.lying(&mut m, 120.0); // alert at ~45 s, escalation 60 s later
    let esc = wait_for("the escalation at the second contact", || {
        second.requests().into_iter().next()
    });
    let v = esc.json();
    assert_eq!(v["step"], "escalated");
    assert_eq!(v["alert"]["contact"], "secondary");
    assert_eq!(v["alert"]["escalated"], true);
    let firsts = wait_for("alert and escalation at the first contact", || {
        let r = first.requests();
        (r.len() >= 2).then_some(r)
    });
    assert_eq!(firsts[0].json()["step"], "alert");
    assert_eq!(firsts[1].json()["step"], "escalated");
    assert_eq!(firsts[0].json()["id"], v["id"]);
    // The end of the incident reaches both.
    feed.up(&mut m, 25.0);
    wait_for("the end at the second contact", || {
        second
            .requests()
            .iter()
            .any(|r| r.json()["type"] == "end")
            .then_some(())
    });
    m.shutdown();
}
