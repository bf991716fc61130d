//! Drive paths: never a panic, and a path that parses prints back to a
//! string that parses to the same path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft_meta::path::DrivePath;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = DrivePath::parse(raw) {
        let again = DrivePath::parse(&p.to_string()).expect("a printed path parses");
        assert_eq!(again, p, "{raw:?}");
    }
});
