//! Control-socket client bytes → the lines the socket server reads (at most 16 lines of a
//! 4 KiB-bounded stream, as `controls::handle_client` reads them) → `Control::parse` on each:
//! a control or "unknown command", never a panic.
#![no_main]

use std::io::{BufRead, BufReader, Read};

use clipsight::types::{Control, Origin};
use libfuzzer_sys::fuzz_target;

/// The server's bounds: 256-byte lines, 16 of them.
const MAX_LINE: u64 = 256;

fuzz_target!(|data: &[u8]| {
    let reader = BufReader::new(data.take(MAX_LINE * 16));
    for line in reader.lines().take(16) {
        let Ok(line) = line else { break };
        if let Some(control) = Control::parse(&line) {
            // Only the known words (and their one-letter forms) are accepted.
            let word = line.trim().to_ascii_lowercase();
            assert!(word.len() <= "acknowledge".len(), "{line:?}");
            let _ = control.from(Origin::Socket);
        }
        // The reply to an unknown command quotes at most 40 characters of it.
        let quoted: String = line.chars().take(40).collect();
        assert!(quoted.chars().count() <= 40);
    }
});
