//! The exit codes of `porter`, in one place: each error type a command can fail with says
//! which [`ErrorKind`] each of its values is, and [`ErrorKind::exit_code`] is the one mapping
//! from kind to code. An error of a type that has no kinds (an I/O error, say) is
//! [`ErrorKind::Failed`]: exit 1.

use crate::control::admin::ClientError;
use crate::control::ops::OpError;
use porter_store::StoreError;
use std::error::Error;
use std::path::PathBuf;

/// A command other than `serve` and `init` found no store: it never creates one (a command run
/// from the wrong directory would otherwise report success on a new, empty store).
#[derive(Debug, thiserror::Error)]
#[error("no Porter store in {looked}: point --data-dir (or PORTER_DATA_DIR) at the data dir `porter serve` uses, or create one with `porter init`", looked = .data_dir.display())]
pub(super) struct NoStore {
    pub(super) data_dir: PathBuf,
}

/// A server has the data dir (it is starting, or holds the store) and its admin API does not
/// answer: a retry is worth it (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("a porter server is starting on {dir} (or holds its store) and its admin API does not answer yet: nothing was changed; retry in a few seconds (if this lasts, see `porter status` and the server's log)", dir = .data_dir.display())]
pub(super) struct NotAnswering {
    pub(super) data_dir: PathBuf,
}

/// The table `porter --help` ends with.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  failed: any error not listed below
  2  usage: the command line is wrong; nothing ran
  3  refused: the input is invalid, exists already or is in use; nothing changed
     (also `status` when no server runs, as `systemctl status` of a stopped unit)
  4  not found: what the command names does not exist, or there is no store
  5  unavailable: the server or its store does not answer now; worth a retry
`cert status --check` exits as a monitoring plugin: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.";

/// The exit code of `porter status` when no server runs (LSB: program is not running).
pub(crate) const NOT_RUNNING: u8 = 3;

/// Why a command failed, as a script tells it from the exit code (clap exits 2 on a usage
/// error before a command runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Anything else.
    Failed,
    /// The input was refused (invalid, exists already, in use): nothing changed.
    Refused,
    /// What it names does not exist, or there is no store.
    NotFound,
    /// The server (or its store) does not answer.
    Unavailable,
}

impl ErrorKind {
    /// The one mapping from kind to exit code.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Refused => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::Unavailable => 5,
        }
    }

    /// The kind's name in a `--json` error.
    pub(crate) fn word(self) -> &'static str {
        match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Refused => "refused",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unavailable => "unavailable",
        }
    }

    /// The kind of `error`: that of the outermost cause in its chain whose type has kinds.
    pub(crate) fn of(error: &anyhow::Error) -> Self {
        error.chain().find_map(kind_of).unwrap_or(ErrorKind::Failed)
    }
}

/// An error type each of whose values is of a kind.
pub(crate) trait HasKind: Error + 'static {
    fn kind(&self) -> ErrorKind;
}

/// The kind of one cause, when its type has kinds: every such type is in this list, once.
fn kind_of(cause: &(dyn Error + 'static)) -> Option<ErrorKind> {
    fn typed<T: HasKind>(cause: &(dyn Error + 'static)) -> Option<ErrorKind> {
        cause.downcast_ref::<T>().map(T::kind)
    }
    let kinded: [fn(&(dyn Error + 'static)) -> Option<ErrorKind>; 5] = [
        typed::<NoStore>,
        typed::<NotAnswering>,
        typed::<ClientError>,
        typed::<OpError>,
        typed::<StoreError>,
    ];
    kinded.iter().find_map(|kind| kind(cause))
}

impl HasKind for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Invalid(_) | StoreError::AlreadyExists(_) | StoreError::InUse(_) => {
                ErrorKind::Refused
            }
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::Locked(_) | StoreError::Stalled { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Failed,
        }
    }
}

impl HasKind for OpError {
    fn kind(&self) -> ErrorKind {
        match self {
            OpError::Store(e) => e.kind(),
            OpError::Refused(_) | OpError::Unreachable { .. } => ErrorKind::Refused,
        }
    }
}

impl HasKind for ClientError {
    /// The server's answer has the status its own operation's kind maps to (see
    /// `admin::router`); a connection cut before the answer is worth a retry.
    fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Api { status, .. } => match status.as_u16() {
                400 | 409 => ErrorKind::Refused,
                404 => ErrorKind::NotFound,
                503 => ErrorKind::Unavailable,
                _ => ErrorKind::Failed,
            },
            ClientError::Unreachable { .. } | ClientError::Cut { .. } => ErrorKind::Unavailable,
            ClientError::Protocol(_) => ErrorKind::Failed,
        }
    }
}

impl HasKind for NoStore {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NotFound
    }
}

impl HasKind for NotAnswering {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn each_kind_has_its_code_and_an_unknown_error_is_1() {
        let io = anyhow::Error::new(std::io::Error::other("disk on fire"));
        assert_eq!(ErrorKind::of(&io).exit_code(), 1);
        let cut = anyhow::Error::new(ClientError::Cut {
            addr: "127.0.0.1:2019".into(),
            reason: "reset".into(),
        })
        .context("site add");
        assert_eq!(ErrorKind::of(&cut).exit_code(), 5);
        let missing: anyhow::Error =
            OpError::Store(StoreError::NotFound("site a.test".into())).into();
        assert_eq!(ErrorKind::of(&missing).exit_code(), 4);
        let refused = Err::<(), _>(StoreError::AlreadyExists("site a.test".into()))
            .context("cannot add")
            .unwrap_err();
        assert_eq!(ErrorKind::of(&refused), ErrorKind::Refused);
        assert_eq!(
            refused.to_string(),
            "cannot add",
            "the context stays outermost"
        );
        let no_store = anyhow::Error::new(NoStore {
            data_dir: "/nowhere".into(),
        });
        assert_eq!(ErrorKind::of(&no_store).word(), "not_found");
    }
}
