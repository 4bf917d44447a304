//! Basic auth (RFC 7617) on a site or the paths under a prefix, against bcrypt or argon2
//! hashes. A hash costs tens of milliseconds of CPU to verify, by design: verifying runs on the
//! blocking pool, never on an edge thread, at most [`VERIFYING`] at once, and a pair of
//! credentials once verified is remembered (by a SHA-256 digest with the site and the stored
//! hash, never the password itself), so that a browser, which sends them with every request,
//! pays once. A changed password changes the stored hash, so what was remembered no longer
//! matches; a removed user is not found before anything remembered is looked at.

use crate::proxy::phases::answer::Own;
use base64::Engine as _;
use http::Request;
use porter_store::Recover as _;
use porter_store::{Credential, Features};
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use tokio::sync::Semaphore;

/// Hashes verified at once, across the edge.
const VERIFYING: usize = 4;
/// Verified credentials remembered; past it the memory starts again.
const REMEMBERED: usize = 16_384;

/// Whether `hash` is a bcrypt or argon2 hash the verifier can use.
pub(crate) fn check_hash(hash: &str) -> Result<(), String> {
    if hash.starts_with("$argon2") {
        argon2::PasswordHash::new(hash)
            .map(drop)
            .map_err(|e| format!("not a usable argon2 hash: {e}"))
    } else {
        hash.parse::<bcrypt::HashParts>()
            .map(drop)
            .map_err(|e| format!("not a usable bcrypt hash: {e}"))
    }
}

/// Whether `password` matches `hash`.
fn verify(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier as _;
        argon2::PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

/// A new argon2id hash of `password` (for `porter hash-password`).
pub(crate) fn hash(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher as _;
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| "no randomness for a salt".to_owned())?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn remembered() -> &'static Mutex<HashSet<[u8; 32]>> {
    static REMEMBERED_SET: OnceLock<Mutex<HashSet<[u8; 32]>>> = OnceLock::new();
    REMEMBERED_SET.get_or_init(Mutex::default)
}

fn verifying() -> &'static Semaphore {
    static SLOTS: Semaphore = Semaphore::const_new(VERIFYING);
    &SLOTS
}

/// Whether `path` is under `prefix` (whole segments: `/admin` guards `/admin` and
/// `/admin/x`, not `/administrator`).
fn under(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// The users who may see `path`: those of the longest prefix that guards it.
fn guarding<'a>(features: &'a Features, path: &str) -> Option<Vec<&'a Credential>> {
    let longest = features
        .basic_auth
        .iter()
        .filter(|c| under(path, &c.prefix))
        .map(|c| c.prefix.len())
        .max()?;
    Some(
        features
            .basic_auth
            .iter()
            .filter(|c| c.prefix.len() == longest && under(path, &c.prefix))
            .collect(),
    )
}

/// Lets `req` through when its path is not guarded or its credentials match; else
/// [`Own::Unauthorized`].
pub(crate) async fn check<B>(site: &str, features: &Features, req: &Request<B>) -> Result<(), Own> {
    if features.basic_auth.is_empty() {
        return Ok(());
    }
    let Some(users) = guarding(features, req.uri().path()) else {
        return Ok(());
    };
    let refused = || Own::Unauthorized(site.to_owned());
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refused)?;
    let (scheme, encoded) = header.split_once(' ').ok_or_else(refused)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(refused());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(refused)?;
    let (user, password) = decoded.split_once(':').ok_or_else(refused)?;
    let credential = users
        .into_iter()
        .find(|c| c.user == user)
        .ok_or_else(refused)?;
    let key = {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [site, "\0", &credential.hash, "\0", header] {
            digest.update(part.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.finish().as_ref());
        key
    };
    if remembered().lock().recover().contains(&key) {
        return Ok(());
    }
    let _slot = verifying().acquire().await.map_err(|_| refused())?;
    let (password, hash) = (password.to_owned(), credential.hash.clone());
    let matches = tokio::task::spawn_blocking(move || verify(&password, &hash))
        .await
        .unwrap_or(false);
    if !matches {
        return Err(refused());
    }
    let mut set = remembered().lock().recover();
    if set.len() >= REMEMBERED {
        set.clear();
    }
    set.insert(key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_guard_whole_segments_and_the_longest_wins() {
        let features = Features {
            basic_auth: vec![
                Credential::parse("all:$2y$10$x", "/").unwrap(),
                Credential::parse("admin:$2y$10$x", "/admin").unwrap(),
            ],
            ..Features::default()
        };
        let users = |path: &str| -> Vec<String> {
            guarding(&features, path)
                .unwrap()
                .iter()
                .map(|c| c.user.clone())
                .collect()
        };
        assert_eq!(users("/admin/x"), ["admin"]);
        assert_eq!(users("/admin"), ["admin"]);
        assert_eq!(users("/administrator"), ["all"]);
        assert_eq!(users("/"), ["all"]);
    }

    #[test]
    fn argon2_hashes_made_here_verify() {
        let hash = hash("s3cret").unwrap();
        check_hash(&hash).unwrap();
        assert!(verify("s3cret", &hash));
        assert!(!verify("S3cret", &hash));
        let bcrypt = bcrypt::hash("pw", 4).unwrap();
        check_hash(&bcrypt).unwrap();
        assert!(verify("pw", &bcrypt) && !verify("pW", &bcrypt));
        assert!(check_hash("$2y$10$tooshort").is_err());
    }
}
