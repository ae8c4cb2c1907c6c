//! MQTT `set` topic payload bytes → `home::mqtt::parse_command` (what the monitor runs on each
//! message a caregiver or Home Assistant sends): a command or a `CommandError`, never a panic.
#![no_main]

use clipsight::home::mqtt::parse_command;
use clipsight::home::{CommandSource, HomeCommand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = parse_command(data, CommandSource::Mqtt) else {
        return;
    };
    // Anything accepted fits in the 1 KiB limit and keeps its origin.
    assert!(data.len() <= 1024);
    match cmd {
        HomeCommand::Acknowledge { source, by, .. } => {
            assert_eq!(source, CommandSource::Mqtt);
            // The name is cut to 64 characters before it reaches a record or a log line.
            assert!(by.chars().count() <= 64, "{by:?}");
        }
        HomeCommand::Mute { source, seconds } => {
            assert_eq!(source, CommandSource::Mqtt);
            if let Some(s) = seconds {
                assert!(s.is_finite(), "{s}");
            }
        }
        HomeCommand::Cancel { source } | HomeCommand::Unmute { source } => {
            assert_eq!(source, CommandSource::Mqtt);
        }
    }
});
