//! The JSON bodies the API reads: never a panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<strata_api::CommitRequest>(data);
    let _ = serde_json::from_slice::<strata_api::MoveRequest>(data);
    let _ = serde_json::from_slice::<strata_api::RestoreRequest>(data);
    let _ = serde_json::from_slice::<strata_api::LoginRequest>(data);
    let _ = serde_json::from_slice::<strata_api::SignupRequest>(data);
    let _ = serde_json::from_slice::<strata_api::FolderRequest>(data);
    let _ = serde_json::from_slice::<strata_api::PresenceRequest>(data);
    let _ = serde_json::from_slice::<strata_api::MissingRequest>(data);
    let _ = serde_json::from_slice::<strata_api::ShareRequest>(data);
    let _ = serde_json::from_slice::<serde_json::Value>(data);
});
