//! Full TLS 1.3 handshakes with a chosen key exchange group, for `bench/bench.py`'s `pq`
//! figure: what `openssl s_time -new` does (a new connection, `GET / HTTP/1.0`, read to the
//! end), with a client that can offer X25519MLKEM768, which Debian's OpenSSL 3.0 cannot.
//!
//! Usage: handshakes ADDR SECONDS x25519|x25519mlkem768 [CLIENTS]
//! Prints `N connections in S s`. The certificate is not verified: this measures the server.

#[path = "tls_client.rs"]
mod tls_client;

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, seconds, group, rest @ ..] = &args[..] else {
        eprintln!("usage: handshakes ADDR SECONDS x25519|x25519mlkem768 [CLIENTS]");
        std::process::exit(2);
    };
    let kx = match group.as_str() {
        "x25519" => aws_lc_rs::kx_group::X25519,
        "x25519mlkem768" => aws_lc_rs::kx_group::X25519MLKEM768,
        other => panic!("unknown group {other}"),
    };
    let clients: usize = rest.first().map_or(2, |n| n.parse().expect("CLIENTS"));
    let until = Instant::now() + Duration::from_secs(seconds.parse().expect("SECONDS"));
    let provider = CryptoProvider {
        kx_groups: vec![kx],
        ..aws_lc_rs::default_provider()
    };
    // A new full handshake each time, as `s_time -new`.
    let config = Arc::new(tls_client::client_config(provider, &[]));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (config, addr) = (config.clone(), addr.clone());
            std::thread::spawn(move || {
                let mut done = 0u64;
                while Instant::now() < until {
                    let name = ServerName::try_from("localhost").expect("name");
                    let conn = rustls::ClientConnection::new(config.clone(), name).expect("client");
                    let mut tls =
                        rustls::StreamOwned::new(conn, TcpStream::connect(&addr).expect("connect"));
                    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
                    let mut answer = Vec::new();
                    // The close may come without close_notify; the answer is what counts.
                    let _ = tls.read_to_end(&mut answer);
                    assert!(answer.starts_with(b"HTTP/1."), "no answer");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().expect("client")).sum();
    println!(
        "{total} connections in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}
