//! No frame reaches the disk, and no network listener is opened (issue 8, security). The real
//! binary runs the wearable pipeline and the home monitor (which writes its event log) on real
//! photos, with its working directory, HOME, TMPDIR and the XDG folders all inside one
//! temporary folder. While it runs, none of its sockets listens on TCP or is bound on UDP.
//! Afterwards the only file it left there is the event log, nothing there holds image data,
//! and the source folder is as it was.

use std::path::{Path, PathBuf};

use crate::common::*;

/// Every regular file below `dir`, relative to it, sorted.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Whether `bytes` start like an image file (JPEG, PNG, BMP, GIF, WebP, TIFF, PNM) or are as
/// large as a raw 224-px RGB frame.
fn looks_like_image(bytes: &[u8]) -> bool {
    let magic: [&[u8]; 9] = [
        b"\xFF\xD8\xFF",
        b"\x89PNG",
        b"BM",
        b"GIF8",
        b"II*\0",
        b"MM\0*",
        b"P5",
        b"P6",
        b"RIFF",
    ];
    magic.iter().any(|m| bytes.starts_with(m)) || bytes.len() >= 224 * 224 * 3
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect()
}

/// Rows of /proc/PID/net/{tcp,tcp6,udp,udp6} that belong to `inodes` and listen (TCP state
/// 0A) or are bound (any UDP socket).
fn listeners(pid: u32, inodes: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let (Some(state), Some(inode)) = (cols.get(3), cols.get(9)) else {
                continue;
            };
            let listening = table.starts_with("udp") || *state == "0A";
            if listening && inodes.iter().any(|i| i == inode) {
                found.push(format!("{table}: {row}"));
            }
        }
    }
    found
}

#[test]
fn a_run_writes_no_frame_to_disk_and_listens_on_no_port() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let sandbox = r.join("sandbox");
    for d in ["work", "home", "tmp", "cache", "data", "runtime", "state"] {
        std::fs::create_dir_all(sandbox.join(d)).unwrap();
    }
    let frames = r.join("frames");
    std::fs::create_dir(&frames).unwrap();
    for f in std::fs::read_dir(root().join("examples/frames")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "jpg") {
            std::fs::copy(&f, frames.join(f.file_name().unwrap())).unwrap();
        }
    }
    let frames_before = files_below(&frames);
    let config = r.join("run.toml");
    let q = |p: PathBuf| format!("{:?}", p.to_str().unwrap());
    std::fs::write(
        &config,
        format!(
            "model = {}\nbanks = [{}, {}]\nsource = {}\nfps = 4\nspeaker = \"log\"\n\
             [gate]\nenabled = false\n\
             [controls]\nsocket = {}\n\
             [home]\nstate_dir = {}\n",
            q(root().join("models/default")),
            q(root().join("prompts/banks/home.safetensors")),
            q(root().join("prompts/banks/hazards.safetensors")),
            q(frames.clone()),
            q(sandbox.join("runtime/control.sock")),
            q(sandbox.join("state")),
        ),
    )
    .unwrap();

    let child = bin()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .current_dir(sandbox.join("work"))
        .env("HOME", sandbox.join("home"))
        .env("TMPDIR", sandbox.join("tmp"))
        .env("XDG_CACHE_HOME", sandbox.join("cache"))
        .env("XDG_DATA_HOME", sandbox.join("data"))
        .env("XDG_RUNTIME_DIR", sandbox.join("runtime"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Running once the control socket is there (a Unix socket: not a network listener).
    let socket = sandbox.join("runtime/control.sock");
    let start = std::time::Instant::now();
    while !socket.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(socket.exists(), "the run never came up");
    // The check sees a listener where there is one: this test's own.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let me = std::process::id();
    assert!(!listeners(me, &socket_inodes(me)).is_empty());
    drop(probe);
    let mut inodes_seen = 0;
    for _ in 0..5 {
        let inodes = socket_inodes(child.id());
        inodes_seen = inodes_seen.max(inodes.len());
        assert_eq!(listeners(child.id(), &inodes), Vec::<String>::new());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The control socket itself was among the sockets looked at.
    assert!(inodes_seen >= 1);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Every frame went through the encoder (the change gate is off), so each had its chance
    // to be written somewhere.
    assert!(stderr.contains("processed 12,"), "{stderr}");

    // What the run did write is seen here: the walk is not blind.
    let written = files_below(&sandbox);
    assert_eq!(
        written,
        vec![PathBuf::from("state/events.jsonl")],
        "{stderr}"
    );
    for f in &written {
        let bytes = std::fs::read(sandbox.join(f)).unwrap();
        assert!(
            !looks_like_image(&bytes),
            "{} holds image data",
            f.display()
        );
    }
    assert_eq!(files_below(&frames), frames_before);
}
