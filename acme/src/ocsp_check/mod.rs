//! Verification of a DER OCSP response (RFC 6960) for one certificate: pure, no I/O, no clock.
//!
//! [`check`] accepts a response only when it is a successful basic response, signed by the
//! certificate's issuer or by a responder the issuer delegated to (RFC 6960 §4.2.2.2), states the
//! status of exactly this certificate, and is current at the given time. Every failure is one
//! line meant for operators.
//!
//! The signature is checked over the exact bytes of `tbsResponseData` as they appear in the
//! response (sliced out of the input, never re-encoded), and the fields used afterwards are
//! decoded from those same bytes, so what is trusted is exactly what was signed.

use rasn::types::{Integer, IntegerType, ObjectIdentifier, OctetString};
use rasn_ocsp::{
    BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus, ResponseData, SingleResponse,
};
use ring::{digest, signature};
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_HASH_SHA1, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384,
    OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// Tolerated clock skew between us and the responder for `thisUpdate`, in seconds.
const CLOCK_SKEW: i64 = 300;

/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1).
const ID_PKIX_OCSP_BASIC: &[u32] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 1];

/// The certificate status an OCSP response states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OcspStatus {
    Good,
    /// Revoked at `at` (Unix seconds, the response's revocationTime).
    Revoked {
        at: i64,
    },
    Unknown,
}

/// A verified response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) status: OcspStatus,
    /// Unix seconds.
    pub(crate) this_update: i64,
    /// Unix seconds; always present (a response without nextUpdate is refused).
    pub(crate) next_update: i64,
}

/// Verifies `response` (DER OCSPResponse) for `leaf` issued by `issuer` (both DER) at `now`
/// (Unix seconds).
pub(crate) fn check(
    response: &[u8],
    leaf: &[u8],
    issuer: &[u8],
    now: i64,
) -> Result<Checked, String> {
    let leaf = parse_certificate(leaf, "the certificate")?;
    let issuer = parse_certificate(issuer, "the issuer certificate")?;

    // 1. A successful response carrying a basic response.
    let basic_der = basic_response_der(response)?;
    let basic: BasicOcspResponse = decode_der(&basic_der, "OCSP basic response")?;
    let raw = split_basic(&basic_der)
        .ok_or("OCSP basic response does not have the structure of a BasicOCSPResponse")?;
    let data = signed_data(&basic, &raw)?;

    // 2. Signed by the issuer or by a responder the issuer authorised.
    verify_signature(&basic, &raw, &issuer, now)?;

    // 3. Exactly one status for this certificate.
    let single = find_single_response(&data.responses, &leaf, &issuer)?;

    // 4. Current at `now`.
    let (this_update, next_update) = current(single, now)?;
    let status = match &single.cert_status {
        CertStatus::Good => OcspStatus::Good,
        CertStatus::Revoked(info) => OcspStatus::Revoked {
            at: info.revocation_time.timestamp(),
        },
        CertStatus::Unknown(()) => OcspStatus::Unknown,
    };
    Ok(Checked {
        status,
        this_update,
        next_update,
    })
}

/// The DER BasicOCSPResponse that `response` carries, when it is a successful response of
/// type id-pkix-ocsp-basic.
fn basic_response_der(response: &[u8]) -> Result<OctetString, String> {
    let ocsp: OcspResponse = decode_der(response, "OCSP response")?;
    if ocsp.status != OcspResponseStatus::Successful {
        return Err(format!(
            "OCSP responder answered {} instead of successful",
            status_name(ocsp.status)
        ));
    }
    let bytes = ocsp
        .bytes
        .ok_or("OCSP response is successful but carries no responseBytes")?;
    if bytes.r#type.as_ref() != ID_PKIX_OCSP_BASIC {
        return Err(format!(
            "OCSP response type {} is not id-pkix-ocsp-basic",
            dotted(&bytes.r#type)
        ));
    }
    Ok(bytes.response)
}

/// The response data decoded from the signed bytes themselves (everything after the signature
/// check reads these), when they agree with the whole response's decoding.
fn signed_data(basic: &BasicOcspResponse, raw: &RawBasic<'_>) -> Result<ResponseData, String> {
    let data: ResponseData = decode_der(raw.tbs, "OCSP tbsResponseData")?;
    if data != basic.tbs_response_data
        || raw.certs.len() != basic.certs.as_ref().map_or(0, Vec::len)
    {
        return Err("OCSP basic response decodes inconsistently".to_string());
    }
    Ok(data)
}

