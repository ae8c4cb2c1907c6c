//! Fault injection: a frame source whose frames fail, stall, arrive late or in bursts. The
//! pipeline must survive, say that the camera was lost and is back, and still announce a
//! hazard that appears after the faults. Runs the real pipeline (tiny model, tract) with a
//! bank built for the test and a speaker that records what it is asked to say.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clipsight::capture::decode::{decode_file, DecodeLimits};
use clipsight::capture::{
    Backoff, CameraDevice, CaptureError, FrameSource, RealSleeper, Reconnecting,
};
use clipsight::decide::DecisionConfig;
use clipsight::model::Bundle;
use clipsight::pipeline::{Pipeline, PipelineConfig};
use clipsight::prompts::bank::{Bank, BankEntry, Evidence};
use clipsight::speech::{Speaker, SpeechError, SpeechThread, VoiceConfig};
use clipsight::types::Category;
use clipsight::types::Frame;
use clipsight::types::Utterance;
use clipsight::vision::encoder::{EncodeError, ImageEncoder};
use clipsight::vision::tract::TractImageEncoder;
use clipsight::vision::ImageEmbedder;
use image::RgbImage;

use crate::common::*;

#[derive(Clone)]
enum Step {
    /// A frame of this photo, paced at 10 fps.
    Frame(&'static str),
    /// An unreadable frame.
    Bad,
    /// The camera delivers nothing for this long.
    Stall(Duration),
    /// The camera drops out (the source reports a disconnect, then recovers).
    Lost,
    /// Frames with no pause between them.
    Burst(&'static str, usize),
    /// A frame that arrives this late.
    Late(&'static str, Duration),
}

struct Faulty {
    steps: VecDeque<Step>,
    photos: std::collections::HashMap<&'static str, RgbImage>,
    start: Instant,
    seq: u64,
    burst: Option<(&'static str, usize)>,
}

impl Faulty {
    fn frame(&mut self, photo: &'static str) -> Frame {
        self.seq += 1;
        Frame {
            seq: self.seq,
            t: self.start.elapsed().as_secs_f64(),
            image: self.photos[photo].clone(),
        }
    }
}

impl FrameSource for Faulty {
    fn next(&mut self) -> Result<Option<Frame>, CaptureError> {
        if let Some((photo, left)) = self.burst.take() {
            if left > 1 {
                self.burst = Some((photo, left - 1));
            }
            return Ok(Some(self.frame(photo)));
        }
        loop {
            let Some(step) = self.steps.pop_front() else {
                return Ok(None);
            };
            match step {
                Step::Frame(p) => {
                    std::thread::sleep(Duration::from_millis(100));
                    return Ok(Some(self.frame(p)));
                }
                Step::Bad => return Err(CaptureError::BadFrame("corrupt MJPG frame".into())),
                Step::Stall(d) => std::thread::sleep(d),
                Step::Lost => return Err(CaptureError::Disconnected("unplugged".into())),
                Step::Burst(p, n) => {
                    self.burst = Some((p, n));
                    return self.next();
                }
                Step::Late(p, d) => {
                    std::thread::sleep(d);
                    return Ok(Some(self.frame(p)));
                }
            }
        }
    }
    fn describe(&self) -> String {
        "fault-injecting test source".into()
    }
}

struct Recorder(Arc<Mutex<Vec<(Instant, String)>>>);

impl Speaker for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn say(&mut self, u: &Utterance) -> Result<(), SpeechError> {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), u.text.clone()));
        Ok(())
    }
    fn is_speaking(&mut self) -> bool {
        false
    }
    fn stop(&mut self) {}
}

/// The tiny model's embedder, a bank in which each of dog (object), bus (hazard) and giraffe
/// (object) is one photo's own embedding, and the photos.
fn setup() -> (
    ImageEmbedder,
    Bank,
    std::collections::HashMap<&'static str, RgbImage>,
) {
    let bundle = Bundle::load(tiny_model()).unwrap();
    let enc = TractImageEncoder::load(&bundle).unwrap();
    let mut embedder = ImageEmbedder::new((&bundle.manifest.image).into(), Box::new(enc)).unwrap();
    let names = ["dog.jpg", "bus.jpg", "giraffe.jpg"];
    let mut photos = std::collections::HashMap::new();
    let mut emb = Vec::new();
    for n in names {
        let img = decode_file(&fixtures().join("photos").join(n), DecodeLimits::default()).unwrap();
        emb.push(embedder.embed((&img).into()).unwrap().to_vec());
        photos.insert(n, img);
    }
    // A bank built for the test: each label is one photo's own embedding, calibrated so that
    // only that photo passes.
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let entry = |i: usize, label: &str, category| {
        let neg = (0..3)
            .filter(|&j| j != i)
            .map(|j| cos(&emb[i], &emb[j]))
            .fold(f32::MIN, f32::max);
        BankEntry {
            label: label.into(),
            category,
            priority: category.default_priority(),
            say: if category == Category::Hazard {
                format!("Caution: {label}.")
            } else {
                format!("{label}.")
            },
            threshold: neg + (1.0 - neg) / 2.0,
            neg_mean: neg,
            neg_std: (1.0 - neg) / 4.0,
            aliases: Vec::new(),
            calibration: Evidence::UNKNOWN,
            source: Default::default(),
            gate: Vec::new(),
        }
    };
    let bank = Bank::new(
        "faults".into(),
        bundle.identity(),
        "built for the test".into(),
        vec![
            entry(0, "dog", Category::Object),
            entry(1, "bus", Category::Hazard),
            entry(2, "giraffe", Category::Object),
        ],
        bundle.manifest.embedding.dim,
        emb.concat(),
    )
    .unwrap();
    (embedder, bank, photos)
}

