//! The fall state machine's tests: check-in, alert, escalation, darkness, inactivity.

use super::*;
use crate::home::config::InactivityConfig;

const THRESHOLD: f32 = 0.3;
/// Frames per second of the synthetic streams.
const FPS: f64 = 2.0;
/// 08:00 local time, where most synthetic days start.
const EIGHT_AM: f64 = 8.0 * 3600.0;

struct Sim {
    m: FallMonitor,
    t: f64,
    start_sod: f64,
    log: Vec<FallAction>,
}

impl Sim {
    fn new(cfg: FallConfig) -> Sim {
        Sim::with(cfg, None, EIGHT_AM)
    }

    fn with(cfg: FallConfig, ina: Option<InactivityConfig>, start_sod: f64) -> Sim {
        Sim {
            m: FallMonitor::new(&cfg, ina.as_ref()).unwrap(),
            t: 0.0,
            start_sod,
            log: Vec::new(),
        }
    }

    fn at(&self) -> Stamp {
        Stamp::synthetic(self.t, self.start_sod)
    }

    /// Feeds `seconds` of frames showing `view`.
    fn run(&mut self, seconds: f64, view: View) -> Vec<FallAction> {
        let mut got = Vec::new();
        let frames = (seconds * FPS).round() as usize;
        for _ in 0..frames {
            self.t += 1.0 / FPS;
            let obs = PersonObservation {
                at: self.at(),
                view,
            };
            got.extend(self.m.observe(&obs));
        }
        self.log.extend(got.clone());
        got
    }

    fn lying(&mut self, seconds: f64) -> Vec<FallAction> {
        self.run(seconds, seen(0.5, false))
    }

    fn up(&mut self, seconds: f64) -> Vec<FallAction> {
        self.run(seconds, seen(0.1, true))
    }

    fn empty_room(&mut self, seconds: f64) -> Vec<FallAction> {
        self.run(seconds, seen(0.1, false))
    }

    fn dark(&mut self, seconds: f64) -> Vec<FallAction> {
        self.run(seconds, View::CantSee)
    }

    fn ticks(&mut self, seconds: f64) -> Vec<FallAction> {
        let mut got = Vec::new();
        for _ in 0..(seconds.round() as usize) {
            self.t += 1.0;
            got.extend(self.m.tick(&self.at()));
        }
        self.log.extend(got.clone());
        got
    }

    fn cancel(&mut self, by: CommandSource) -> Vec<FallAction> {
        let got = self.m.cancel(&self.at(), by);
        self.log.extend(got.clone());
        got
    }

    fn count(&self, f: impl Fn(&FallAction) -> bool) -> usize {
        self.log.iter().filter(|a| f(a)).count()
    }
}

fn seen(lying: f32, up: bool) -> View {
    View::Seen {
        lying,
        lying_threshold: THRESHOLD,
        up,
    }
}

fn is_check_in(a: &FallAction) -> bool {
    matches!(a, FallAction::CheckIn { .. })
}

fn is_alert(a: &FallAction) -> bool {
    matches!(a, FallAction::AlertRaised { .. })
}

/// Drives a sim to a raised fall alert; returns its incident.
fn to_alert(s: &mut Sim) -> IncidentId {
    s.up(5.0);
    s.lying(11.0);
    assert_eq!(s.m.state().fall, FallPhase::CheckIn);
    s.lying(30.0);
    match s.log.iter().rev().find(|a| is_alert(a)) {
        Some(FallAction::AlertRaised { incident, .. }) => *incident,
        other => panic!("no alert: {other:?} in {:?}", s.log),
    }
}

#[test]
fn lying_for_t1_speaks_a_check_in_once() {
    let mut s = Sim::new(FallConfig::default());
    s.up(5.0);
    assert!(s.lying(9.0).is_empty(), "check-in before T1");
    assert_eq!(s.m.state().fall, FallPhase::Pending);
    let got = s.lying(1.5);
    assert!(
        matches!(got.as_slice(), [FallAction::CheckIn { lying_since, .. }] if (*lying_since - 5.5).abs() < 1e-9),
        "{got:?}"
    );
    assert_eq!(s.m.state().fall, FallPhase::CheckIn);
    s.lying(20.0);
    assert_eq!(s.count(is_check_in), 1);
}

