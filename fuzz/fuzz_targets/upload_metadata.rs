//! tus `Upload-Metadata`: never a panic; what it accepts has no repeated
//! key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_gateway::upload::resumable::parse_metadata;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = parse_metadata(raw) {
        let mut keys: Vec<&String> = pairs.iter().map(|(k, _)| k).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(n, keys.len(), "repeated key accepted in {raw:?}");
    }
});
