//! HTTP `Range` against a file size: never a panic, and a part is always
//! inside the file and not empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_gateway::handlers::download::{parse_range, RangeSpec};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&data[..8]);
    // Sizes up to 1 TiB, zero included.
    let size = u64::from_le_bytes(size) % (1 << 40);
    let header = String::from_utf8_lossy(&data[8..]);
    if let RangeSpec::Part(start, end) = parse_range(Some(&header), size) {
        assert!(start < end && end <= size, "{header:?} on {size}: [{start}, {end})");
    }
});
