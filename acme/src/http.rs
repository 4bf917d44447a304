//! The HTTP client the ACME protocol runs over: a pooled HTTPS client (system roots, or the
//! operator's root for a private CA) that paces requests to a global rate per CA and holds back
//! every request while the CA's `Retry-After` runs.

use bytes::Bytes;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use porter_store::Recover as _;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

type Inner = Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// Time allowed for one request to the CA.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A paced client; clones share the pace.
#[derive(Clone)]
pub(crate) struct PacedClient {
    inner: Inner,
    pace: Arc<Pace>,
}

struct Pace {
    interval: Duration,
    /// The earliest moment the next request may leave.
    next: Mutex<Instant>,
}

impl Pace {
    /// Reserves the next slot and returns when it comes.
    fn reserve(&self) -> Instant {
        let mut next = self.next.lock().recover();
        let slot = (*next).max(Instant::now());
        *next = slot + self.interval;
        slot
    }

    /// Nothing leaves before `until`.
    fn hold_until(&self, until: Instant) {
        let mut next = self.next.lock().recover();
        *next = (*next).max(until);
    }
}

impl PacedClient {
    /// A client trusting `ca_root` (PEM) or the system's roots, sending at most
    /// `requests_per_second`.
    pub(crate) fn new(ca_root: Option<&Path>, requests_per_second: u32) -> Result<Self, String> {
        let builder = HttpsConnectorBuilder::new();
        let builder = match ca_root {
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read --acme-ca-root {}: {e}", path.display()))?
                {
                    let cert =
                        cert.map_err(|e| format!("--acme-ca-root {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("--acme-ca-root {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "--acme-ca-root {} holds no certificate",
                        path.display()
                    ));
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(config)
            }
            None => builder
                .try_with_platform_verifier()
                .map_err(|e| format!("cannot load the system's root certificates: {e}"))?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        // CAs close idle connections on their own schedule; keep them only across the burst of
        // requests of one order, so that a request never goes out on a connection the CA closed.
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        let interval = Duration::from_secs(1) / requests_per_second.max(1);
        Ok(PacedClient {
            inner,
            pace: Arc::new(Pace {
                interval,
                next: Mutex::new(Instant::now()),
            }),
        })
    }
}

impl PacedClient {
    /// Whether the CA's directory offers ACME Renewal Information (RFC 9773 `renewalInfo`).
    pub(crate) async fn directory_has_ari(&self, directory: &str) -> Result<bool, String> {
        use http_body_util::BodyExt;
        let request = http::Request::get(directory)
            .body(BodyWrapper::default())
            .map_err(|e| e.to_string())?;
        tokio::time::sleep_until(self.pace.reserve()).await;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.inner.request(request))
            .await
            .map_err(|_| "the CA did not answer within 30 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let directory: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("directory: {e}"))?;
        Ok(directory.get("renewalInfo").is_some_and(|v| v.is_string()))
    }
}

/// The delay a `Retry-After` header asks for (seconds, or an HTTP date).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

impl HttpClient for PacedClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let (inner, pace) = (self.inner.clone(), self.pace.clone());
        Box::pin(async move {
            tokio::time::sleep_until(pace.reserve()).await;
            let response = tokio::time::timeout(REQUEST_TIMEOUT, inner.request(req))
                .await
                .map_err(|_| instant_acme::Error::Str("the CA did not answer within 30 s"))?
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let status = response.status();
            if status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::SERVICE_UNAVAILABLE
            {
                if let Some(delay) = retry_after(response.headers()) {
                    tracing::warn!(?delay, %status, "the CA asks to wait; holding back every request");
                    pace.hold_until(Instant::now() + delay.min(Duration::from_secs(24 * 3600)));
                }
            }
            Ok(BytesResponse::from(response))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pace_spaces_requests_and_honours_holds() {
        let pace = Pace {
            interval: Duration::from_millis(100),
            next: Mutex::new(Instant::now()),
        };
        let start = Instant::now();
        let slots: Vec<Duration> = (0..3).map(|_| pace.reserve() - start).collect();
        assert_eq!(
            slots,
            [
                Duration::ZERO,
                Duration::from_millis(100),
                Duration::from_millis(200)
            ]
        );
        pace.hold_until(start + Duration::from_secs(5));
        assert_eq!(pace.reserve() - start, Duration::from_secs(5));
    }
}
