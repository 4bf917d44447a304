//! DNS-01 over RFC 2136: the TXT record a challenge needs is added to the site's zone by a
//! dynamic update signed with the zone's TSIG key, the zone's server is asked until it answers
//! with the value, and the record is deleted (by value, so that another validation of the same
//! name keeps its own) once the CA has looked.

use crate::error::causes;
use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::dnssec::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_client::proto::dnssec::tsig::TSigner;
use hickory_client::proto::op::{Message, MessageFinalizer, MessageVerifier, ResponseCode};
use hickory_client::proto::rr::rdata::TXT;
use hickory_client::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::udp::UdpClientStream;
use hickory_client::proto::xfer::DnsResponse;
use hickory_client::proto::ProtoError;
use hickory_client::{ClientError, ClientErrorKind};
use porter_store::{DnsTxtRecord, DnsZone, TsigAlgorithm};
use std::sync::Arc;
use std::time::Duration;

/// How long one DNS exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the zone's server may take to answer with a record it was given.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two looks at the zone's server.
const PROPAGATION_POLL: Duration = Duration::from_millis(250);
/// The TXT record's TTL: resolvers must not keep a challenge value long.
const TXT_TTL: u32 = 60;
/// The clock difference the server accepts in a signature (RFC 8945 recommends 300 s).
const TSIG_FUDGE: u16 = 300;

/// A DNS failure, said in one line that names the zone, its server and the step.
#[derive(Debug, thiserror::Error)]
#[error("DNS zone {zone} at {server}: {step}: {detail}")]
pub(crate) struct DnsError {
    zone: String,
    server: String,
    step: &'static str,
    detail: String,
}

/// The record name a DNS-01 challenge for `identifier` (without any `*.`) is looked up at.
pub(crate) fn record_name(identifier: &str) -> String {
    format!("_acme-challenge.{}", identifier.trim_start_matches("*."))
}

/// Talks to one zone's server.
pub(crate) struct ZoneClient<'a> {
    zone: &'a DnsZone,
    client: Client,
    origin: Name,
}

