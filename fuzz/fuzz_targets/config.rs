//! Node configuration files: parsing and validating any text never
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(raw) = toml::from_str::<cluster_config::raw::RawConfig>(text) {
        let _ = cluster_config::Config::validate(raw, std::path::Path::new("/nonexistent"));
    }
});
