//! A real OCSP signer for pebble's certificates: `openssl ocsp` in its offline mode
//! (`-reqin`/`-respout`, signing with pebble's intermediate) behind a small loopback HTTP
//! fixture of the test's own (openssl's own `-port` mode binds every interface). The test
//! decides which serials are revoked, and can make the responder fail.

use super::require;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the responder knows and has done.
pub struct ResponderState {
    /// Serials (uppercase hex) to answer `revoked` for.
    pub revoked: Mutex<HashSet<String>>,
    /// When false, every request gets a 503.
    pub up: AtomicBool,
    /// Responses signed and sent.
    pub answered: AtomicUsize,
    /// The issuer's certificate and key (PEM), set once pebble runs.
    pub issuer: Mutex<Option<(PathBuf, PathBuf)>>,
}

pub struct OcspResponder {
    _runtime: tokio::runtime::Runtime,
    /// The URL to give pebble as `ocspResponderURL`.
    pub url: String,
    pub state: Arc<ResponderState>,
}

impl OcspResponder {
    /// Starts the responder; responses are valid for `minutes`.
    pub fn start(work: &Path, minutes: u32) -> OcspResponder {
        require("openssl", "openssl");
        std::fs::create_dir_all(work).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let state = Arc::new(ResponderState {
            revoked: Mutex::new(HashSet::new()),
            up: AtomicBool::new(true),
            answered: AtomicUsize::new(0),
            issuer: Mutex::new(None),
        });
        let shared = (
            state.clone(),
            work.to_path_buf(),
            Arc::new(AtomicUsize::new(0)),
        );
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (state, work, counter) = shared.clone();
                        async move {
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(
                                answer(req, &state, &work.join(n.to_string()), minutes).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        OcspResponder {
            _runtime: runtime,
            url,
            state,
        }
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

fn status(code: u16) -> http::Response<Body> {
    http::Response::builder()
        .status(code)
        .body(Body::default())
        .unwrap()
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    state: &ResponderState,
    dir: &Path,
    minutes: u32,
) -> http::Response<Body> {
    use base64::Engine as _;
    use http_body_util::BodyExt;
    if !state.up.load(Ordering::SeqCst) {
        return status(503);
    }
    let Some((int_pem, int_key)) = state.issuer.lock().unwrap().clone() else {
        return status(503);
    };
    // RFC 6960 appendix A: GET with the base64 request in the path, or POST with it as body.
    let request = if req.method() == http::Method::GET {
        let path = req.uri().path().trim_start_matches('/').to_owned();
        let decoded = percent_decode(&path);
        match base64::engine::general_purpose::STANDARD.decode(decoded) {
            Ok(der) => der,
            Err(_) => return status(400),
        }
    } else {
        req.into_body().collect().await.unwrap().to_bytes().to_vec()
    };
    std::fs::create_dir_all(dir).unwrap();
    let req_path = dir.join("req.der");
    std::fs::write(&req_path, &request).unwrap();
    let text = tokio::process::Command::new("openssl")
        .args(["ocsp", "-reqin", req_path.to_str().unwrap(), "-req_text"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let Some(serial) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim().to_uppercase())
    else {
        return status(400);
    };
    let revoked = state.revoked.lock().unwrap().contains(&serial);
    let line = if revoked {
        format!("R\t301231235959Z\t250101000000Z,keyCompromise\t{serial}\tunknown\t/CN=revoked\n")
    } else {
        format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN=good\n")
    };
    let index = dir.join("index.txt");
    std::fs::write(&index, line).unwrap();
    std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n").unwrap();
    let resp_path = dir.join("resp.der");
    let signed = tokio::process::Command::new("openssl")
        .args(["ocsp", "-index", index.to_str().unwrap()])
        .args([
            "-CA",
            int_pem.to_str().unwrap(),
            "-rsigner",
            int_pem.to_str().unwrap(),
            "-rkey",
            int_key.to_str().unwrap(),
        ])
        .args([
            "-reqin",
            req_path.to_str().unwrap(),
            "-respout",
            resp_path.to_str().unwrap(),
            "-nmin",
            &minutes.to_string(),
        ])
        .output()
        .await
        .unwrap();
    if !signed.status.success() {
        eprintln!(
            "openssl ocsp failed: {}",
            String::from_utf8_lossy(&signed.stderr)
        );
        return status(500);
    }
    state.answered.fetch_add(1, Ordering::SeqCst);
    http::Response::builder()
        .header("content-type", "application/ocsp-response")
        .body(Body::from(std::fs::read(resp_path).unwrap()))
        .unwrap()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
