//! Checks of `check` against responses signed by the real `openssl ocsp`.

use super::*;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

const LEAF_SERIAL: u64 = 0x1001;
const OTHER_SERIAL: u64 = 0x2002;
/// 2024-01-01T00:00:00Z, the revocation time written to the index.
const REVOKED_AT: i64 = 1_704_067_200;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("the openssl CLI is needed by these tests: install openssl")
        }
        Err(e) => panic!("running openssl: {e}"),
    };
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Authority {
    params: CertificateParams,
    key: KeyPair,
    cert: Certificate,
}

fn named(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params
}

fn authority(name: &str, key: KeyPair) -> Authority {
    let mut params = named(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Authority { params, key, cert }
}

fn issue(
    ca: &Authority,
    name: &str,
    serial: u64,
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = named(name);
    params.serial_number = Some(SerialNumber::from(serial));
    params.extended_key_usages = eku;
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    (cert, key)
}

/// A key made by `openssl genpkey` with `args`: ring cannot generate RSA keys, and openssl
/// 3.0 cannot read the PKCS#8 v2 Ed25519 keys ring makes.
fn openssl_key(dir: &Path, args: &[&str]) -> KeyPair {
    let mut genpkey = vec!["genpkey", "-out", "generated.key"];
    genpkey.extend_from_slice(args);
    openssl(dir, &genpkey);
    KeyPair::from_pem(&std::fs::read_to_string(dir.join("generated.key")).unwrap()).unwrap()
}

enum Index {
    Good,
    Revoked,
    Missing,
}

/// Asks `openssl ocsp` for a response about `subject` (issued by `ca`) signed by `signer`.
fn respond(
    ca: &Authority,
    subject: &Certificate,
    serial: u64,
    index: Index,
    signer: (&Certificate, &KeyPair),
    extra: &[&str],
) -> Vec<u8> {
    respond_with(ca, subject, serial, index, signer, &[], extra)
}

fn respond_with(
    ca: &Authority,
    subject: &Certificate,
    serial: u64,
    index: Index,
    signer: (&Certificate, &KeyPair),
    request_extra: &[&str],
    extra: &[&str],
) -> Vec<u8> {
    let dir = TempDir::new().unwrap();
    let path = dir.path();
    let write = |name: &str, text: &str| std::fs::write(path.join(name), text).unwrap();
    write("ca.pem", &ca.cert.pem());
    write("leaf.pem", &subject.pem());
    write("signer.pem", &signer.0.pem());
    write("signer.key", &signer.1.serialize_pem());
    let line = match index {
        Index::Good => format!("V\t301231235959Z\t\t{serial:X}\tunknown\t/CN=leaf\n"),
        Index::Revoked => format!(
            "R\t301231235959Z\t240101000000Z,keyCompromise\t{serial:X}\tunknown\t/CN=leaf\n"
        ),
        Index::Missing => String::new(),
    };
    write("index.txt", &line);
    write("index.txt.attr", "unique_subject = no\n");
    // Options for the CertID (such as its digest) must come before -cert.
    let mut request = vec!["ocsp", "-issuer", "ca.pem"];
    request.extend_from_slice(request_extra);
    request.extend_from_slice(&["-cert", "leaf.pem", "-reqout", "req.der", "-no_nonce"]);
    openssl(path, &request);
    let mut args = vec![
        "ocsp",
        "-index",
        "index.txt",
        "-CA",
        "ca.pem",
        "-rsigner",
        "signer.pem",
        "-rkey",
        "signer.key",
        "-reqin",
        "req.der",
        "-respout",
        "resp.der",
    ];
    args.extend_from_slice(extra);
    openssl(path, &args);
    std::fs::read(path.join("resp.der")).unwrap()
}

const ONE_DAY: &[&str] = &["-ndays", "1"];

/// A response about `leaf` (serial [`LEAF_SERIAL`]) with `index`, signed by its issuer `ca`.
fn by_issuer(ca: &Authority, leaf: &Certificate, index: Index, extra: &[&str]) -> Vec<u8> {
    respond(ca, leaf, LEAF_SERIAL, index, (&ca.cert, &ca.key), extra)
}

fn ec_ca(name: &str) -> Authority {
    authority(name, KeyPair::generate().unwrap())
}

fn leaf_of(ca: &Authority) -> Certificate {
    issue(ca, "leaf", LEAF_SERIAL, vec![]).0
}

fn check_now(response: &[u8], leaf: &Certificate, ca: &Authority) -> Result<Checked, String> {
    check(response, leaf.der(), ca.cert.der(), now())
}

#[test]
fn good_response_signed_by_the_issuer() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let response = by_issuer(&ca, &leaf, Index::Good, ONE_DAY);
    let checked = check_now(&response, &leaf, &ca).unwrap();
    assert_eq!(checked.status, OcspStatus::Good);
    let now = now();
    assert!((checked.this_update - now).abs() < 120, "{checked:?}");
    assert!(
        (checked.next_update - (now + 86_400)).abs() < 120,
        "{checked:?}"
    );

    // The bytes verified are sliced from the input; rasn's DER re-encoding agrees with them.
    let ocsp: OcspResponse = rasn::der::decode(&response).unwrap();
    let basic_der = ocsp.bytes.unwrap().response;
    let raw = split_basic(&basic_der).unwrap();
    let basic: BasicOcspResponse = rasn::der::decode(&basic_der).unwrap();
    assert_eq!(
        rasn::der::encode(&basic.tbs_response_data).unwrap(),
        raw.tbs
    );
    assert_eq!(raw.certs, [ca.cert.der().as_ref()]);
}