/// Checks that the signature of `basic`, over the signed bytes of `raw`, is of a supported
/// algorithm and made by the issuer or by a responder it authorised.
fn verify_signature(
    basic: &BasicOcspResponse,
    raw: &RawBasic<'_>,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<(), String> {
    let sig_alg = x509_oid(&basic.signature_algorithm.algorithm)?;
    if !signature_supported(&sig_alg) {
        return Err(format!(
            "OCSP response is signed with unsupported algorithm {}",
            sig_alg.to_id_string()
        ));
    }
    if !basic.signature.len().is_multiple_of(8) {
        return Err("OCSP response signature is not a whole number of bytes".to_string());
    }
    let sig = basic.signature.as_raw_slice();
    verify_responder(raw.tbs, &sig_alg, sig, issuer, &raw.certs, now)
}

/// The `thisUpdate` and `nextUpdate` of `single`, when it is current at `now`.
fn current(single: &SingleResponse, now: i64) -> Result<(i64, i64), String> {
    let this_update = single.this_update.timestamp();
    if this_update > now.saturating_add(CLOCK_SKEW) {
        return Err(format!(
            "OCSP response thisUpdate {} is in the future (now is {})",
            utc(this_update),
            utc(now)
        ));
    }
    let next_update = single
        .next_update
        .ok_or("OCSP response has no nextUpdate, so it never expires; refusing it")?
        .timestamp();
    if next_update <= now {
        return Err(format!(
            "OCSP response expired at {} (nextUpdate; now is {})",
            utc(next_update),
            utc(now)
        ));
    }
    Ok((this_update, next_update))
}

/// Checks the signature over `tbs`: first with the issuer's key, else with an included responder
/// certificate whose key verifies it, which must then be authorised by the issuer.
fn verify_responder(
    tbs: &[u8],
    sig_alg: &Oid<'_>,
    sig: &[u8],
    issuer: &X509Certificate<'_>,
    certs: &[&[u8]],
    now: i64,
) -> Result<(), String> {
    if verifies(issuer.public_key(), sig_alg, tbs, sig) {
        return Ok(());
    }
    for der in certs {
        let responder = parse_certificate(der, "a certificate included in the OCSP response")?;
        if verifies(responder.public_key(), sig_alg, tbs, sig) {
            return authorised_responder(&responder, issuer, now);
        }
    }
    Err(format!(
        "OCSP response signature does not verify with the key of issuer {} nor with any \
         certificate included in the response",
        issuer.subject()
    ))
}

/// RFC 6960 §4.2.2.2: a delegated responder is issued by the issuer itself, carries
/// id-kp-OCSPSigning, and (here) must be within its validity.
fn authorised_responder(
    responder: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<(), String> {
    let name = responder.subject();
    let alg = &responder.signature_algorithm.algorithm;
    if !verifies(
        issuer.public_key(),
        alg,
        responder.tbs_certificate.as_ref(),
        &responder.signature_value.data,
    ) {
        return Err(format!(
            "OCSP responder certificate {name} is not signed by the issuer {}",
            issuer.subject()
        ));
    }
    let ocsp_signing = match responder.extended_key_usage() {
        Ok(Some(eku)) => eku.value.ocsp_signing,
        Ok(None) => false,
        Err(e) => {
            return Err(format!(
                "OCSP responder certificate {name} has an invalid extended key usage: {e}"
            ))
        }
    };
    if !ocsp_signing {
        return Err(format!(
            "OCSP responder certificate {name} lacks extended key usage id-kp-OCSPSigning"
        ));
    }
    let validity = responder.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now < not_before || now > not_after {
        return Err(format!(
            "OCSP responder certificate {name} is not valid now (valid {} to {}, now is {})",
            utc(not_before),
            utc(not_after),
            utc(now)
        ));
    }
    Ok(())
}

/// The one SingleResponse whose CertID names `leaf` as issued by `issuer`.
fn find_single_response<'r>(
    responses: &'r [SingleResponse],
    leaf: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<&'r SingleResponse, String> {
    let serial_text = leaf.raw_serial_as_string();
    let serial = Integer::try_from_signed_bytes(leaf.raw_serial(), rasn::Codec::Der)
        .map_err(|_| format!("certificate serial {serial_text} is not a valid integer"))?;
    let issuer_name = issuer.subject().as_raw();
    let issuer_key: &[u8] = &issuer.public_key().subject_public_key.data;

    let mut matching = Vec::new();
    let mut other_issuer = false;
    let mut unsupported_hash = None;
    for single in responses {
        let id = &single.cert_id;
        if id.serial_number != serial {
            continue;
        }
        let hash_oid = x509_oid(&id.hash_algorithm.algorithm)?;
        let Some(hash) = cert_id_hash(&hash_oid) else {
            unsupported_hash = Some(hash_oid.to_id_string());
            continue;
        };
        if digest::digest(hash, issuer_name).as_ref() == &id.issuer_name_hash[..]
            && digest::digest(hash, issuer_key).as_ref() == &id.issuer_key_hash[..]
        {
            matching.push(single);
        } else {
            other_issuer = true;
        }
    }
    match matching.as_slice() {
        [single] => Ok(single),
        [] if other_issuer => Err(format!(
            "OCSP response for serial {serial_text} names a different issuer than {}",
            issuer.subject()
        )),
        [] => match unsupported_hash {
            Some(oid) => Err(format!(
                "OCSP response for serial {serial_text} identifies it with unsupported hash {oid}"
            )),
            None => Err(format!(
                "OCSP response has no status for certificate serial {serial_text} (it covers {} \
                 other certificate(s))",
                responses.len()
            )),
        },
        several => Err(format!(
            "OCSP response has {} statuses for certificate serial {serial_text}; expected exactly \
             one",
            several.len()
        )),
    }
}

