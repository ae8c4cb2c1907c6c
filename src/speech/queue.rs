//! The speech thread: a queue ordered by urgency in front of a chain of speakers. Hazards
//! interrupt, stale chatter is dropped, muting silences objects and people only, and a failing
//! backend hands over to the next one in the chain.

use std::collections::VecDeque;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Serialize;

use super::{LogSpeaker, Speaker, VoiceConfig};
use crate::types::{Kind, Utterance};

/// Messages to the speech thread.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechCommand {
    /// Queue an utterance by urgency; one with `interrupt` set cuts the current one short.
    Say(Utterance),
    /// Mute or unmute objects and people (`None` toggles).
    Mute(Option<bool>),
    /// Say the last utterance again (a status one only if nothing else was said).
    RepeatLast,
    /// Play a short tone now if nothing is being said or waits to be said; otherwise drop
    /// it (find mode's beeps never delay a sentence).
    Tone(super::Tone),
    /// Say what is queued, then stop.
    Finish,
    /// Stop now.
    Stop,
}

/// Counters of the speech thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpeechStats {
    /// Utterances handed to a speaker.
    pub spoken: u64,
    /// Utterances cut short by a more urgent one.
    pub interrupted: u64,
    /// Objects and people dropped because they waited longer than `stale_after_s`.
    pub dropped_stale: u64,
    /// Objects and people dropped while muted.
    pub muted: u64,
    /// Backend failures (each moves speech to the next speaker of the chain).
    pub backend_failures: u64,
    /// Find-mode tones played.
    pub tones: u64,
}

/// How often the speech loop wakes to poll the backend, at most.
const SPEECH_POLL: Duration = Duration::from_millis(20);
/// The longest the speech thread waits for a sentence to finish when asked to finish.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

struct SpeechLoop {
    chain: Vec<Box<dyn Speaker>>,
    active: usize,
    queue: VecDeque<(Utterance, Instant)>,
    current: Option<Utterance>,
    last: Option<Utterance>,
    muted: bool,
    stale_after: Duration,
    stats: SpeechStats,
}

impl SpeechLoop {
    fn speaking(&mut self) -> bool {
        let speaking = self.chain[self.active].is_speaking();
        if !speaking {
            let current = self.current.take();
            if let Some(why) = self.chain[self.active].take_failure() {
                // The backend died while speaking: say it again on the next one.
                if self.fall_back(&why) {
                    if let Some(u) = current {
                        self.speak(u);
                        return self.chain[self.active].is_speaking();
                    }
                }
            }
        }
        speaking
    }

    /// Counts a backend failure and moves to the next speaker of the chain; false when the
    /// failed one was the last.
    fn fall_back(&mut self, why: &dyn std::fmt::Display) -> bool {
        self.stats.backend_failures += 1;
        if self.active + 1 >= self.chain.len() {
            return false;
        }
        let failed = self.chain[self.active].name();
        self.active += 1;
        log::error!(
            "speech backend {failed} failed: {why}; falling back to {}",
            self.chain[self.active].name()
        );
        true
    }

    fn enqueue(&mut self, u: Utterance) {
        if self.muted && matches!(u.kind, Kind::Object | Kind::Person) {
            self.stats.muted += 1;
            return;
        }
        if u.interrupt {
            let more_urgent_playing = self.current.as_ref().is_some_and(|c| c.kind > u.kind);
            if !more_urgent_playing && self.speaking() {
                self.chain[self.active].stop();
                self.stats.interrupted += 1;
                self.current = None;
            }
        }
        // Keep the queue ordered by urgency; equal kinds keep their order.
        let pos = self
            .queue
            .iter()
            .position(|(q, _)| q.urgency() < u.urgency())
            .unwrap_or(self.queue.len());
        self.queue.insert(pos, (u, Instant::now()));
    }

    /// Speaks `u`, falling back along the chain. The last speaker (the log) cannot fail.
    fn speak(&mut self, u: Utterance) {
        loop {
            match self.chain[self.active].say(&u) {
                Ok(()) => {
                    self.stats.spoken += 1;
                    self.current = Some(u.clone());
                    if u.kind != Kind::Status || self.last.is_none() {
                        self.last = Some(u);
                    }
                    return;
                }
                Err(e) => {
                    if !self.fall_back(&e) {
                        log::error!("could not speak {:?}: {e}", u.text);
                        return;
                    }
                }
            }
        }
    }

    fn tone(&mut self, tone: &super::Tone) {
        if !self.queue.is_empty() || self.speaking() {
            return;
        }
        match self.chain[self.active].tone(tone) {
            Ok(()) => self.stats.tones += 1,
            Err(e) => log::warn!("tone: {e}"),
        }
    }

