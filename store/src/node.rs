//! The nodes of a fleet: each `porter serve` on a shared store records itself, with where the
//! others reach it, for as long as it runs.

use crate::error::InvalidInput;

/// One running node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Its name (`--node`, the host name by default): apps belong to a node by it.
    pub name: String,
    /// `HOST:PORT` where the other nodes send it the requests of its apps.
    pub addr: String,
    /// Its process.
    pub pid: u32,
    /// When it started (unix seconds).
    pub started_at: i64,
}

impl Node {
    /// Checks a node name: 1-63 of `a-z 0-9 - _ .`, starting with a letter or digit.
    pub fn check_name(name: &str) -> Result<(), InvalidInput> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(())
        } else {
            Err(InvalidInput::Store(format!(
                "invalid node name {name:?}: use 1-63 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
            )))
        }
    }
}