#[test]
fn a_short_lie_down_does_nothing() {
    let mut s = Sim::new(FallConfig::default());
    for _ in 0..20 {
        s.lying(8.0);
        s.up(1.0);
    }
    assert!(s.log.is_empty(), "{:?}", s.log);
    assert_eq!(s.m.state().fall, FallPhase::Watching);
}

#[test]
fn unanswered_check_in_raises_one_alert() {
    let mut s = Sim::new(FallConfig::default());
    s.up(5.0);
    s.lying(10.5);
    assert!(s.lying(29.0).is_empty(), "alert before T2: {:?}", s.log);
    let got = s.lying(1.5);
    assert!(
        matches!(
            got.as_slice(),
            [FallAction::AlertRaised {
                kind: AlertKind::Fall,
                ..
            }]
        ),
        "{got:?}"
    );
    assert_eq!(s.m.state().fall, FallPhase::Alert);
}

#[test]
fn no_alert_storm_one_fall_one_alert() {
    let cfg = FallConfig {
        ack_seconds: 1e6, // no escalation in this test
        ..FallConfig::default()
    };
    let mut s = Sim::new(cfg);
    let incident = to_alert(&mut s);
    // An hour on the floor with a flickering score, darkness and ticks.
    for _ in 0..60 {
        s.lying(40.0);
        s.empty_room(2.0); // score dips below threshold, nobody up
        s.dark(10.0);
        s.ticks(8.0);
    }
    assert_eq!(s.count(is_alert), 1, "{:?}", s.log);
    assert_eq!(s.count(is_check_in), 1);
    // Only can't-see events happened meanwhile, no other fall messages.
    assert!(s.log.iter().all(|a| matches!(
        a,
        FallAction::CheckIn { .. }
            | FallAction::AlertRaised { .. }
            | FallAction::CantSeeStarted { .. }
            | FallAction::CantSeeEnded { .. }
    )));
    assert_eq!(s.m.active_alerts(), vec![incident]);
}

#[test]
fn cancel_during_check_in_means_no_alert() {
    for by in [
        CommandSource::Button,
        CommandSource::Socket,
        CommandSource::Mqtt,
    ] {
        let mut s = Sim::new(FallConfig::default());
        s.up(5.0);
        s.lying(11.0);
        let got = s.cancel(by);
        assert!(
            matches!(got.as_slice(), [FallAction::CheckInCancelled { by: b, .. }] if *b == by),
            "{got:?}"
        );
        s.lying(200.0);
        assert_eq!(s.count(is_alert), 0, "{:?}", s.log);
        assert_eq!(s.count(is_check_in), 1);
    }
}

#[test]
fn still_lying_after_a_cancel_asks_again_later() {
    let mut s = Sim::new(FallConfig::default());
    s.up(5.0);
    s.lying(11.0);
    s.cancel(CommandSource::Button);
    s.lying(290.0);
    assert_eq!(s.count(is_check_in), 1);
    s.lying(15.0);
    assert_eq!(s.count(is_check_in), 2, "{:?}", s.log);
}

#[test]
fn getting_up_ends_a_check_in_without_alert() {
    let mut s = Sim::new(FallConfig::default());
    s.up(5.0);
    s.lying(11.0);
    let got = s.up(21.0);
    assert!(
        matches!(got.as_slice(), [FallAction::Recovered { .. }]),
        "{got:?}"
    );
    s.up(60.0);
    assert_eq!(s.count(is_alert), 0);
}

