//! Input-device bytes (raw `struct input_event` records, as read from /dev/input/event*) →
//! `controls::input::key_downs`: the key-down codes, never a panic, whatever the bytes.
#![no_main]

use clipsight::controls::input::{key_down, key_downs, INPUT_EVENT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codes: Vec<u16> = key_downs(data).collect();
    // At most one key-down per whole record; a partial record at the end is not read.
    assert!(codes.len() <= data.len() / INPUT_EVENT_BYTES);
    let whole = data.len() - data.len() % INPUT_EVENT_BYTES;
    assert_eq!(codes, key_downs(&data[..whole]).collect::<Vec<_>>());
    // Reading the records in two reads split at a record boundary finds the same keys (the
    // reader keeps partial records for the next read).
    if whole >= INPUT_EVENT_BYTES {
        let cut = (whole / INPUT_EVENT_BYTES / 2) * INPUT_EVENT_BYTES;
        let mut split: Vec<u16> = key_downs(&data[..cut]).collect();
        split.extend(key_downs(&data[cut..whole]));
        assert_eq!(codes, split);
    }
    // Every code found is a key-down record of that code (the time fields are not looked at).
    let tails: Vec<&[u8]> = data[..whole]
        .chunks_exact(INPUT_EVENT_BYTES)
        .map(|r| &r[INPUT_EVENT_BYTES - 8..])
        .collect();
    for code in &codes {
        let want = key_down(*code);
        assert!(tails.contains(&&want[INPUT_EVENT_BYTES - 8..]), "{code}");
    }
});