/// The hash a CertID's hashAlgorithm names.
fn cert_id_hash(oid: &Oid<'_>) -> Option<&'static digest::Algorithm> {
    if *oid == OID_HASH_SHA1 {
        Some(&digest::SHA1_FOR_LEGACY_USE_ONLY)
    } else if *oid == OID_NIST_HASH_SHA256 {
        Some(&digest::SHA256)
    } else if *oid == OID_NIST_HASH_SHA384 {
        Some(&digest::SHA384)
    } else if *oid == OID_NIST_HASH_SHA512 {
        Some(&digest::SHA512)
    } else {
        None
    }
}

/// The public key types a signature can be checked with.
#[derive(Debug, Clone, Copy)]
enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> Option<KeyType> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        Some(KeyType::Rsa)
    } else if *alg == OID_SIG_ED25519 {
        Some(KeyType::Ed25519)
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = Oid::try_from(spki.algorithm.parameters.as_ref()?).ok()?;
        if curve == OID_EC_P256 {
            Some(KeyType::P256)
        } else if curve == OID_NIST_EC_P384 {
            Some(KeyType::P384)
        } else {
            None
        }
    } else {
        None
    }
}

/// The ring algorithm for signature algorithm `sig_alg` made with a key of type `key`.
/// RSA keys must have at least 2048 bits.
fn ring_algorithm(
    sig_alg: &Oid<'_>,
    key: KeyType,
) -> Option<&'static dyn signature::VerificationAlgorithm> {
    let alg: &'static dyn signature::VerificationAlgorithm = match key {
        KeyType::Rsa if *sig_alg == OID_PKCS1_SHA256WITHRSA => {
            &signature::RSA_PKCS1_2048_8192_SHA256
        }
        KeyType::Rsa if *sig_alg == OID_PKCS1_SHA384WITHRSA => {
            &signature::RSA_PKCS1_2048_8192_SHA384
        }
        KeyType::Rsa if *sig_alg == OID_PKCS1_SHA512WITHRSA => {
            &signature::RSA_PKCS1_2048_8192_SHA512
        }
        KeyType::Rsa if *sig_alg == OID_PKCS1_SHA1WITHRSA => {
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        KeyType::P256 if *sig_alg == OID_SIG_ECDSA_WITH_SHA256 => {
            &signature::ECDSA_P256_SHA256_ASN1
        }
        KeyType::P256 if *sig_alg == OID_SIG_ECDSA_WITH_SHA384 => {
            &signature::ECDSA_P256_SHA384_ASN1
        }
        KeyType::P384 if *sig_alg == OID_SIG_ECDSA_WITH_SHA256 => {
            &signature::ECDSA_P384_SHA256_ASN1
        }
        KeyType::P384 if *sig_alg == OID_SIG_ECDSA_WITH_SHA384 => {
            &signature::ECDSA_P384_SHA384_ASN1
        }
        KeyType::Ed25519 if *sig_alg == OID_SIG_ED25519 => &signature::ED25519,
        _ => return None,
    };
    Some(alg)
}

fn signature_supported(sig_alg: &Oid<'_>) -> bool {
    [KeyType::Rsa, KeyType::P256, KeyType::P384, KeyType::Ed25519]
        .into_iter()
        .any(|key| ring_algorithm(sig_alg, key).is_some())
}

