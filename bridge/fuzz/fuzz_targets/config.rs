//! Hostile config files: parse and compile. Errors are fine; panics are not.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use stsbridge::config::{self, file::ConfigFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/nonexistent/stsbridge.yaml");
    if let Ok(raw) = config::parse_yaml::<ConfigFile>(path, text) {
        let _ = config::compile(path, raw);
    }
    let _ = config::parse_duration(text);
});
