//! The admin bearer token: 32 random bytes in hex, made at first start and kept in the data dir
//! with mode 0600. It is never logged.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// File name inside the data dir.
pub(crate) const TOKEN_FILE: &str = "admin.token";

/// Reads the token, creating it on first start.
pub(crate) fn load_or_create(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// Reads the token of a running server, for the CLI.
pub(crate) fn read(data_dir: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(data_dir.join(TOKEN_FILE))?
        .trim()
        .to_owned())
}
