//! Frames captured from Go's spdystream framer (moby/spdystream v0.5.1,
//! the one client-go uses), decoded here; and our frames read back.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn read_all(bytes: &[u8], decoder: &mut HeaderDecoder) -> Vec<Frame> {
    let mut reader = bytes;
    let mut frames = Vec::new();
    while let Some(frame) = Frame::read(&mut reader, decoder).await.unwrap() {
        frames.push(frame);
    }
    frames
}

/// A client's connection: two SYN_STREAMs sharing one zlib stream, a
/// DATA frame with FIN, a PING, a RST_STREAM (cancel) and a GOAWAY.
const CLIENT: &[&str] = &[
    "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff",
    "800300010000001900000003000000000000c22ac5565c92925f5a02000000ffff",
    "000000030100000368690a",
    "800300060000000400000001",
    "80030003000000080000000500000005",
    "80030007000000080000000700000000",
];

#[tokio::test]
async fn go_client_frames_decode() {
    let bytes: Vec<u8> = CLIENT.iter().flat_map(|f| hex(f)).collect();
    let frames = read_all(&bytes, &mut HeaderDecoder::new()).await;
    let header = |v: &str| vec![("streamtype".to_owned(), v.to_owned())];
    assert_eq!(
        frames,
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: header("error"),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: header("stdout"),
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: b"hi\n".to_vec(),
            },
            Frame::Ping { id: 1 },
            Frame::RstStream {
                stream_id: 5,
                status: rst::CANCEL,
            },
            Frame::GoAway {
                last_good_stream_id: 7,
                status: 0,
            },
        ]
    );
}

#[tokio::test]
async fn go_reply_decodes() {
    let bytes = hex("80030002000000140000000178f9e3c6a7c26260606000000000ffff");
    let frames = read_all(&bytes, &mut HeaderDecoder::new()).await;
    assert_eq!(
        frames,
        vec![Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: vec![],
        }]
    );
}

#[tokio::test]
async fn header_blocks_share_one_stream_per_direction() {
    // A second decoder that missed the first block cannot read the
    // second: the blocks are one zlib stream, so order matters.
    let second = hex(CLIENT[1]);
    let mut fresh = HeaderDecoder::new();
    assert!(Frame::read(&mut second.as_slice(), &mut fresh)
        .await
        .is_err());
}

#[tokio::test]
async fn our_frames_read_back() {
    let frames = vec![
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: vec![],
        },
        Frame::SynStream {
            stream_id: 2,
            associated_to: 1,
            priority: 7,
            flags: FLAG_FIN,
            headers: vec![
                ("streamtype".into(), "data".into()),
                ("port".into(), "8080".into()),
                ("requestid".into(), "0".into()),
            ],
        },
        Frame::Headers {
            stream_id: 2,
            flags: 0,
            headers: vec![("x".into(), "y\0z".into())],
        },
        Frame::Data {
            stream_id: 2,
            flags: 0,
            data: vec![7; 70_000],
        },
        Frame::Settings {
            flags: 0,
            entries: vec![(0, 7, 65_536), (1, 4, 100)],
        },
        Frame::WindowUpdate {
            stream_id: 2,
            delta: 1024,
        },
        Frame::RstStream {
            stream_id: 9,
            status: rst::PROTOCOL_ERROR,
        },
        Frame::Ping { id: 2 },
        Frame::GoAway {
            last_good_stream_id: 3,
            status: 0,
        },
    ];
    let mut encoder = HeaderEncoder::new();
    let mut bytes = Vec::new();
    for frame in &frames {
        frame.encode(&mut encoder, &mut bytes);
    }
    assert_eq!(read_all(&bytes, &mut HeaderDecoder::new()).await, frames);
}

#[tokio::test]
async fn unknown_control_frames_are_skipped_and_bad_ones_refused() {
    // Type 0x0a (CREDENTIAL of SPDY/3, dropped in 3.1), then a PING.
    let bytes = hex("8003000a0000000201028003000600000004000000ff");
    let frames = read_all(&bytes, &mut HeaderDecoder::new()).await;
    assert_eq!(frames, vec![Frame::Ping { id: 0xff }]);

    // SPDY/2.
    let v2 = hex("800200060000000400000001");
    let err = Frame::read(&mut v2.as_slice(), &mut HeaderDecoder::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("version 2"), "{err}");

    // A SYN_STREAM too short for its fixed fields.
    let short = hex("80030001000000020000");
    let err = Frame::read(&mut short.as_slice(), &mut HeaderDecoder::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SYN_STREAM"), "{err}");

    // A frame cut off mid-body is an error, not a clean end.
    let cut = hex("8003000600000004000000");
    assert!(Frame::read(&mut cut.as_slice(), &mut HeaderDecoder::new())
        .await
        .is_err());
}
