//! The connection against a client made of the frame codec.

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

struct Client {
    io: DuplexStream,
    encoder: HeaderEncoder,
    decoder: HeaderDecoder,
}

impl Client {
    async fn send(&mut self, frame: Frame) {
        let mut bytes = Vec::new();
        frame.encode(&mut self.encoder, &mut bytes);
        self.io.write_all(&bytes).await.unwrap();
    }

    async fn next(&mut self) -> Option<Frame> {
        Frame::read(&mut self.io, &mut self.decoder).await.unwrap()
    }
}

fn pair() -> (Connection, Client) {
    let (server, client) = tokio::io::duplex(1 << 20);
    let client = Client {
        io: client,
        encoder: HeaderEncoder::new(),
        decoder: HeaderDecoder::new(),
    };
    (Connection::serve(server, None), client)
}

fn syn(stream_id: u32, kind: &str, flags: u8) -> Frame {
    Frame::SynStream {
        stream_id,
        associated_to: 0,
        priority: 0,
        flags,
        headers: vec![("streamtype".into(), kind.into())],
    }
}

#[tokio::test]
async fn streams_are_accepted_replied_and_carry_data_both_ways() {
    let (mut conn, mut client) = pair();
    client.send(syn(1, "stdin", 0)).await;
    client.send(syn(3, "stdout", FLAG_FIN)).await;
    client
        .send(Frame::Data {
            stream_id: 1,
            flags: 0,
            data: b"hello ".to_vec(),
        })
        .await;
    client
        .send(Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: b"world".to_vec(),
        })
        .await;

    let mut stdin = conn.accept().await.unwrap();
    assert_eq!((stdin.id, stdin.header("streamtype")), (1, Some("stdin")));
    let mut stdout = conn.accept().await.unwrap();
    assert_eq!(stdout.header("streamtype"), Some("stdout"));
    let mut got = String::new();
    stdin.reader.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hello world");
    // A stream opened with FIN sends nothing: end-of-file at once.
    assert_eq!(stdout.reader.read(&mut [0; 8]).await.unwrap(), 0);

    stdout.writer.write_all(&vec![b'x'; 70_000]).await.unwrap();
    stdout.writer.shutdown().await.unwrap();
    conn.close().await;

    let mut replies = Vec::new();
    let mut data = Vec::new();
    let mut fin = false;
    while let Some(frame) = client.next().await {
        match frame {
            Frame::SynReply { stream_id, .. } => replies.push(stream_id),
            Frame::Data {
                stream_id: 3,
                flags,
                data: d,
            } => {
                assert!(!fin, "data after FIN");
                assert!(d.len() <= MAX_DATA);
                data.extend(d);
                fin = flags & FLAG_FIN != 0;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(replies, vec![1, 3]);
    assert_eq!(data.len(), 70_000);
    assert!(fin, "the stream ends with FIN");
}

#[tokio::test]
async fn pings_are_answered_and_bad_stream_ids_reset() {
    let (mut conn, mut client) = pair();
    client.send(Frame::Ping { id: 5 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 5 }));
    // Even ids belong to the server; a client may not use them.
    client.send(syn(2, "data", 0)).await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 2,
            status: rst::PROTOCOL_ERROR
        })
    );
    // A reset stream reads end-of-file.
    client.send(syn(7, "data", 0)).await;
    let mut stream = conn.accept().await.unwrap();
    client
        .send(Frame::RstStream {
            stream_id: 7,
            status: rst::CANCEL,
        })
        .await;
    assert_eq!(stream.reader.read(&mut [0; 8]).await.unwrap(), 0);
    // The client going away ends accept.
    drop(client);
    assert!(conn.accept().await.is_none());
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let (server, mut client) = tokio::io::duplex(1 << 16);
    let conn = Connection::serve(server, Some(std::time::Duration::from_millis(200)));
    // A client that opens a stream and then goes quiet.
    let mut encoder = HeaderEncoder::new();
    let mut bytes = Vec::new();
    syn(1, "error", 0).encode(&mut encoder, &mut bytes);
    client.write_all(&bytes).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed())
        .await
        .expect("the idle connection is closed");
    // Its side of the socket ends too (after the reply it was sent).
    let mut rest = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.read_to_end(&mut rest),
    )
    .await
    .expect("the client sees the end")
    .unwrap();
}