#[test]
fn revoked_response() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let response = by_issuer(&ca, &leaf, Index::Revoked, ONE_DAY);
    let checked = check_now(&response, &leaf, &ca).unwrap();
    assert_eq!(checked.status, OcspStatus::Revoked { at: REVOKED_AT });
}

#[test]
fn unknown_certificate_is_reported_as_unknown() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let response = by_issuer(&ca, &leaf, Index::Missing, ONE_DAY);
    let checked = check_now(&response, &leaf, &ca).unwrap();
    assert_eq!(checked.status, OcspStatus::Unknown);
}

#[test]
fn response_signed_by_an_unrelated_ca_is_refused() {
    let ca = ec_ca("ca");
    let stranger = ec_ca("stranger");
    let leaf = leaf_of(&ca);
    // The stranger's certificate is included: it verifies, but is not issued by the issuer.
    let response = respond(
        &ca,
        &leaf,
        LEAF_SERIAL,
        Index::Good,
        (&stranger.cert, &stranger.key),
        ONE_DAY,
    );
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(err.contains("is not signed by the issuer"), "{err}");
    // Without certificates nothing verifies at all.
    let response = respond(
        &ca,
        &leaf,
        LEAF_SERIAL,
        Index::Good,
        (&stranger.cert, &stranger.key),
        &["-ndays", "1", "-resp_no_certs"],
    );
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(err.contains("signature does not verify"), "{err}");
}

#[test]
fn response_for_another_certificate_is_refused() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let other = issue(&ca, "other", OTHER_SERIAL, vec![]).0;
    let response = respond(
        &ca,
        &other,
        OTHER_SERIAL,
        Index::Good,
        (&ca.cert, &ca.key),
        ONE_DAY,
    );
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(
        err.contains("no status for certificate serial 10:01"),
        "{err}"
    );
}

#[test]
fn response_naming_another_issuer_is_refused() {
    // Same serial, same signer, but the CertID hashes name a different issuer: the response
    // is about another CA's certificate 0x1001.
    let ca = ec_ca("ca");
    let twin = ec_ca("twin");
    let leaf = leaf_of(&ca);
    let twin_leaf = leaf_of(&twin);
    let response = respond(
        &twin,
        &twin_leaf,
        LEAF_SERIAL,
        Index::Good,
        (&ca.cert, &ca.key),
        ONE_DAY,
    );
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(err.contains("names a different issuer"), "{err}");
}

