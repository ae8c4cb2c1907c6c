//! Control-socket client bytes → the lines the socket server reads (at most 16 lines of a
//! 4 KiB-bounded stream, as `controls::handle_client` reads them) → `parse_command` on each:
//! a control word, a `teach|find|forget <label>` or `list` request, or "unknown command",
//! never a panic.
#![no_main]

use std::io::{BufRead, BufReader, Read};

use clipsight::types::{parse_command, Command, Origin, Personal, MAX_LABEL_CHARS};
use libfuzzer_sys::fuzz_target;

/// The server's bounds: 256-byte lines, 16 of them.
const MAX_LINE: u64 = 256;

fuzz_target!(|data: &[u8]| {
    let reader = BufReader::new(data.take(MAX_LINE * 16));
    for line in reader.lines().take(16) {
        let Ok(line) = line else { break };
        match parse_command(&line, Origin::Socket) {
            Some(Command::User { .. }) => {
                // Only the known words (and their one-letter forms) are accepted.
                let word = line.trim().to_ascii_lowercase();
                assert!(word.len() <= "acknowledge".len(), "{line:?}");
            }
            Some(Command::Personal { request, .. }) => {
                let label = match &request {
                    Personal::Teach(l) | Personal::Forget(l) | Personal::Find(l) => l.as_str(),
                    Personal::List => "list",
                };
                // A label is trimmed, printable and bounded.
                assert!(!label.is_empty() && label.chars().count() <= MAX_LABEL_CHARS);
                assert_eq!(label, label.trim());
                assert!(!label.chars().any(char::is_control), "{line:?}");
            }
            Some(Command::Home(_)) => panic!("the socket never makes a home command"),
            None => {}
        }
        // The reply to an unknown command quotes at most 40 characters of it.
        let quoted: String = line.chars().take(40).collect();
        assert!(quoted.chars().count() <= 40);
    }
});
