//! What the cache keeps: a response (status, end-to-end header fields, whole body) with the
//! times that make its age, the request values its `Vary` names, and its purge tags; the
//! variants of one URL together; and the byte form of them on disk, checked by a CRC-32 so a
//! torn or corrupt file is dropped, never served.

use crate::cache::control::Directives;
use crate::cache::policy::Times;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use std::sync::Arc;

/// Most variants (by `Vary`) kept for one URL; the oldest goes first.
const MAX_VARIANTS: usize = 8;
/// The first bytes of a cache file (and its format's version).
const MAGIC: &[u8; 4] = b"PCE1";

/// Where a response is kept: its site, scheme and request target (path and query). Methods
/// are not part of it: only `GET` responses are stored, and `HEAD` is answered from them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct Key {
    pub(crate) site: Arc<str>,
    pub(crate) https: bool,
    pub(crate) target: Box<str>,
}

impl Key {
    /// The target's path (without its query), for purges by prefix.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// One stored response.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) times: Times,
    /// The request's values of the fields its `Vary` names (`None`: absent).
    pub(crate) vary: Vec<(String, Option<Vec<u8>>)>,
    /// Its purge tags (`Surrogate-Key`, `Cache-Tag`).
    pub(crate) tags: Vec<String>,
    /// Its cache directives, read once from `headers` when it is stored rather than at every
    /// hit ([`Entry::new`]).
    pub(crate) directives: Directives,
}

impl Entry {
    /// A response to keep, its directives read from its fields.
    pub(crate) fn new(
        (status, headers): (StatusCode, HeaderMap),
        body: Bytes,
        times: Times,
        vary: Vec<(String, Option<Vec<u8>>)>,
        tags: Vec<String>,
    ) -> Entry {
        let (directives, _) = Directives::of_response(&headers);
        Entry {
            status,
            headers,
            body,
            times,
            vary,
            tags,
            directives,
        }
    }

    /// Bytes it takes, roughly: what the tiers weigh it by.
    pub(crate) fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + headers + 256) as u64
    }

    /// Whether it was stored for a request with these `Vary` values.
    pub(crate) fn matches(&self, req_headers: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, value)| {
            crate::cache::policy::vary_value(req_headers, name).as_deref() == value.as_deref()
        })
    }
}

/// The variants of one URL, newest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Variants(pub(crate) Arc<Vec<Arc<Entry>>>);

impl Variants {
    /// These with `entry` in place of any variant it replaces.
    pub(crate) fn with(&self, entry: Arc<Entry>) -> Variants {
        let mut all = vec![Arc::clone(&entry)];
        all.extend(
            self.0
                .iter()
                .filter(|old| old.vary != entry.vary)
                .take(MAX_VARIANTS - 1)
                .cloned(),
        );
        Variants(Arc::new(all))
    }

    /// These without `gone`; `None` when none is left.
    pub(crate) fn without(&self, gone: impl Fn(&Entry) -> bool) -> Option<Variants> {
        let kept: Vec<_> = self.0.iter().filter(|e| !gone(e)).cloned().collect();
        (!kept.is_empty()).then(|| Variants(Arc::new(kept)))
    }

    /// The variant for a request with `req_headers`.
    pub(crate) fn select(&self, req_headers: &HeaderMap) -> Option<&Arc<Entry>> {
        self.0.iter().find(|e| e.matches(req_headers))
    }

    pub(crate) fn weight(&self) -> u64 {
        self.0.iter().map(|e| e.weight()).sum()
    }

    /// When the newest variant arrived (Unix milliseconds).
    pub(crate) fn stored_ms(&self) -> u64 {
        self.0
            .iter()
            .map(|e| e.times.response_ms)
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn tags(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .flat_map(|e| e.tags.iter().map(String::as_str))
    }
}

/// What a file says of itself before its bodies.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Meta {
    pub(crate) key: Key,
    pub(crate) variants: Vec<VariantMeta>,
}

/// One variant's head in a file.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct VariantMeta {
    status: u16,
    /// Its header fields as `name: value` lines.
    #[serde(with = "crate::cache::entry::latin1")]
    head: Vec<u8>,
    pub(crate) times: Times,
    vary: Vec<(String, Option<String>)>,
    pub(crate) tags: Vec<String>,
    body_len: u64,
}

/// Bytes kept in JSON strings one char per byte, so that any header value survives.
mod latin1 {
    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.iter().map(|b| char::from(*b)).collect::<String>())
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(serde::de::Error::custom))
            .collect()
    }
}

fn to_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

