//! SPDY/3.1 frames as a streaming client sends them, through our own
//! decoder and its zlib header dictionary: any bytes decode into frames or
//! end in an error, never a panic, a hang or a header block inflated
//! without bound.
#![no_main]

use crated_cri::streaming::spdy::frame::{Frame, HeaderDecoder};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    let mut decoder = HeaderDecoder::new();
    futures::executor::block_on(async {
        // One zlib stream across frames, as on a connection.
        for _ in 0..64 {
            match Frame::read(&mut reader, &mut decoder).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    });
});