    fn pump(&mut self) {
        if self.speaking() {
            return;
        }
        while let Some((u, queued)) = self.queue.pop_front() {
            let urgent = matches!(
                u.kind,
                Kind::Hazard | Kind::CheckIn | Kind::Status | Kind::Find
            );
            if !urgent && queued.elapsed() > self.stale_after {
                self.stats.dropped_stale += 1;
                log::debug!("dropped stale: {}", u.text);
                continue;
            }
            self.speak(u);
            return;
        }
    }
}

/// The speech thread's handle.
pub struct SpeechThread {
    /// Sends commands to the thread.
    pub tx: Sender<SpeechCommand>,
    handle: JoinHandle<SpeechStats>,
}

impl SpeechThread {
    /// Starts the thread with a speaker chain (see [`speaker_chain`](super::speaker_chain)).
    pub fn spawn(chain: Vec<Box<dyn Speaker>>, voice: &VoiceConfig) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let mut state = SpeechLoop {
            chain,
            active: 0,
            queue: VecDeque::new(),
            current: None,
            last: None,
            muted: false,
            stale_after: Duration::from_secs_f64(voice.stale_after_s.max(0.0)),
            stats: SpeechStats::default(),
        };
        if state.chain.is_empty() {
            state.chain.push(Box::new(LogSpeaker));
        }
        let handle = std::thread::Builder::new()
            .name("speech".into())
            .spawn(move || run_loop(state, rx))?;
        Ok(SpeechThread { tx, handle })
    }

    /// Asks the thread to say what is queued and waits for it.
    pub fn finish(self) -> SpeechStats {
        let _ = self.tx.send(SpeechCommand::Finish);
        self.handle.join().unwrap_or_default()
    }

    /// Stops the thread at once.
    pub fn stop(self) -> SpeechStats {
        let _ = self.tx.send(SpeechCommand::Stop);
        self.handle.join().unwrap_or_default()
    }
}