#[test]
fn getting_up_at_t2_defers_the_alert_until_it_succeeds_or_fails() {
    let mut s = Sim::new(FallConfig::default());
    s.up(5.0);
    s.lying(11.0);
    s.lying(20.0);
    s.up(15.0); // T2 passes while getting up: the alert waits
    assert_eq!(s.count(is_alert), 0);
    s.up(6.0);
    assert_eq!(s.count(|a| matches!(a, FallAction::Recovered { .. })), 1);
    assert_eq!(s.count(is_alert), 0);
    // A failed attempt: the alert comes as soon as the person is down again.
    let mut s = Sim::new(FallConfig::default());
    s.up(5.0);
    s.lying(11.0);
    s.lying(20.0);
    s.up(12.0);
    assert_eq!(s.count(is_alert), 0);
    let got = s.lying(0.5);
    assert!(got.iter().any(is_alert), "{got:?}");
}

#[test]
fn alert_resolves_after_t3_up() {
    let mut s = Sim::new(FallConfig::default());
    let incident = to_alert(&mut s);
    s.up(10.0);
    s.lying(1.0); // down again: the T3 count restarts
    assert!(s.up(19.0).is_empty());
    let got = s.up(1.5);
    assert_eq!(
        got,
        vec![FallAction::AlertResolved {
            incident,
            kind: AlertKind::Fall
        }]
    );
    assert_eq!(s.m.state().fall, FallPhase::Watching);
    assert!(s.m.active_alerts().is_empty());
    // A second fall is a second incident with its own alert.
    let second = to_alert(&mut s);
    assert_ne!(second, incident);
    assert_eq!(s.count(is_alert), 2);
}

#[test]
fn unacknowledged_alert_escalates_once_and_ack_stops_it() {
    let mut s = Sim::new(FallConfig::default());
    let incident = to_alert(&mut s);
    s.lying(298.0);
    assert_eq!(
        s.count(|a| matches!(a, FallAction::AlertEscalated { .. })),
        0
    );
    s.lying(2.0);
    s.lying(1000.0);
    assert_eq!(
        s.count(|a| matches!(a, FallAction::AlertEscalated { incident: i, .. } if *i == incident)),
        1
    );
    let got = s.m.acknowledge(&s.at(), "Anna", None);
    assert_eq!(
        got,
        vec![FallAction::AlertAcknowledged {
            incident,
            kind: AlertKind::Fall,
            by: "Anna".into()
        }]
    );
    assert!(s.m.state().fall_alert.unwrap().acknowledged);
    assert!(s.m.acknowledge(&s.at(), "Anna", None).is_empty());
}

#[test]
fn acknowledged_in_time_never_escalates() {
    let mut s = Sim::new(FallConfig::default());
    let incident = to_alert(&mut s);
    s.lying(60.0);
    assert_eq!(
        s.m.acknowledge(&s.at(), "Ben", Some(incident + 100)),
        vec![]
    );
    assert_eq!(s.m.acknowledge(&s.at(), "Ben", Some(incident)).len(), 1);
    s.lying(1000.0);
    assert_eq!(
        s.count(|a| matches!(a, FallAction::AlertEscalated { .. })),
        0
    );
    assert_eq!(s.m.state().fall, FallPhase::Alert);
}

#[test]
fn realert_once_sends_no_reminders() {
    let cfg = FallConfig {
        ack_seconds: 1e6,
        ..FallConfig::default()
    };
    let mut s = Sim::new(cfg);
    to_alert(&mut s);
    s.lying(3600.0);
    assert_eq!(
        s.count(|a| matches!(a, FallAction::AlertReminder { .. })),
        0
    );
}

