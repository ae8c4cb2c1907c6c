//! The clipsight binary: parse the command line, start the logger, run the subcommand, print
//! the whole error chain. Everything else is in the library ([`clipsight::cli`]).

use std::process::ExitCode;

use clap::Parser;

use clipsight::cli::{dispatch, Cli};

fn main() -> ExitCode {
    // Models load with large buffers mapped on their own; the first frame switches to the heap.
    clipsight::vision::memory::for_loading();
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
