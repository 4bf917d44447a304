//! WebSocket through Porter to a real WebSocket echo server (tokio-tungstenite): an HTTP/1.1
//! `Upgrade`, and RFC 8441 extended CONNECT over HTTP/2 sent by hyper's HTTP/2 client; each
//! also through a blocking WAF, which inspects the upgrade request (the HTTP/2 one as the GET
//! the upstream gets, not a CONNECT the CRS would refuse).

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// An echo server on an ephemeral loopback port; returns its address.
async fn echo_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn echo_round_trips<S>(ws: &mut WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for i in 0..20 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    let big = vec![7u8; 1 << 20];
    ws.send(Message::binary(big.clone())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_data().as_ref(), &big[..]);
}

async fn setup(serve_flags: &[&str]) -> (tempfile::TempDir, TestCa, Porter) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let upstream = echo_server().await;
    let porter = Porter::start(&dir.path().join("data"), serve_flags);
    ca.serve(&porter.data_dir, "ws.test", &upstream);
    let client = ca.client(&[b"http/1.1"]);
    eventually(Duration::from_secs(2), "ws.test is served", || async {
        tls_connect(client.clone(), porter.https, "ws.test")
            .await
            .is_ok()
    })
    .await;
    (dir, ca, porter)
}

/// The WAF of every site blocks.
const WAF: &[&str] = &["--waf-default", "block"];

#[tokio::test(flavor = "multi_thread")]
async fn websocket_over_http1_upgrade() {
    http1_upgrade(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_over_http1_upgrade_through_a_blocking_waf() {
    http1_upgrade(WAF).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_over_http2_extended_connect() {
    http2_extended_connect(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_over_http2_extended_connect_through_a_blocking_waf() {
    http2_extended_connect(WAF).await;
}

async fn http1_upgrade(serve_flags: &[&str]) {
    let (_dir, ca, porter) = setup(serve_flags).await;
    let stream = tls_connect(ca.client(&[b"http/1.1"]), porter.https, "ws.test")
        .await
        .unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("wss://ws.test/chat", stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    echo_round_trips(&mut ws).await;
    ws.close(None).await.unwrap();
    if !serve_flags.is_empty() {
        // The upgrade request is inspected: an attack in it is refused.
        let stream = tls_connect(ca.client(&[b"http/1.1"]), porter.https, "ws.test")
            .await
            .unwrap();
        let attack = "wss://ws.test/chat?id=1%27%20OR%201=1--";
        match tokio_tungstenite::client_async(attack, stream).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403)
            }
            other => panic!("the attack was not refused: {:?}", other.map(|(_, r)| r)),
        }
    }
}

async fn http2_extended_connect(serve_flags: &[&str]) {
    let (_dir, ca, porter) = setup(serve_flags).await;
    let stream = tls_connect(ca.client(&[b"h2"]), porter.https, "ws.test")
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("https://ws.test/chat")
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200, "RFC 8441 section 5: success is 200");
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    echo_round_trips(&mut ws).await;
}