impl<'a> ZoneClient<'a> {
    /// Prepares the signed exchange with `zone`'s server (UDP: nothing is sent yet).
    pub(crate) async fn new(zone: &'a DnsZone) -> Result<ZoneClient<'a>, DnsError> {
        let fail = |step, detail: String| error(zone, step, detail);
        let algorithm = match zone.tsig_algorithm {
            TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
        };
        let key_name =
            Name::from_ascii(&zone.tsig_name).map_err(|e| fail("TSIG key name", e.to_string()))?;
        let signer = TSigner::new(
            zone.tsig_key.expose().to_vec(),
            algorithm,
            key_name,
            TSIG_FUDGE,
        )
        .map_err(|e| fail("TSIG key", e.to_string()))?;
        let stream = UdpClientStream::builder(zone.server, TokioRuntimeProvider::new())
            .with_timeout(Some(EXCHANGE_TIMEOUT))
            .with_signer(Some(Arc::new(ExplainedSigner(signer))))
            .build();
        let (client, background) = Client::connect(stream)
            .await
            .map_err(|e| fail("connect", e.to_string()))?;
        // Ends when the client is dropped.
        tokio::spawn(background);
        let origin = fqdn(zone.zone.as_str()).map_err(|e| fail("zone name", e))?;
        Ok(ZoneClient {
            zone,
            client,
            origin,
        })
    }

    /// Adds `record` (the name's other values stay: a wildcard and its base name validate at
    /// the same name).
    pub(crate) async fn add(&mut self, record: &DnsTxtRecord) -> Result<(), DnsError> {
        let txt = self.txt(record, TXT_TTL)?;
        let response = self.client.append(txt, self.origin.clone(), false).await;
        self.updated("add TXT", record, response)
    }

    /// Deletes `record` (only that value; a record already gone is no error).
    pub(crate) async fn remove(&mut self, record: &DnsTxtRecord) -> Result<(), DnsError> {
        let txt = self.txt(record, 0)?;
        let response = self.client.delete_by_rdata(txt, self.origin.clone()).await;
        self.updated("remove TXT", record, response)
    }

    /// Asks the server until it answers `record`'s name with its value (the update is in, and
    /// the CA, which asks the same servers, will find it).
    pub(crate) async fn wait_visible(&mut self, record: &DnsTxtRecord) -> Result<(), DnsError> {
        let name = fqdn(&record.name).map_err(|e| error(self.zone, "record name", e))?;
        let deadline = tokio::time::Instant::now() + PROPAGATION_TIMEOUT;
        loop {
            let last = match self
                .client
                .query(name.clone(), DNSClass::IN, RecordType::TXT)
                .await
            {
                Ok(answer) if has_value(&answer, &record.value) => return Ok(()),
                Ok(answer) => format!("answered {} without the value", answer.response_code()),
                Err(e) => said(&e),
            };
            if tokio::time::Instant::now() + PROPAGATION_POLL > deadline {
                return Err(error(
                    self.zone,
                    "propagation",
                    format!(
                        "{} not visible within {}s ({last})",
                        record.name,
                        PROPAGATION_TIMEOUT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(PROPAGATION_POLL).await;
        }
    }

    fn txt(&self, record: &DnsTxtRecord, ttl: u32) -> Result<Record, DnsError> {
        let name = fqdn(&record.name).map_err(|e| error(self.zone, "record name", e))?;
        let mut txt =
            Record::from_rdata(name, ttl, RData::TXT(TXT::new(vec![record.value.clone()])));
        txt.set_dns_class(DNSClass::IN);
        Ok(txt)
    }

    fn updated(
        &self,
        step: &'static str,
        record: &DnsTxtRecord,
        response: Result<DnsResponse, ClientError>,
    ) -> Result<(), DnsError> {
        let detail = match response {
            Ok(answer) if answer.response_code() == ResponseCode::NoError => return Ok(()),
            Ok(answer) => rcode_meaning(answer.response_code()),
            Err(e) => said(&e),
        };
        Err(error(self.zone, step, format!("{}: {detail}", record.name)))
    }
}

/// What a client error says, without hickory's wrapper words ("proto error").
fn said(e: &ClientError) -> String {
    match e.kind() {
        ClientErrorKind::Proto(inner) => causes(inner),
        ClientErrorKind::Io(inner) => causes(inner),
        other => causes(other),
    }
}

fn error(zone: &DnsZone, step: &'static str, detail: String) -> DnsError {
    DnsError {
        zone: zone.zone.to_string(),
        server: zone.server.to_string(),
        step,
        detail,
    }
}

fn fqdn(name: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(name).map_err(|e| format!("{name:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

fn has_value(answer: &DnsResponse, value: &str) -> bool {
    answer.answers().iter().any(|record| match record.data() {
        RData::TXT(txt) => txt
            .txt_data()
            .iter()
            .any(|s| s.as_ref() == value.as_bytes()),
        _ => false,
    })
}

/// What an update's response code means to the operator.
fn rcode_meaning(code: ResponseCode) -> String {
    let meaning = match code {
        ResponseCode::NotAuth => {
            "the server did not accept the TSIG signature (check the key's name, secret and algorithm, and that both clocks are right) or is not authoritative for the zone"
        }
        ResponseCode::Refused => "the server refused the update (its update policy does not let this key change TXT records here)",
        ResponseCode::NotZone => "the name is not in the zone",
        ResponseCode::ServFail => "the server failed",
        _ => "",
    };
    if meaning.is_empty() {
        format!("the server answered {code}")
    } else {
        format!("{code}: {meaning}")
    }
}

/// The TSIG signer, with a readable failure when the server's answer is not signed: a server
/// that rejects a signature (BADSIG, BADKEY, BADTIME) answers NOTAUTH without a MAC, which the
/// signer alone reports as a malformed signature.
struct ExplainedSigner(TSigner);

impl MessageFinalizer for ExplainedSigner {
    fn finalize_message(
        &self,
        message: &Message,
        current_time: u32,
    ) -> Result<(Vec<Record>, Option<MessageVerifier>), ProtoError> {
        let (records, verifier) = self.0.finalize_message(message, current_time)?;
        let verifier = verifier.map(|mut verify| -> MessageVerifier {
            Box::new(move |answer: &[u8]| {
                verify(answer).map_err(|e| match Message::from_vec(answer) {
                    Ok(m) if m.response_code() != ResponseCode::NoError => {
                        ProtoError::from(rcode_meaning(m.response_code()))
                    }
                    _ => e,
                })
            })
        });
        Ok((records, verifier))
    }

    fn should_finalize_message(&self, message: &Message) -> bool {
        self.0.should_finalize_message(message)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_record_name_drops_the_wildcard() {
        assert_eq!(
            super::record_name("*.example.com"),
            "_acme-challenge.example.com"
        );
        assert_eq!(super::record_name("a.b.test"), "_acme-challenge.a.b.test");
    }
}
