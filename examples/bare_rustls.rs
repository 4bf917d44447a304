//! A bare rustls server (tokio-rustls's plain `TlsAcceptor`, rustls's defaults with the ring
//! provider) with a given certificate: the reference `scripts/tlsfuzzer.sh` holds Porter's own
//! accept step to, so that what differs is Porter's and not rustls's. Answers one HTTP/1.1
//! `200` per connection.
//!
//!   cargo run --release --example bare_rustls -- ADDR CHAIN.pem KEY.pem

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, chain, key] = args.as_slice() else {
        return Err("usage: bare_rustls ADDR CHAIN.pem KEY.pem".into());
    };
    let chain = CertificateDer::pem_file_iter(chain)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let mut buf = [0u8; 4096];
            if tls.read(&mut buf).await.is_ok_and(|n| n > 0) {
                let reply =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
                let _ = tls.write_all(reply).await;
            }
            let _ = tls.shutdown().await;
        });
    }
}