/// Whether `sig` is a valid signature over `message` by `key` with algorithm `sig_alg`.
fn verifies(key: &SubjectPublicKeyInfo<'_>, sig_alg: &Oid<'_>, message: &[u8], sig: &[u8]) -> bool {
    let Some(alg) = key_type(key).and_then(|key| ring_algorithm(sig_alg, key)) else {
        return false;
    };
    let key_bits: &[u8] = &key.subject_public_key.data;
    signature::UnparsedPublicKey::new(alg, key_bits)
        .verify(message, sig)
        .is_ok()
}

/// The raw parts of a BasicOCSPResponse, as they appear in its DER.
struct RawBasic<'a> {
    /// The whole tbsResponseData TLV: the bytes the signature covers.
    tbs: &'a [u8],
    /// Each certificate of `certs`, whole TLV.
    certs: Vec<&'a [u8]>,
}

/// Slices a BasicOCSPResponse: SEQUENCE { tbsResponseData SEQUENCE, signatureAlgorithm SEQUENCE,
/// signature BIT STRING, certs [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }.
fn split_basic(der: &[u8]) -> Option<RawBasic<'_>> {
    let (outer, []) = take(der, 0x30)? else {
        return None;
    };
    let (tbs, rest) = take(outer.contents, 0x30)?;
    let (_signature_algorithm, rest) = take(rest, 0x30)?;
    let (_signature, rest) = take(rest, 0x03)?;
    let mut certs = Vec::new();
    if !rest.is_empty() {
        let (explicit, []) = take(rest, 0xa0)? else {
            return None;
        };
        let (list, []) = take(explicit.contents, 0x30)? else {
            return None;
        };
        let mut list = list.contents;
        while !list.is_empty() {
            let (cert, rest) = take(list, 0x30)?;
            certs.push(cert.whole);
            list = rest;
        }
    }
    Some(RawBasic {
        tbs: tbs.whole,
        certs,
    })
}

/// One DER TLV, sliced from its input.
struct Tlv<'a> {
    tag: u8,
    /// Tag, length and contents.
    whole: &'a [u8],
    contents: &'a [u8],
}

/// Splits the first TLV off `input` if its tag byte is `tag`; returns it and the rest.
fn take(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (tlv, rest) = split_tlv(input)?;
    (tlv.tag == tag).then_some((tlv, rest))
}

/// Splits the first DER TLV off `input`; returns it and the rest. Only low-number tags and
/// definite lengths (what DER allows for the structures sliced here).
fn split_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, after_tag) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, after_first) = after_tag.split_first()?;
    let (len, after_len) = if first < 0x80 {
        (usize::from(first), after_first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after_first.len() < n {
            return None;
        }
        let (len_bytes, after_len) = after_first.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, after_len)
    };
    if after_len.len() < len {
        return None;
    }
    let header = input.len() - after_len.len();
    let (contents, rest) = after_len.split_at(len);
    let tlv = Tlv {
        tag,
        whole: &input[..header + len],
        contents,
    };
    Some((tlv, rest))
}

/// Decodes exactly one DER value filling `input`.
fn decode_der<T: rasn::Decode>(input: &[u8], what: &str) -> Result<T, String> {
    let (value, rest) = rasn::der::decode_with_remainder::<T>(input)
        .map_err(|e| format!("{what} is not valid DER: {}", one_line(&e.to_string())))?;
    if !rest.is_empty() {
        return Err(format!("{what} has {} trailing byte(s)", rest.len()));
    }
    Ok(value)
}

fn parse_certificate<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!("{what} has {} trailing byte(s)", rest.len())),
        Err(e) => Err(format!(
            "{what} is not a valid certificate: {}",
            one_line(&e.to_string())
        )),
    }
}

/// A rasn OID as an x509-parser OID, to compare with the registry's constants.
fn x509_oid(oid: &ObjectIdentifier) -> Result<Oid<'static>, String> {
    let arcs: Vec<u64> = oid.iter().map(|&arc| u64::from(arc)).collect();
    Oid::from(&arcs).map_err(|_| format!("OCSP response contains invalid OID {}", dotted(oid)))
}

fn dotted(oid: &ObjectIdentifier) -> String {
    oid.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

fn status_name(status: OcspResponseStatus) -> &'static str {
    match status {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

/// Unix seconds as a UTC date for messages.
fn utc(unix: i64) -> String {
    rasn::types::UtcTime::from_timestamp(unix, 0)
        .map_or_else(|| format!("@{unix}"), |t| t.to_string())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