#[test]
fn expired_response_is_refused() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let response = by_issuer(&ca, &leaf, Index::Good, ONE_DAY);
    let err = check(&response, leaf.der(), ca.cert.der(), now() + 2 * 86_400).unwrap_err();
    assert!(err.contains("expired"), "{err}");
}

#[test]
fn response_from_the_future_is_refused() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let response = by_issuer(&ca, &leaf, Index::Good, ONE_DAY);
    // Within the tolerated skew it passes; an hour before thisUpdate it does not.
    check(&response, leaf.der(), ca.cert.der(), now() - 60).unwrap();
    let err = check(&response, leaf.der(), ca.cert.der(), now() - 3600).unwrap_err();
    assert!(err.contains("in the future"), "{err}");
}

#[test]
fn response_without_next_update_is_refused() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let response = by_issuer(&ca, &leaf, Index::Good, &[]);
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(err.contains("no nextUpdate"), "{err}");
}

#[test]
fn delegated_responder_with_ocsp_signing_is_accepted() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let (responder, key) = issue(
        &ca,
        "responder",
        0x3003,
        vec![ExtendedKeyUsagePurpose::OcspSigning],
    );
    let response = respond(
        &ca,
        &leaf,
        LEAF_SERIAL,
        Index::Good,
        (&responder, &key),
        ONE_DAY,
    );
    let checked = check_now(&response, &leaf, &ca).unwrap();
    assert_eq!(checked.status, OcspStatus::Good);
}

#[test]
fn delegated_responder_outside_its_validity_is_refused() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let key = KeyPair::generate().unwrap();
    let mut params = named("responder");
    params.serial_number = Some(SerialNumber::from(0x3003u64));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now() - 10 * 86_400).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(now() - 86_400).unwrap();
    let responder = params
        .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    let response = respond(
        &ca,
        &leaf,
        LEAF_SERIAL,
        Index::Good,
        (&responder, &key),
        ONE_DAY,
    );
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(err.contains("is not valid now"), "{err}");
}

#[test]
fn delegated_responder_without_ocsp_signing_is_refused() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let (responder, key) = issue(&ca, "responder", 0x3003, vec![]);
    let response = respond(
        &ca,
        &leaf,
        LEAF_SERIAL,
        Index::Good,
        (&responder, &key),
        ONE_DAY,
    );
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(
        err.contains("lacks extended key usage id-kp-OCSPSigning"),
        "{err}"
    );
}

#[test]
fn tampered_signature_is_refused() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let mut response = by_issuer(&ca, &leaf, Index::Good, &["-ndays", "1", "-resp_no_certs"]);
    // Without certificates the response ends with the signature's last byte.
    *response.last_mut().unwrap() ^= 0x01;
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(err.contains("signature does not verify"), "{err}");
}

#[test]
fn sha256_cert_id_is_matched() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let response = respond_with(
        &ca,
        &leaf,
        LEAF_SERIAL,
        Index::Good,
        (&ca.cert, &ca.key),
        &["-sha256"],
        ONE_DAY,
    );
    let ocsp: OcspResponse = rasn::der::decode(&response).unwrap();
    let basic: BasicOcspResponse = rasn::der::decode(&ocsp.bytes.unwrap().response).unwrap();
    let id = &basic.tbs_response_data.responses[0].cert_id;
    assert_eq!(
        x509_oid(&id.hash_algorithm.algorithm).unwrap(),
        OID_NIST_HASH_SHA256
    );
    assert_eq!(
        check_now(&response, &leaf, &ca).unwrap().status,
        OcspStatus::Good
    );
}

