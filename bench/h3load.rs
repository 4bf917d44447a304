//! HTTP/3 load for `bench/bench.py`'s `h3` figures (Debian's h2load and curl have no HTTP/3):
//! GETs of `/` over one QUIC connection with many streams at once, or new connections each
//! with one GET, for a number of seconds, on one thread.
//!
//! Usage: h3load ADDR SECONDS streams N      (one connection, N requests at a time)
//!        h3load ADDR SECONDS connections N  (N clients, each a new connection per request)
//! Prints `N requests in S s` (or `N connections in S s`). The certificate is not verified:
//! this measures the server.

#[path = "tls_client.rs"]
mod tls_client;

use bytes::{Buf as _, Bytes};
use rustls::crypto::aws_lc_rs;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A client endpoint on loopback that speaks h3 and trusts anything.
fn endpoint() -> Result<quinn::Endpoint, Error> {
    let tls = tls_client::client_config(aws_lc_rs::default_provider(), &[b"h3"]);
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    Ok(endpoint)
}

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Result<Sender, Error> {
    let quic = endpoint.connect(addr, "localhost")?.await?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic)).await?;
    tokio::spawn(async move { driver.wait_idle().await });
    Ok(send)
}

/// One GET of `/`, read to its end.
async fn get(send: &mut Sender) -> Result<(), Error> {
    let req = http::Request::get("https://localhost/").body(())?;
    let mut stream = send.send_request(req).await?;
    stream.finish().await?;
    let response = stream.recv_response().await?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()).into());
    }
    while let Some(mut chunk) = stream.recv_data().await? {
        chunk.advance(chunk.remaining());
    }
    Ok(())
}

async fn run(addr: SocketAddr, seconds: u64, mode: &str, n: usize) -> Result<u64, Error> {
    let endpoint = endpoint()?;
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let shared = match mode {
        "streams" => Some(connect(&endpoint, addr).await?),
        "connections" => None,
        other => return Err(format!("mode {other:?}: streams or connections").into()),
    };
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (endpoint, done, shared) = (endpoint.clone(), done.clone(), shared.clone());
        workers.spawn(async move {
            while Instant::now() < until {
                let mut send = match &shared {
                    Some(send) => send.clone(),
                    None => connect(&endpoint, addr).await?,
                };
                get(&mut send).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(worker) = workers.join_next().await {
        worker??;
    }
    Ok(done.load(Ordering::Relaxed))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, seconds, mode, n] = &args[..] else {
        return Err("usage: h3load ADDR SECONDS streams|connections N".into());
    };
    let (addr, seconds, n): (SocketAddr, u64, usize) =
        (addr.parse()?, seconds.parse()?, n.parse()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let count = runtime.block_on(run(addr, seconds, mode, n))?;
    let what = if mode == "streams" {
        "requests"
    } else {
        "connections"
    };
    println!("{count} {what} in {seconds} s");
    Ok(())
}
