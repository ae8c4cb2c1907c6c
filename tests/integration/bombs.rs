//! Decompression bombs through the real binary (issue 8): `classify` on tiny files whose
//! headers claim 10 gigapixels (PNG) and 4 gigapixels (JPEG) reports a clear "image too large"
//! error naming each file and goes on to the next image, all under a 1.5 GB address-space
//! limit: the pixels are never allocated.

use std::os::unix::process::CommandExt;

use crate::common::*;

/// The address-space limit the child runs under, bytes.
const MAX_ADDRESS_SPACE: u64 = 1_500_000_000;

fn bomb(name: &str) -> std::path::PathBuf {
    fixtures().join("bombs").join(name)
}

#[test]
fn classify_refuses_decompression_bombs_under_a_memory_limit() {
    let bank = tiny_bank("prompts/coco80.toml");
    let mut cmd = bin();
    cmd.args(["classify", "--json", "--top", "1", "--model"])
        .arg(tiny_model())
        .arg("--bank")
        .arg(&bank)
        .arg(bomb("png-100000x100000.png"))
        .arg(bomb("jpeg-65500x65500.jpg"))
        .arg(fixtures().join("photos/bus.jpg"));
    let limit = libc::rlimit {
        rlim_cur: MAX_ADDRESS_SPACE,
        rlim_max: MAX_ADDRESS_SPACE,
    };
    // SAFETY: setrlimit is async-signal-safe, and `limit` is a plain value copied into the
    // closure; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit code 1 (some images failed), not a signal from an allocation abort.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stderr.contains("memory allocation"), "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, name, size) in [
        (&lines[0], "png-100000x100000.png", "100000×100000"),
        (&lines[1], "jpeg-65500x65500.jpg", "65500×65500"),
    ] {
        let err = line["error"].as_str().unwrap();
        assert!(
            err.contains(name) && err.contains("image too large") && err.contains(size),
            "{err}"
        );
    }
    assert!(lines[2]["labels"].as_array().is_some(), "{stdout}");
}