#[test]
fn ecdsa_with_sha384_p384_and_ed25519_signatures() {
    // P-256 key signing with SHA-384.
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let response = by_issuer(&ca, &leaf, Index::Good, &["-ndays", "1", "-rmd", "sha384"]);
    assert_eq!(
        check_now(&response, &leaf, &ca).unwrap().status,
        OcspStatus::Good
    );
    // P-384 and Ed25519 issuers, with openssl's default digest.
    let dir = TempDir::new().unwrap();
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let ed25519 = openssl_key(dir.path(), &["-algorithm", "ed25519"]);
    for key in [p384, ed25519] {
        let ca = authority("ca", key);
        let leaf = leaf_of(&ca);
        let response = by_issuer(&ca, &leaf, Index::Good, ONE_DAY);
        assert_eq!(
            check_now(&response, &leaf, &ca).unwrap().status,
            OcspStatus::Good,
            "{:?}",
            ca.key.algorithm()
        );
    }
}

#[test]
fn rsa_signed_responses() {
    let dir = TempDir::new().unwrap();
    let key = openssl_key(
        dir.path(),
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let ca = authority("rsa ca", key);
    let leaf = leaf_of(&ca);
    for (digest, oid) in [
        ("sha256", OID_PKCS1_SHA256WITHRSA),
        ("sha384", OID_PKCS1_SHA384WITHRSA),
        ("sha512", OID_PKCS1_SHA512WITHRSA),
        ("sha1", OID_PKCS1_SHA1WITHRSA),
    ] {
        let response = by_issuer(&ca, &leaf, Index::Revoked, &["-ndays", "1", "-rmd", digest]);
        let ocsp: OcspResponse = rasn::der::decode(&response).unwrap();
        let basic: BasicOcspResponse = rasn::der::decode(&ocsp.bytes.unwrap().response).unwrap();
        assert_eq!(x509_oid(&basic.signature_algorithm.algorithm).unwrap(), oid);
        assert_eq!(
            check_now(&response, &leaf, &ca).unwrap().status,
            OcspStatus::Revoked { at: REVOKED_AT },
            "{digest}"
        );
    }
}

#[test]
fn garbage_and_unsuccessful_responses_are_refused() {
    let ca = ec_ca("ca");
    let leaf = leaf_of(&ca);
    let err = check_now(b"certainly not an OCSP response", &leaf, &ca).unwrap_err();
    assert!(err.contains("not valid DER"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    let err = check_now(&[], &leaf, &ca).unwrap_err();
    assert!(err.contains("not valid DER"), "{err}");
    // OCSPResponse { responseStatus tryLater }.
    let err = check_now(&[0x30, 0x03, 0x0a, 0x01, 0x03], &leaf, &ca).unwrap_err();
    assert_eq!(
        err,
        "OCSP responder answered tryLater instead of successful"
    );
    // A valid response followed by garbage.
    let mut response = by_issuer(&ca, &leaf, Index::Good, ONE_DAY);
    response.push(0);
    let err = check_now(&response, &leaf, &ca).unwrap_err();
    assert!(err.contains("trailing"), "{err}");
}

#[test]
fn split_tlv_handles_long_lengths_and_rejects_truncation() {
    let mut long = vec![0x04, 0x81, 0x80];
    long.extend_from_slice(&[7; 0x80]);
    long.push(0xff);
    let (tlv, rest) = split_tlv(&long).unwrap();
    assert_eq!(
        (tlv.tag, tlv.whole.len(), tlv.contents.len(), rest),
        (0x04, 0x83, 0x80, &[0xff][..])
    );
    assert!(take(&long, 0x30).is_none());
    assert!(split_tlv(&[0x30, 0x05, 0x00]).is_none());
    assert!(split_tlv(&[0x30, 0x80, 0x00, 0x00]).is_none());
    assert!(split_tlv(&[0x1f, 0x01, 0x00]).is_none());
}
