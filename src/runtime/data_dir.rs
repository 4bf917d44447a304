//! The data dir holds private keys and the admin token: it is private to the user Porter runs
//! as. Created 0700; an existing one with looser modes is tightened (its folders to 0700, its
//! files to 0600) with a warning; one owned by another user is refused, except that root's
//! commands other than `serve` act as its owner ([`act_as_owner`]). Files created later are
//! private through the umask set at start ([`private_umask`]).

use anyhow::{bail, Context as _};
use std::fs::Permissions;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Makes every file this process creates private to its user. Children inherit it: an app
/// that wants another one sets its own (`sh -c 'umask 022; exec ...'`).
pub(crate) fn private_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Creates the data dir (mode 0700) when missing; checks and tightens an existing one.
pub(crate) fn prepare(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
        return Ok(());
    }
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot read the data dir {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "the data dir {} is not a directory: point --data-dir (or PORTER_DATA_DIR) at a directory",
            dir.display()
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && me == 0 {
        bail!(
            "the data dir {} belongs to uid {}, not to root: `porter serve` runs as the data dir's owner (systemd's User=); root's other commands act as the owner",
            dir.display(),
            meta.uid()
        );
    }
    if meta.uid() != me {
        bail!(
            "the data dir {} belongs to uid {}, not to this user (uid {me}): run Porter as its owner, or give it a data dir of its own",
            dir.display(),
            meta.uid()
        );
    }
    let loosened = tighten(dir)
        .with_context(|| format!("cannot make the data dir {} private", dir.display()))?;
    if loosened > 0 {
        tracing::warn!(dir = %dir.display(), entries = loosened, "the data dir was readable by other users: made it private (folders 0700, files 0600)");
    }
    Ok(())
}

/// Run by root on a data dir (or sled store) another user owns (the service user's, repaired
/// while the server is stopped), becomes that user and its group, for good, so that every file the command or
/// the store creates there is theirs, with the modes Porter gives its files. Nothing changes
/// for any other user, or a data dir that root owns or that is missing.
///
/// `serve` does not call it: a server as root binds ports below 1024 and runs apps as their
/// own users, which it could not do after switching; it is refused instead ([`prepare`]).
/// Callers read the operator's input files (certificates, backups) before, as root.
pub(crate) fn act_as_owner(dir: &Path) -> anyhow::Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return Ok(());
    };
    if !meta.is_dir() || meta.uid() == 0 {
        return Ok(());
    }
    let (uid, gid) = (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()));
    // Groups first: once the uid is dropped they can no longer change. glibc applies each
    // of these to every thread of the process.
    setgroups(&[gid])
        .and_then(|()| setgid(gid))
        .and_then(|()| setuid(uid))
        .with_context(|| {
            format!(
                "cannot become uid {uid} (gid {gid}), the owner of the data dir {}",
                dir.display()
            )
        })
}

/// Sets folders under `dir` (and `dir`) to 0700 and files to 0600 where they allow more;
/// returns how many were changed. Symbolic links are left alone, not followed.
fn tighten(dir: &Path) -> std::io::Result<usize> {
    let mut changed = set_private(dir, &std::fs::symlink_metadata(dir)?)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            changed += tighten(&entry.path())?;
        } else if meta.is_file() {
            changed += set_private(&entry.path(), &meta)?;
        }
    }
    Ok(changed)
}

fn set_private(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<usize> {
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(0);
    }
    let private = if meta.is_dir() { 0o700 } else { 0o600 };
    std::fs::set_permissions(path, Permissions::from_mode(private))?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_loose_data_dir_is_made_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("store/blobs")).unwrap();
        std::fs::write(dir.join("store/db"), b"keys").unwrap();
        std::fs::write(dir.join("token"), b"secret").unwrap();
        for (path, mode) in [
            (dir.clone(), 0o755),
            (dir.join("store"), 0o755),
            (dir.join("store/blobs"), 0o777),
            (dir.join("store/db"), 0o644),
            (dir.join("token"), 0o640),
        ] {
            std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
        }
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("store")), 0o700);
        assert_eq!(mode(&dir.join("store/blobs")), 0o700);
        assert_eq!(mode(&dir.join("store/db")), 0o600);
        assert_eq!(mode(&dir.join("token")), 0o600);
        assert_eq!(tighten(&dir).unwrap(), 0, "nothing left to tighten");
    }

    #[test]
    fn a_missing_data_dir_is_created_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn a_file_is_refused_as_data_dir_and_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("hostname");
        std::fs::write(&file, b"h").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        let error = prepare(&file).unwrap_err().to_string();
        assert!(error.contains("is not a directory"), "{error}");
        assert_eq!(mode(&file), 0o644, "its mode must not change");
    }
}