#[test]
fn realert_repeat_sends_bounded_reminders_until_ack() {
    let cfg = FallConfig {
        ack_seconds: 1e6,
        realert: RealertPolicy::Repeat {
            every_seconds: 100.0,
            max_repeats: 3,
        },
        ..FallConfig::default()
    };
    let mut s = Sim::new(cfg.clone());
    to_alert(&mut s);
    s.lying(1000.0);
    let counts: Vec<u32> = s
        .log
        .iter()
        .filter_map(|a| match a {
            FallAction::AlertReminder { count, .. } => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![1, 2, 3]);
    assert_eq!(s.count(is_alert), 1);
    // Acknowledged: no more reminders.
    let mut s = Sim::new(cfg);
    to_alert(&mut s);
    s.lying(150.0);
    s.m.acknowledge(&s.at(), "x", None);
    s.lying(1000.0);
    assert_eq!(
        s.count(|a| matches!(a, FallAction::AlertReminder { .. })),
        1
    );
}

#[test]
fn cancel_after_the_alert_ends_it() {
    let mut s = Sim::new(FallConfig::default());
    let incident = to_alert(&mut s);
    let got = s.cancel(CommandSource::Mqtt);
    assert_eq!(
        got,
        vec![FallAction::AlertCancelled {
            incident,
            kind: AlertKind::Fall,
            by: CommandSource::Mqtt
        }]
    );
    s.lying(100.0);
    assert_eq!(s.count(is_alert), 1);
}

#[test]
fn darkness_is_reported_and_neither_resets_nor_advances_a_pending_fall() {
    let mut s = Sim::new(FallConfig::default());
    s.up(5.0);
    s.lying(6.0);
    let got = s.dark(60.0);
    assert!(
        matches!(
            got.as_slice(),
            [FallAction::CantSeeStarted {
                fall_pending: true,
                ..
            }]
        ),
        "{got:?}"
    );
    assert_eq!(s.count(is_check_in), 0, "darkness counted as lying");
    assert_eq!(s.m.state().fall, FallPhase::Pending);
    assert!(s.m.state().cant_see);
    // Back in view, still lying: the 6 s before the dark count, so 4.5 more reach T1.
    let got = s.lying(4.0);
    assert!(
        matches!(got.as_slice(), [FallAction::CantSeeEnded { .. }]),
        "{got:?}"
    );
    let got = s.lying(1.0);
    assert!(got.iter().any(is_check_in), "{got:?}");
}

#[test]
fn darkness_does_not_stop_an_alert_or_count_as_getting_up() {
    let mut s = Sim::new(FallConfig::default());
    s.up(5.0);
    s.lying(11.0);
    s.dark(40.0); // unanswered check-in in the dark: still an alert
    assert_eq!(s.count(is_alert), 1, "{:?}", s.log);
    s.up(10.0);
    s.dark(10.0);
    s.up(15.0); // 10 + 15 up, but split by darkness: not resolved
    assert_eq!(s.m.state().fall, FallPhase::Alert);
    s.up(6.0);
    assert_eq!(s.m.state().fall, FallPhase::Watching);
}

#[test]
fn brief_darkness_is_not_reported() {
    let mut s = Sim::new(FallConfig::default());
    for _ in 0..10 {
        s.up(3.0);
        s.dark(4.0);
    }
    assert!(s.log.is_empty(), "{:?}", s.log);
}

#[test]
fn a_stalled_pipeline_does_not_fake_evidence() {
    let mut s = Sim::new(FallConfig::default());
    s.up(2.0);
    s.lying(1.0);
    s.t += 60.0; // a minute without frames
    s.lying(1.0);
    assert_eq!(s.count(is_check_in), 0);
    assert_eq!(s.m.state().fall, FallPhase::Pending);
}

#[test]
fn nan_scores_are_not_evidence() {
    let mut s = Sim::new(FallConfig::default());
    s.up(2.0);
    s.run(60.0, seen(f32::NAN, false));
    assert_eq!(s.count(is_check_in), 0);
    assert!(s.m.state().cant_see);
}

#[test]
fn mute_blocks_new_check_ins_and_expires() {
    let mut s = Sim::new(FallConfig::default());
    let got = s.m.mute(&s.at(), Some(120.0), CommandSource::Mqtt);
    assert!(matches!(got.as_slice(), [FallAction::Muted { .. }]));
    s.lying(100.0);
    assert_eq!(s.count(is_check_in), 0);
    let got = s.lying(21.0);
    assert!(matches!(got[0], FallAction::Unmuted { .. }), "{got:?}");
    assert!(got.iter().any(is_check_in), "{got:?}");
    // A huge mute is cut to a day.
    let got = s.m.mute(&s.at(), Some(1e9), CommandSource::Mqtt);
    match got.as_slice() {
        [FallAction::Muted { until, .. }, FallAction::CheckInCancelled { .. }] => {
            assert!((until - s.t - MAX_MUTE_SECONDS).abs() < 1e-6)
        }
        other => panic!("{other:?}"),
    }
    // Unmuted while still lying: asked again at once.
    assert!(matches!(
        s.m.unmute(&s.at()).as_slice(),
        [FallAction::Unmuted { .. }, FallAction::CheckIn { .. }]
    ));
}

fn window() -> InactivityConfig {
    InactivityConfig {
        window_start: "06:00".into(),
        seen_up_by: "10:00".into(),
    }
}

#[test]
fn inactivity_alert_when_not_seen_up_by_the_deadline() {
    // Start at 05:00; the person stays in bed (nobody up in view), ticks every second.
    let mut s = Sim::with(FallConfig::default(), Some(window()), 5.0 * 3600.0);
    s.empty_room(10.0);
    let got = s.ticks(5.0 * 3600.0 - 20.0);
    assert!(got.is_empty(), "{got:?}");
    let got = s.ticks(20.0);
    let incident = match got.as_slice() {
        [FallAction::AlertRaised {
            incident,
            kind: AlertKind::Inactivity,
        }] => *incident,
        other => panic!("{other:?}"),
    };
    s.ticks(100.0);
    assert_eq!(s.count(is_alert), 1);
    // Escalates like a fall alert, and resolves when the person is seen up.
    s.ticks(300.0);
    assert_eq!(
        s.count(|a| matches!(
            a,
            FallAction::AlertEscalated {
                kind: AlertKind::Inactivity,
                ..
            }
        )),
        1
    );
    let got = s.up(4.0);
    assert_eq!(
        got,
        vec![FallAction::AlertResolved {
            incident,
            kind: AlertKind::Inactivity
        }]
    );
}

#[test]
fn seen_up_in_the_window_means_no_inactivity_alert() {
    let mut s = Sim::with(FallConfig::default(), Some(window()), 5.0 * 3600.0);
    s.ticks(1.5 * 3600.0); // 06:30
    s.up(5.0);
    s.empty_room(1.0);
    s.ticks(4.0 * 3600.0);
    assert_eq!(s.count(is_alert), 0, "{:?}", s.log);
}

#[test]
fn up_before_the_window_does_not_count_and_days_reset() {
    // 05:00 up, then nothing: alert at 10:00.
    let mut s = Sim::with(FallConfig::default(), Some(window()), 5.0 * 3600.0);
    s.up(10.0);
    s.empty_room(1.0);
    s.ticks(5.0 * 3600.0);
    assert_eq!(s.count(is_alert), 1);
    s.up(5.0); // resolves
               // Next day: seen up at 07:00, so no alert.
    s.ticks(21.0 * 3600.0);
    s.up(5.0);
    s.empty_room(1.0);
    s.ticks(4.0 * 3600.0);
    assert_eq!(s.count(is_alert), 1, "{:?}", s.log);
}

#[test]
fn inactivity_check_skipped_when_started_inside_the_window() {
    let mut s = Sim::with(FallConfig::default(), Some(window()), 7.0 * 3600.0);
    s.ticks(4.0 * 3600.0);
    assert_eq!(s.count(is_alert), 0);
}

#[test]
fn button_press_is_a_sign_of_life_and_cancels_an_inactivity_alert() {
    let mut s = Sim::with(FallConfig::default(), Some(window()), 5.0 * 3600.0);
    s.ticks(5.0 * 3600.0 + 10.0);
    assert_eq!(s.count(is_alert), 1);
    let got = s.cancel(CommandSource::Button);
    assert!(matches!(
        got.as_slice(),
        [FallAction::AlertCancelled {
            kind: AlertKind::Inactivity,
            ..
        }]
    ));
    assert_eq!(s.m.state().inactivity_alert, None);
}

#[test]
fn time_going_backwards_is_clamped() {
    let mut s = Sim::new(FallConfig::default());
    s.up(2.0);
    s.lying(5.0);
    s.t -= 100.0;
    s.lying(3.0);
    assert_eq!(s.m.state().fall, FallPhase::Pending);
    assert_eq!(s.count(is_check_in), 0);
}
