//! The clipsight binary: parse the command line, start the logger, run the subcommand, print
//! the whole error chain. Everything else is in the library ([`clipsight::cli`]).

use std::process::ExitCode;

use clap::Parser;

use clipsight::cli::{dispatch, Cli};

fn main() -> ExitCode {
    return_freed_memory();
    let cli = Cli::parse();
    // What the speaker says is always shown (the log speaker writes it at info level).
    let level = match cli.verbose {
        0 => "warn,clipsight::speech=info",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Buffers of a megabyte and more (weights, large activations) are mapped and unmapped on their
/// own instead of coming from glibc's heap. With its default, adaptive threshold the heap keeps
/// what loading and optimizing a model freed: 200 MB more at the peak for a ViT-B/32, on a
/// board that may have 2 GB (`clipsight bench` reports the peak as `peak_rss_mb`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_freed_memory() {
    const LARGE: libc::c_int = 1 << 20;
    // SAFETY: mallopt only sets allocator parameters; called first thing, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE);
        libc::mallopt(libc::M_TRIM_THRESHOLD, LARGE);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_memory() {}
