//! `clipsight run`: the live pipeline. Loads the model and banks, starts speech, controls and
//! (with `[home]`) the fall monitor, runs the pipeline until the source ends or a stop is
//! asked, then drains speech and reports the stats.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::capture::decode::DecodeLimits;
use crate::capture::{FolderSource, FrameSource, SourceSpec};
use crate::cli::args::RunArgs;
use crate::cli::config::{RunConfig, RuntimeConfig};
use crate::cli::load_model;
use crate::controls::Controls;
use crate::decide::people::PeopleSpeech;
use crate::decide::{LabelInfo, Unvalidated};
use crate::home::observer::HomeObserver;
use crate::pipeline::notify;
use crate::pipeline::personal::Personal;
use crate::pipeline::{Observer, Pipeline};
use crate::prompts::bank::Bank;
use crate::speech::{speaker_chain, SpeechThread};

/// Runs the live pipeline until the source ends or a stop is asked.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let start = Instant::now();
    let file = match &args.config {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::default(),
    };
    let config = file.apply(args)?;
    let (bundle, mut banks, embedder) = load_model(&config.model, &config.banks, &config.encoder)?;
    let identity = bundle.identity();
    // The taught labels: loaded like any bank, after the others.
    let personal = Personal::load(
        config.personal.clone(),
        config.personal_bank.clone(),
        identity.clone(),
    );
    let has_personal = personal.bank.is_some();
    banks.extend(personal.bank);
    log_unvalidated(&banks, config.pipeline.decision.unvalidated);
    log::info!(
        "model {identity} ready ({} on {}) in {:.2?}",
        config.encoder.backend.as_str(),
        config.encoder.device,
        start.elapsed()
    );

    // Transcript times count from here: the models are loaded and the source starts next.
    let chain = speaker_chain(
        config.speaker,
        &config.voice,
        config.speech_dir.as_deref(),
        Instant::now(),
    )?;
    let speech = SpeechThread::spawn(chain, &config.voice)?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    }
    // The one command bus: keys, the control socket and stdin, the home button, MQTT `set`.
    let (control_tx, control_rx) = crate::controls::bus();
    let controls = Controls::start(&config.controls, control_tx.clone(), stop.clone())?;
    if config.duration_s > 0.0 {
        let (stop, d) = (stop.clone(), Duration::from_secs_f64(config.duration_s));
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        });
    }

    let observer: Option<Box<dyn Observer>> = match &config.home {
        Some(home) => Some(Box::new(HomeObserver::start(
            home,
            &LabelInfo::from_banks(&banks),
            control_tx,
        )?)),
        None => None,
    };
    let source = open_source(&config)?;
    let mut pipeline = Pipeline::new(config.pipeline, embedder, banks, observer)?.with_personal(
        personal.personal,
        has_personal,
        personal.notice,
    );
    let pose = crate::cli::load_person_model(config.person_model.as_deref(), &config.encoder)?;
    if let Some(pose) = pose {
        log::info!("person model {} ready", pose.manifest().id);
        pipeline = pipeline.with_pose(pose);
        // People with their place: on for the wearable, off for the home camera.
        if config.people.announce.unwrap_or(config.home.is_none()) {
            pipeline = pipeline.with_people(PeopleSpeech::new(config.people.clone()));
        }
    }
    let json = config.stats_json;
    // Under systemd (Type=notify): the model is loaded and the source is open.
    notify::ready();
    let result = pipeline.run(
        source,
        &speech.tx,
        &control_rx,
        stop.clone(),
        &mut |stats| {
            if json {
                println!("{}", serde_json::to_string(stats).unwrap_or_default());
            }
        },
    );
    notify::stopping();
    if let Some(observer) = pipeline.take_observer() {
        observer.finish();
    }
    let interrupted = stop.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    // A folder that ran out: say what is queued. A stop request: stop now.
    let speech_stats = if interrupted {
        speech.stop()
    } else {
        speech.finish()
    };
    controls.join();
    let mut stats = result?;
    stats.speech = speech_stats;
    stats.elapsed_s = start.elapsed().as_secs_f64();
    eprintln!("{}", stats.summary());
    if json {
        println!("{}", serde_json::to_string(&stats)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists the labels calibration could not validate, and what the run does with them.
fn log_unvalidated(banks: &[Bank], policy: Unvalidated) {
    let labels: Vec<String> = banks
        .iter()
        .flat_map(|b| b.entries.iter())
        .filter(|e| !e.calibration.validated)
        .map(|e| match e.calibration.positives {
            1 => format!("{} (1 calibration photo shows it)", e.label),
            n => format!("{} ({n} calibration photos show it)", e.label),
        })
        .collect();
    if labels.is_empty() {
        return;
    }
    let what = match policy {
        Unvalidated::Silent => "will not be said",
        Unvalidated::Hedged => "will be said as a guess (\"Possibly …\")",
        Unvalidated::Speak => "will be said although unvalidated",
    };
    log::warn!(
        "{} labels are not validated and {what} (decision.unvalidated): {}",
        labels.len(),
        labels.join(", ")
    );
}

/// Builds the frame source the config names.
fn open_source(config: &RuntimeConfig) -> Result<Box<dyn FrameSource>> {
    match &config.source {
        SourceSpec::Folder(dir) => Ok(Box::new(FolderSource::open(
            dir,
            config.fps,
            DecodeLimits::default(),
        )?)),
        SourceSpec::Camera(index) => open_camera(*index, config),
    }
}

#[cfg(all(feature = "camera", target_os = "linux"))]
fn open_camera(index: u32, config: &RuntimeConfig) -> Result<Box<dyn FrameSource>> {
    use crate::capture::nokhwa::{CameraRequest, NokhwaCamera};
    use crate::capture::{Backoff, RealSleeper, Reconnecting};
    let c = &config.camera;
    let request = CameraRequest {
        index,
        width: c.width,
        height: c.height,
        fps: c.fps,
    };
    let backoff = Backoff {
        initial: Duration::from_secs_f64(c.reconnect_initial_s),
        max: Duration::from_secs_f64(c.reconnect_max_s.max(c.reconnect_initial_s)),
        stall: Duration::from_secs_f64(config.pipeline.stall_s),
    };
    // A fresh device for the first open and after each stall (a hung one stays with its thread).
    let make = move || NokhwaCamera::new(request.clone());
    Ok(Box::new(Reconnecting::new(make, RealSleeper, backoff)))
}

#[cfg(not(all(feature = "camera", target_os = "linux")))]
fn open_camera(_index: u32, _config: &RuntimeConfig) -> Result<Box<dyn FrameSource>> {
    anyhow::bail!("camera support is not compiled in (cargo feature `camera`, Linux only)")
}
