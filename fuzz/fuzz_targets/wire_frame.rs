//! Frames between nodes: reading one from any bytes, and decoding it as
//! a request or an answer, never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_node::net::codec::read_frame;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let mut r = data;
        if let Ok(frame) = read_frame(&mut r).await {
            let _ = frame.into_request();
        }
        let mut r = data;
        if let Ok(frame) = read_frame(&mut r).await {
            let _ = frame.into_answer();
        }
    });
});
