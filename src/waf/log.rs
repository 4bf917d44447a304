//! The WAF log, `DATA_DIR/waf.log`: one JSON object a line for each request a rule matched
//! (or whose body was too long to inspect whole): the site, client, request line, action,
//! anomaly score and the rules (id, severity, message, variable; never the matched value, which
//! may be a password). It is written by the WAF's threads before the request goes on, so a line
//! is there by the time the client has its answer. Past [`ROTATE_AT`] bytes it moves to
//! `waf.log.1` (the one before is dropped). `porter waf log` reads it ([`follow`]).

use porter_store::Recover as _;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The log's size that moves it aside.
const ROTATE_AT: u64 = 64 * 1024 * 1024;
/// Longest request target logged.
const MAX_URI: usize = 2048;

/// One logged request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// RFC 3339, UTC.
    pub(crate) time: String,
    /// Porter's unique id of the request (the one its 403 page shows).
    pub(crate) id: String,
    pub(crate) site: String,
    /// `IP:port`.
    pub(crate) client: String,
    pub(crate) method: String,
    pub(crate) uri: String,
    /// `blocked`, `detected` (would be blocked in block mode) or `passed` (below the threshold).
    pub(crate) action: String,
    pub(crate) score: u32,
    pub(crate) threshold: u32,
    pub(crate) paranoia: u8,
    pub(crate) rules: Vec<Rule>,
    /// The body was longer than the site's limit: the rest was not inspected.
    #[serde(default)]
    pub(crate) body_truncated: bool,
}

/// A rule that matched, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Rule {
    pub(crate) id: u32,
    /// `critical`, `error`, `warning`, `notice` or empty.
    pub(crate) severity: String,
    pub(crate) msg: String,
    pub(crate) var: String,
}

/// The log file, appended to by every WAF thread.
pub(crate) struct WafLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl WafLog {
    pub(crate) fn new(path: PathBuf) -> Self {
        WafLog {
            path,
            file: Mutex::new(None),
        }
    }

    /// Appends `entry` (a failure is logged, never the request's problem).
    pub(crate) fn write(&self, mut entry: Entry) {
        if entry.uri.len() > MAX_URI {
            let mut end = MAX_URI;
            while !entry.uri.is_char_boundary(end) {
                end -= 1;
            }
            entry.uri.truncate(end);
        }
        let mut line = serde_json::to_vec(&entry).expect("an entry serializes");
        line.push(b'\n');
        let mut file = self.file.lock().recover();
        if let Err(e) = self.append(&mut file, &line) {
            *file = None;
            crate::runtime::log_limit::limited!(warn, "cannot write the WAF log", path = %self.path.display(), error = %e);
        }
    }

    fn append(&self, file: &mut Option<File>, line: &[u8]) -> io::Result<()> {
        if file.is_none() {
            *file = Some(open(&self.path)?);
        }
        let open_file = file.as_mut().expect("opened above");
        if open_file.metadata()?.len() + line.len() as u64 > ROTATE_AT {
            std::fs::rename(&self.path, rotated(&self.path))?;
            *open_file = open(&self.path)?;
        }
        // One write a line: readers never see half of one.
        open_file.write_all(line)
    }
}

fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// How much of the log's end `--follow` shows before what comes.
const FOLLOW_FROM_END: u64 = 64 * 1024;

/// Prints the entries of `path` (for `site` only, when given) as `show` makes them; with
/// `follow`, the last ones (its last 64 KiB) and then more as they come (across a rotation)
/// until interrupted.
pub(crate) fn follow(
    path: &Path,
    site: Option<&str>,
    follow: bool,
    mut show: impl FnMut(&Entry),
) -> io::Result<()> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound && follow => wait_for(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut offset = 0u64;
    if follow {
        let len = file.metadata()?.len();
        if len > FOLLOW_FROM_END {
            // From the first whole line in the last 64 KiB.
            file.seek(io::SeekFrom::Start(len - FOLLOW_FROM_END))?;
            let mut skipped = Vec::new();
            io::BufReader::new(&file).read_until(b'\n', &mut skipped)?;
            offset = len - FOLLOW_FROM_END + skipped.len() as u64;
        }
    }
    let mut partial = String::new();
    loop {
        // A line still being written is read again whole next time.
        partial.clear();
        file.seek(io::SeekFrom::Start(offset))?;
        let mut reader = io::BufReader::new(&file);
        loop {
            let read = reader.read_line(&mut partial)?;
            if read == 0 || !partial.ends_with('\n') {
                break;
            }
            offset += partial.len() as u64;
            if let Ok(entry) = serde_json::from_str::<Entry>(&partial) {
                if site.is_none_or(|s| s.eq_ignore_ascii_case(&entry.site)) {
                    show(&entry);
                }
            }
            partial.clear();
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
        // Moved aside: read the new file from its start.
        let rotated_away = match std::fs::metadata(path) {
            Ok(meta) => meta.len() < offset,
            Err(_) => true,
        };
        if rotated_away {
            file = wait_for(path)?;
            offset = 0;
        }
    }
}

fn wait_for(path: &Path) -> io::Result<File> {
    loop {
        match File::open(path) {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(e),
        }
    }
}
