//! The systemd watchdog stops being petted while the frame loop is stuck, so systemd would
//! restart the service. A test binary of its own: `$NOTIFY_SOCKET` is read once per process.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clipsight::capture::decode::DecodeLimits;
use clipsight::capture::FolderSource;
use clipsight::model::Bundle;
use clipsight::pipeline::{Pipeline, PipelineConfig};
use clipsight::prompts::bank::{Bank, BankEntry, Evidence};
use clipsight::speech::{Speaker, SpeechError, SpeechThread, VoiceConfig};
use clipsight::types::Category;
use clipsight::types::Utterance;
use clipsight::vision::encoder::{EncodeError, ImageEncoder};
use clipsight::vision::tract::TractImageEncoder;
use clipsight::vision::ImageEmbedder;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tiny model's encoder, stuck for `stuck` on its `at`-th call (a hung accelerator).
struct Stuck {
    inner: TractImageEncoder,
    calls: usize,
    at: usize,
    stuck: Duration,
}

impl ImageEncoder for Stuck {
    fn input_len(&self) -> usize {
        self.inner.input_len()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn encode(&mut self, pixels: &[f32], out: &mut [f32]) -> Result<(), EncodeError> {
        self.calls += 1;
        if self.calls == self.at {
            std::thread::sleep(self.stuck);
        }
        self.inner.encode(pixels, out)
    }
}

struct Quiet;

impl Speaker for Quiet {
    fn name(&self) -> &'static str {
        "quiet"
    }
    fn say(&mut self, _: &Utterance) -> Result<(), SpeechError> {
        Ok(())
    }
    fn is_speaking(&mut self) -> bool {
        false
    }
    fn stop(&mut self) {}
}

#[test]
fn watchdog_pets_stop_while_the_frame_loop_is_stuck_and_resume_after() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // The only test in this process: nothing has read the variable yet.
    std::env::set_var("NOTIFY_SOCKET", &socket);

    let tiny = root().join("tests/fixtures/tiny-clip");
    let bundle = Bundle::load(&tiny).unwrap();
    let photo = |p: &str| root().join("tests/fixtures/photos").join(p);
    // A one-label bank: the dog photo's own embedding.
    let mut plain = ImageEmbedder::new(
        (&bundle.manifest.image).into(),
        Box::new(TractImageEncoder::load(&bundle).unwrap()),
    )
    .unwrap();
    let dog = clipsight::capture::decode::decode_file(&photo("dog.jpg"), DecodeLimits::default())
        .unwrap();
    let emb = plain.embed((&dog).into()).unwrap().to_vec();
    let bank = Bank::new(
        "watchdog".into(),
        bundle.identity(),
        "built for the test".into(),
        vec![BankEntry {
            label: "dog".into(),
            category: Category::Object,
            priority: 10,
            say: "Dog.".into(),
            threshold: 0.9,
            neg_mean: 0.5,
            neg_std: 0.1,
            aliases: Vec::new(),
            calibration: Evidence::UNKNOWN,
            source: Default::default(),
            gate: Vec::new(),
        }],
        bundle.manifest.embedding.dim,
        emb,
    )
    .unwrap();
    let stuck = Stuck {
        inner: TractImageEncoder::load(&bundle).unwrap(),
        calls: 0,
        at: 15,
        stuck: Duration::from_millis(3500),
    };
    let embedder = ImageEmbedder::new((&bundle.manifest.image).into(), Box::new(stuck)).unwrap();
    // 9 s of frames at 10 fps, alternating photos so the change gate lets them through.
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..90 {
        let p = ["dog.jpg", "giraffe.jpg"][i % 2];
        std::fs::copy(photo(p), frames.join(format!("{i:04}.jpg"))).unwrap();
    }
    let source = FolderSource::open(&frames, 10.0, DecodeLimits::default()).unwrap();

    let pets = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let listening = {
        let (pets, done) = (pets.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = listener.recv(&mut buf) {
                    if &buf[..n] == b"WATCHDOG=1" {
                        pets.lock().unwrap().push(Instant::now());
                    }
                }
            }
        })
    };
    let mut pipeline =
        Pipeline::new(PipelineConfig::default(), embedder, vec![bank], None).unwrap();
    let speech = SpeechThread::spawn(vec![Box::new(Quiet)], &VoiceConfig::default()).unwrap();
    let (_tx, rx) = crossbeam_channel::bounded(1);
    let start = Instant::now();
    pipeline
        .run(
            Box::new(source),
            &speech.tx,
            &rx,
            Arc::new(AtomicBool::new(false)),
            &mut |_| {},
        )
        .unwrap();
    speech.finish();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    listening.join().unwrap();

    let pets: Vec<f64> = pets
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(start).as_secs_f64())
        .collect();
    let gaps: Vec<f64> = pets.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().cloned().fold(0.0, f64::max);
    // The stuck call holds the loop for 3.5 s: no pet for at least 3 s (systemd's
    // WatchdogSec= in deploy/clipsight.service would restart it)...
    assert!(longest >= 3.0, "pets at {pets:?}");
    // ...and otherwise the loop pets about once a second, before and after.
    let i = gaps.iter().position(|&g| g == longest).unwrap();
    assert!(
        i >= 1 && gaps[..i].iter().all(|&g| g < 1.6),
        "pets at {pets:?}"
    );
    assert!(
        gaps.len() > i + 2 && gaps[i + 1..].iter().all(|&g| g < 1.6),
        "pets at {pets:?}"
    );
}