fn from_latin1(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// Why a file was not read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("not a cache file of this version")]
    Magic,
    #[error("checksum mismatch (torn or corrupt)")]
    Checksum,
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// The file form of `key`'s `variants`: magic, meta length, meta (JSON), bodies, CRC-32.
pub(crate) fn encode(key: &Key, variants: &Variants) -> Vec<u8> {
    let meta = Meta {
        key: key.clone(),
        variants: variants
            .0
            .iter()
            .map(|e| VariantMeta {
                status: e.status.as_u16(),
                head: head_lines(&e.headers),
                times: e.times,
                vary: e
                    .vary
                    .iter()
                    .map(|(n, v)| (n.clone(), v.as_deref().map(to_latin1)))
                    .collect(),
                tags: e.tags.clone(),
                body_len: e.body.len() as u64,
            })
            .collect(),
    };
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    let bodies: usize = variants.0.iter().map(|e| e.body.len()).sum();
    let mut out = Vec::with_capacity(12 + meta.len() + bodies);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    for e in variants.0.iter() {
        out.extend_from_slice(&e.body);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The meta at the start of a file (`prefix` holds at least its first bytes), without
/// checking the bodies: what a restart reads to know the file again.
pub(crate) fn meta_of(prefix: &[u8]) -> Result<(Meta, usize), Unreadable> {
    if prefix.get(..4) != Some(MAGIC) {
        return Err(Unreadable::Magic);
    }
    let len = prefix
        .get(4..8)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(Unreadable::Malformed("short"))?;
    let meta = prefix
        .get(8..8 + len)
        .ok_or(Unreadable::Malformed("short meta"))?;
    let meta = serde_json::from_slice(meta).map_err(|_| Unreadable::Malformed("meta"))?;
    Ok((meta, 8 + len))
}

/// The meta length a file's first 8 bytes announce.
pub(crate) fn meta_len(first: &[u8; 8]) -> Result<usize, Unreadable> {
    if &first[..4] != MAGIC {
        return Err(Unreadable::Magic);
    }
    Ok(8 + u32::from_le_bytes([first[4], first[5], first[6], first[7]]) as usize)
}

/// A whole file read back, checked.
pub(crate) fn decode(file: &[u8]) -> Result<(Key, Variants), Unreadable> {
    let (body, crc) = file
        .len()
        .checked_sub(4)
        .map(|at| file.split_at(at))
        .ok_or(Unreadable::Malformed("short"))?;
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(Unreadable::Checksum);
    }
    let (meta, mut at) = meta_of(body)?;
    let file = Bytes::copy_from_slice(body);
    let mut entries = Vec::with_capacity(meta.variants.len());
    for v in meta.variants {
        let end = at
            .checked_add(v.body_len as usize)
            .filter(|end| *end <= file.len())
            .ok_or(Unreadable::Malformed("body length"))?;
        let vary = v
            .vary
            .into_iter()
            .map(|(n, value)| match value {
                Some(value) => from_latin1(&value).map(|b| (n, Some(b))),
                None => Some((n, None)),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(Unreadable::Malformed("vary"))?;
        let status = StatusCode::from_u16(v.status).map_err(|_| Unreadable::Malformed("status"))?;
        let headers = parse_head(&v.head).ok_or(Unreadable::Malformed("head"))?;
        let body = file.slice(at..end);
        entries.push(Arc::new(Entry::new(
            (status, headers),
            body,
            v.times,
            vary,
            v.tags,
        )));
        at = end;
    }
    if entries.is_empty() {
        return Err(Unreadable::Malformed("no variant"));
    }
    Ok((meta.key, Variants(Arc::new(entries))))
}

fn head_lines(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn parse_head(head: &[u8]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line.iter().position(|b| *b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static [u8], vary: Option<&[u8]>) -> Arc<Entry> {
        let mut headers = HeaderMap::new();
        headers.insert("x-odd", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        headers.append("set-thing", HeaderValue::from_static("a"));
        headers.append("set-thing", HeaderValue::from_static("b"));
        let times = Times {
            request_ms: 1,
            response_ms: 2,
            initial_age: 3,
            lifetime: 4,
        };
        Arc::new(Entry::new(
            (StatusCode::OK, headers),
            Bytes::from_static(body),
            times,
            vec![("accept-language".into(), vary.map(<[u8]>::to_vec))],
            vec!["t1".into()],
        ))
    }

    #[test]
    fn files_read_back_and_damage_is_found() {
        let key = Key {
            site: "a.test".into(),
            https: true,
            target: "/x?y".into(),
        };
        let variants = Variants::default()
            .with(entry(b"one", Some(b"fr\xe9")))
            .with(entry(b"two", None));
        let file = encode(&key, &variants);
        let (back, read) = decode(&file).unwrap();
        assert_eq!(back, key);
        assert_eq!(read.0.len(), 2);
        assert_eq!(&read.0[0].body[..], b"two");
        assert_eq!(&read.0[1].body[..], b"one");
        assert_eq!(read.0[1].vary, variants.0[1].vary);
        assert_eq!(read.0[1].headers, variants.0[1].headers);
        for at in [0, 6, 20, file.len() / 2, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {at}");
        }
        assert!(decode(&file[..file.len() - 3]).is_err());
        let first: [u8; 8] = file[..8].try_into().unwrap();
        let len = meta_len(&first).unwrap();
        assert_eq!(meta_of(&file[..len]).unwrap().0.key, key);
    }
}