fn run_loop(mut s: SpeechLoop, rx: Receiver<SpeechCommand>) -> SpeechStats {
    let mut finishing: Option<Instant> = None;
    loop {
        match rx.recv_timeout(SPEECH_POLL) {
            Ok(SpeechCommand::Say(u)) => s.enqueue(u),
            Ok(SpeechCommand::Mute(m)) => {
                s.muted = m.unwrap_or(!s.muted);
                let text = if s.muted { "Muted." } else { "Unmuted." };
                s.enqueue(Utterance {
                    interrupt: true,
                    ..Utterance::status(text, 0.0)
                });
            }
            Ok(SpeechCommand::RepeatLast) => {
                let again = s
                    .last
                    .clone()
                    .unwrap_or_else(|| Utterance::status("Nothing said yet.", 0.0));
                s.enqueue(Utterance {
                    interrupt: true,
                    kind: again.kind.max(Kind::Describe),
                    ..again
                });
            }
            Ok(SpeechCommand::Tone(tone)) => s.tone(&tone),
            Ok(SpeechCommand::Finish) => finishing = Some(Instant::now()),
            Ok(SpeechCommand::Stop) | Err(RecvTimeoutError::Disconnected) => {
                if finishing.is_none() {
                    s.chain[s.active].stop();
                    return s.stats;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        s.pump();
        if let Some(since) = finishing {
            if (s.queue.is_empty() && !s.speaking()) || since.elapsed() > FINISH_TIMEOUT {
                return s.stats;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech::*;
    use std::sync::{Arc, Mutex};

    /// Records what it was asked to say; "speaks" for a fixed time; can be made to fail.
    struct Fake {
        said: Arc<Mutex<Vec<String>>>,
        busy_until: Option<Instant>,
        length: Duration,
        fail: bool,
    }

    impl Speaker for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn say(&mut self, u: &Utterance) -> Result<(), SpeechError> {
            if self.fail {
                return Err(SpeechError::Backend {
                    backend: "fake".into(),
                    message: "died".into(),
                });
            }
            self.said.lock().unwrap().push(u.text.clone());
            self.busy_until = Some(Instant::now() + self.length);
            Ok(())
        }
        fn is_speaking(&mut self) -> bool {
            self.busy_until.is_some_and(|t| Instant::now() < t)
        }
        fn stop(&mut self) {
            self.said.lock().unwrap().push("<stop>".into());
            self.busy_until = None;
        }
    }

    fn fake(length_ms: u64, fail: bool) -> (Box<dyn Speaker>, Arc<Mutex<Vec<String>>>) {
        let said = Arc::new(Mutex::new(Vec::new()));
        let s = Fake {
            said: said.clone(),
            busy_until: None,
            length: Duration::from_millis(length_ms),
            fail,
        };
        (Box::new(s), said)
    }

    fn u(text: &str, kind: Kind) -> Utterance {
        Utterance {
            text: text.into(),
            kind,
            priority: 0,
            t: 0.0,
            interrupt: kind == Kind::Hazard,
            earcon: kind == Kind::Hazard,
        }
    }

    /// Queues `text` on the speech thread.
    fn say(th: &SpeechThread, text: &str, kind: Kind) {
        th.tx.send(SpeechCommand::Say(u(text, kind))).unwrap();
    }

    #[test]
    fn a_hazard_interrupts_and_jumps_the_queue() {
        let (speaker, said) = fake(300, false);
        let th = SpeechThread::spawn(vec![speaker], &VoiceConfig::default()).unwrap();
        say(&th, "chair", Kind::Object);
        say(&th, "table", Kind::Object);
        std::thread::sleep(Duration::from_millis(100));
        say(&th, "stairs!", Kind::Hazard);
        let stats = th.finish();
        let said = said.lock().unwrap().clone();
        assert_eq!(said, ["chair", "<stop>", "stairs!", "table"]);
        assert_eq!(stats.interrupted, 1);
    }

    #[test]
    fn a_dying_backend_falls_back_and_the_hazard_is_still_said() {
        let (broken, _) = fake(0, true);
        let (backup, said) = fake(0, false);
        let th = SpeechThread::spawn(vec![broken, backup], &VoiceConfig::default()).unwrap();
        say(&th, "car coming!", Kind::Hazard);
        let stats = th.finish();
        assert_eq!(said.lock().unwrap().clone(), ["car coming!"]);
        assert_eq!(stats.backend_failures, 1);
    }

    /// Accepts every sentence, then reports that its player died.
    struct Dying(bool);
    impl Speaker for Dying {
        fn name(&self) -> &'static str {
            "dying"
        }
        fn say(&mut self, _: &Utterance) -> Result<(), SpeechError> {
            self.0 = true;
            Ok(())
        }
        fn is_speaking(&mut self) -> bool {
            false
        }
        fn stop(&mut self) {}
        fn take_failure(&mut self) -> Option<String> {
            std::mem::take(&mut self.0).then(|| "player exited with 1".into())
        }
    }

    #[test]
    fn a_player_dying_mid_sentence_is_replaced_and_the_sentence_said_again() {
        let (backup, said) = fake(0, false);
        let th = SpeechThread::spawn(
            vec![Box::new(Dying(false)), backup],
            &VoiceConfig::default(),
        )
        .unwrap();
        say(&th, "stairs!", Kind::Hazard);
        say(&th, "chair", Kind::Object);
        let stats = th.finish();
        assert_eq!(said.lock().unwrap().clone(), ["stairs!", "chair"]);
        assert_eq!(stats.backend_failures, 1);
    }

    #[test]
    fn mute_silences_objects_not_hazards_and_repeat_works() {
        let (speaker, said) = fake(0, false);
        let th = SpeechThread::spawn(vec![speaker], &VoiceConfig::default()).unwrap();
        say(&th, "door", Kind::Object);
        std::thread::sleep(Duration::from_millis(60));
        th.tx.send(SpeechCommand::Mute(Some(true))).unwrap();
        say(&th, "cup", Kind::Object);
        say(&th, "knife!", Kind::Hazard);
        std::thread::sleep(Duration::from_millis(60));
        th.tx.send(SpeechCommand::RepeatLast).unwrap();
        let stats = th.finish();
        let said = said.lock().unwrap().clone();
        assert_eq!(said.first().map(String::as_str), Some("door"));
        assert!(said.contains(&"Muted.".to_string()));
        assert!(!said.contains(&"cup".to_string()));
        assert_eq!(
            said.iter().filter(|s| *s == "knife!").count(),
            2,
            "{said:?}"
        );
        assert_eq!(stats.muted, 1);
    }

    #[test]
    fn stale_chatter_is_dropped() {
        let (speaker, said) = fake(400, false);
        let voice = VoiceConfig {
            stale_after_s: 0.2,
            ..Default::default()
        };
        let th = SpeechThread::spawn(vec![speaker], &voice).unwrap();
        say(&th, "one", Kind::Object);
        say(&th, "two", Kind::Object);
        say(&th, "ready", Kind::Status);
        let stats = th.finish();
        assert_eq!(said.lock().unwrap().clone(), ["one", "ready"]);
        assert_eq!(stats.dropped_stale, 1);
    }

    #[test]
    fn wav_round_trip_and_earcon() {
        let pcm = Pcm {
            rate: 16_000,
            samples: earcon(16_000, 880.0, 100),
        };
        assert!(pcm.rms() > 1000.0);
        let back = Pcm::from_wav(&pcm.to_wav()).unwrap();
        assert_eq!(back, pcm);
        assert!(Pcm::from_wav(b"RIFF....WAVEjunk").is_none());
        assert!((pcm.duration().as_secs_f64() - 0.16).abs() < 0.01);
    }
}