/// Runs the real pipeline (stall watchdog 1 s, dwell 0.2 s) on `source` until it ends;
/// returns what was said, when, and the run's stats.
fn run(
    source: Box<dyn FrameSource>,
    embedder: ImageEmbedder,
    bank: Bank,
) -> (
    Vec<(Instant, String)>,
    clipsight::pipeline::metrics::RunStats,
) {
    let config = PipelineConfig {
        stall_s: 1.0,
        decision: DecisionConfig {
            dwell_s: 0.2,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pipeline = Pipeline::new(config, embedder, vec![bank], None).unwrap();
    let said = Arc::new(Mutex::new(Vec::new()));
    let speech = SpeechThread::spawn(
        vec![Box::new(Recorder(said.clone()))],
        &VoiceConfig::default(),
    )
    .unwrap();
    let (_ctx, crx) = crossbeam_channel::bounded(1);
    let stats = pipeline
        .run(
            source,
            &speech.tx,
            &crx,
            Arc::new(AtomicBool::new(false)),
            &mut |_| {},
        )
        .unwrap();
    speech.finish();
    let said = said.lock().unwrap().clone();
    (said, stats)
}

#[test]
fn the_pipeline_survives_faults_and_still_warns_of_a_hazard_after_them() {
    let (embedder, bank, photos) = setup();
    let steps = vec![
        Step::Frame("dog.jpg"),
        Step::Frame("dog.jpg"),
        Step::Frame("dog.jpg"),
        Step::Frame("dog.jpg"),
        Step::Frame("dog.jpg"),
        Step::Frame("dog.jpg"),
        Step::Frame("dog.jpg"),
        Step::Bad,
        Step::Bad,
        Step::Bad,
        Step::Stall(Duration::from_millis(1500)),
        Step::Lost,
        Step::Frame("giraffe.jpg"),
        Step::Burst("giraffe.jpg", 30),
        Step::Late("giraffe.jpg", Duration::from_millis(700)),
        Step::Frame("giraffe.jpg"),
        Step::Frame("giraffe.jpg"),
        Step::Frame("giraffe.jpg"),
        Step::Frame("giraffe.jpg"),
        Step::Frame("giraffe.jpg"),
        Step::Frame("bus.jpg"),
        Step::Frame("bus.jpg"),
        Step::Frame("bus.jpg"),
        Step::Frame("bus.jpg"),
        Step::Frame("bus.jpg"),
        Step::Frame("bus.jpg"),
    ];
    let source = Faulty {
        steps: steps.into(),
        photos,
        start: Instant::now(),
        seq: 0,
        burst: None,
    };
    let (said, stats) = run(Box::new(source), embedder, bank);
    let said: Vec<String> = said.into_iter().map(|(_, t)| t).collect();
    eprintln!("{said:?}\n{stats:?}");

    assert_eq!(stats.frames.bad, 3, "bad frames are counted and skipped");
    assert!(
        stats.frames.dropped > 0,
        "a burst drops stale frames: {:?}",
        stats.frames
    );
    let pos = |s: &str| {
        said.iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s:?} not said: {said:?}"))
    };
    assert_eq!(pos("Ready."), 0);
    let dog = pos("dog.");
    let lost = pos("Camera lost.");
    let back = pos("Camera back.");
    let hazard = pos("Caution: bus.");
    assert!(dog < lost && lost < back && back < hazard, "{said:?}");
    assert_eq!(
        said.iter().filter(|s| *s == "Camera lost.").count(),
        1,
        "said once per outage"
    );
}

/// A camera whose read hangs while `hung` is set, as a stalled UVC device does, and fails
/// once it is cleared; until then it delivers the dog photo at about 20 fps.
struct HangingCamera {
    photo: RgbImage,
    hung: Arc<AtomicBool>,
}

impl CameraDevice for HangingCamera {
    fn open(&mut self) -> Result<String, CaptureError> {
        Ok("hanging test camera".into())
    }
    fn read(&mut self) -> Result<RgbImage, CaptureError> {
        if self.hung.load(Ordering::SeqCst) {
            while self.hung.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Err(CaptureError::Disconnected("USB reset".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
        Ok(self.photo.clone())
    }
    fn close(&mut self) {}
}

/// Ends a camera source after `until`.
struct For<S>(S, Instant);

impl<S: FrameSource> FrameSource for For<S> {
    fn next(&mut self) -> Result<Option<Frame>, CaptureError> {
        if Instant::now() >= self.1 {
            return Ok(None);
        }
        self.0.next()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn take_events(&mut self) -> Vec<clipsight::capture::SourceEvent> {
        self.0.take_events()
    }
}

/// A read that never returns, through the real `Reconnecting` and the real pipeline: "Camera
/// lost." within the stall time (1 s) + 1 s of the hang, a fresh device opened after it, and
/// "Camera back." once the camera delivers again.
#[test]
fn a_camera_whose_read_hangs_is_reported_lost_and_comes_back() {
    let (embedder, bank, photos) = setup();
    let hung = Arc::new(AtomicBool::new(false));
    let (photo, h) = (photos["dog.jpg"].clone(), hung.clone());
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        stall: Duration::from_secs(1),
    };
    let camera = Reconnecting::new(
        move || HangingCamera {
            photo: photo.clone(),
            hung: h.clone(),
        },
        RealSleeper,
        backoff,
    );
    let start = Instant::now();
    let hang_at = start + Duration::from_millis(1500);
    let recover_at = start + Duration::from_millis(4500);
    let switch = {
        let hung = hung.clone();
        std::thread::spawn(move || {
            std::thread::sleep(hang_at - Instant::now());
            hung.store(true, Ordering::SeqCst);
            std::thread::sleep(recover_at - Instant::now());
            hung.store(false, Ordering::SeqCst);
        })
    };
    let source = For(camera, start + Duration::from_millis(7000));
    let (said, _) = run(Box::new(source), embedder, bank);
    switch.join().unwrap();
    let at = |s: &str| {
        said.iter()
            .find(|(_, x)| x == s)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("{s:?} not said: {said:?}"))
    };
    let lost = at("Camera lost.");
    let back = at("Camera back.");
    assert!(lost > hang_at, "{said:?}");
    assert!(
        lost - hang_at <= Duration::from_secs(2),
        "lost {:?} after the hang",
        lost - hang_at
    );
    assert!(back > recover_at, "{said:?}");
    assert_eq!(said.iter().filter(|(_, s)| s == "Camera lost.").count(), 1);
}

/// An image encoder that fails on every frame (a corrupt model, an accelerator gone).
struct Failing {
    input_len: usize,
    dim: usize,
}

impl ImageEncoder for Failing {
    fn input_len(&self) -> usize {
        self.input_len
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn encode(&mut self, _: &[f32], _: &mut [f32]) -> Result<(), EncodeError> {
        Err(EncodeError::Run {
            path: "failing.onnx".into(),
            message: "the accelerator is gone".into(),
        })
    }
}

/// An encoder that fails on every frame: "Vision error: I can't recognize anything." is said
/// once (after `failures_before_telling` frames), not once per frame, and the loop goes on.
#[test]
fn an_always_failing_encoder_is_said_once_and_the_loop_goes_on() {
    let (_, bank, photos) = setup();
    let bundle = Bundle::load(tiny_model()).unwrap();
    let image = &bundle.manifest.image;
    let failing = Failing {
        input_len: 3 * (image.size as usize).pow(2),
        dim: bundle.manifest.embedding.dim,
    };
    let embedder = ImageEmbedder::new(image.into(), Box::new(failing)).unwrap();
    // 30 changing frames: the gate lets each through to the encoder.
    let steps: Vec<Step> = (0..30)
        .map(|i| Step::Frame(["dog.jpg", "bus.jpg", "giraffe.jpg"][i % 3]))
        .collect();
    let source = Faulty {
        steps: steps.into(),
        photos,
        start: Instant::now(),
        seq: 0,
        burst: None,
    };
    let (said, stats) = run(Box::new(source), embedder, bank);
    let said: Vec<String> = said.into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        said.iter()
            .filter(|s| *s == "Vision error: I can't recognize anything.")
            .count(),
        1,
        "{said:?}"
    );
    assert!(!said.iter().any(|s| s.contains("bus")), "{said:?}");
    assert!(
        stats.frames.processed + stats.frames.failed >= 20,
        "{stats:?}"
    );
}
