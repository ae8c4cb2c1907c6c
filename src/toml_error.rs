//! One-line TOML errors that name the key, for every file clipsight reads.

/// Formats a TOML error as `key: message (line N)`. The `toml` crate names unknown keys in
/// its message but not the key whose value is wrong, so the key is recovered from the span:
/// the key on the offending line, prefixed with the `[section]` it sits in.
pub fn explain(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().to_string();
    let Some(span) = err.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (section, key) {
        (Some(s), Some(k)) => format!("{s}.{k}: {message} (line {line_no})"),
        (None, Some(k)) => format!("{k}: {message} (line {line_no})"),
        _ => format!("{message} (line {line_no})"),
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct T {
        a: u8,
        s: Option<S>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct S {
        b: u8,
    }

    #[test]
    fn names_the_key_of_a_bad_value() {
        let text = "a = 1\n[s]\nb = 300\n";
        let err = toml::from_str::<T>(text).unwrap_err();
        let msg = super::explain(text, &err);
        assert!(msg.starts_with("s.b: "), "{msg}");
        assert!(msg.ends_with("(line 3)"), "{msg}");
    }
}
