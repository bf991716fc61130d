//! Stored records and Raft log commands: decoding any bytes never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft_meta::records::{
    decode, BlockRecord, EntryRecord, LayoutRecord, StoredBlock, UploadRecord, UserRecord,
    VersionRecord,
};
use raft_meta::types::Request;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Request>("request", data);
    let _ = decode::<EntryRecord>("entry", data);
    let _ = decode::<VersionRecord>("version", data);
    let _ = decode::<BlockRecord>("block", data);
    let _ = decode::<StoredBlock>("stored", data);
    let _ = decode::<LayoutRecord>("layout", data);
    let _ = decode::<UserRecord>("user", data);
    let _ = decode::<UploadRecord>("upload", data);
});
