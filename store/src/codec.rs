//! How records are written in every backend: JSON, decoded with the place they came from
//! named in the error.

use crate::error::StoreError;

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialise")
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    raw: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// A record's key that is a domain name.
pub(crate) fn domain_key(tree: &'static str, key: &[u8]) -> Result<crate::DomainName, StoreError> {
    crate::DomainName::parse(&String::from_utf8_lossy(key)).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}
