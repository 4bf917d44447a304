//! The access log: one line per request (time, client, site, method, target, protocol, status,
//! bytes in and out, duration, upstream time, TLS version and resumption), in the `combined`
//! format web tools read or as JSON, to a file or stdout. Edge threads never wait for it: a
//! line is handed to a writer thread through a bounded queue, and when the queue is full it is
//! counted as dropped rather than queued without bound. `reopen` (on SIGHUP) makes the writer
//! reopen its file, so that logrotate can move it away.

use porter_store::Recover as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Lines waiting for the writer at most.
const QUEUE: usize = 16_384;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Apache's and nginx's `combined`, with the duration and upstream time in seconds added.
    Combined,
    /// One JSON object a line.
    Json,
}

/// Where lines go.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    Stdout,
    File(PathBuf),
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("give a file path, or - for stdout".into()),
            "-" => Ok(Destination::Stdout),
            path => Ok(Destination::File(path.into())),
        }
    }
}

/// As the flag takes it.
impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Stdout => f.write_str("-"),
            Destination::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One request, as logged.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) time: SystemTime,
    pub(crate) client: IpAddr,
    /// The host the request was for (`-` when it named none).
    pub(crate) site: String,
    pub(crate) method: http::Method,
    /// Path and query.
    pub(crate) target: String,
    pub(crate) version: http::Version,
    pub(crate) status: u16,
    /// The request body's declared length (`None` for a chunked body).
    pub(crate) bytes_in: Option<u64>,
    /// Response body bytes sent.
    pub(crate) bytes_out: u64,
    pub(crate) duration: Duration,
    /// Until the upstream's response head, when the request went upstream.
    pub(crate) upstream: Option<Duration>,
    /// `TLSv1.3` and whether the session was resumed; `None` for plain HTTP.
    pub(crate) tls: Option<(&'static str, bool)>,
    pub(crate) referer: Option<String>,
    pub(crate) user_agent: Option<String>,
}

enum Message {
    Line(Box<Entry>),
    Reopen,
}

/// The log's sending side, shared by the edge threads.
pub(crate) struct AccessLog {
    queue: SyncSender<Message>,
    dropped: AtomicU64,
    /// When dropped lines were last reported (once a minute at most).
    reported: Mutex<Option<Instant>>,
}

impl AccessLog {
    /// Opens `destination` (a file is created or appended to, `0600` under Porter's umask) and
    /// starts its writer thread, which ends once every `AccessLog` is dropped.
    pub(crate) fn open(destination: Destination, format: Format) -> io::Result<Arc<Self>> {
        let out = Out::open(&destination)?;
        let (queue, lines) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("porter-access-log".into())
            .spawn(move || write_lines(lines, out, &destination, format))?;
        Ok(Arc::new(AccessLog {
            queue,
            dropped: AtomicU64::new(0),
            reported: Mutex::new(None),
        }))
    }

    /// Hands `entry` to the writer, or counts it as dropped when the queue is full (reported
    /// once a minute at most).
    pub(crate) fn record(&self, entry: Entry) {
        if let Err(TrySendError::Full(_)) = self.queue.try_send(Message::Line(Box::new(entry))) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let mut reported = self.reported.lock().recover();
            if reported.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                *reported = Some(Instant::now());
                tracing::warn!(
                    dropped,
                    "the access log cannot keep up: lines dropped so far"
                );
            }
        }
    }

    /// Lines dropped since the start (the queue was full).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Makes the writer reopen its file (after the file was moved away).
    pub(crate) fn reopen(&self) {
        let _ = self.queue.try_send(Message::Reopen);
    }
}

enum Out {
    Stdout(io::Stdout),
    File(BufWriter<File>),
}

impl Out {
    fn open(destination: &Destination) -> io::Result<Self> {
        Ok(match destination {
            Destination::Stdout => Out::Stdout(io::stdout()),
            Destination::File(path) => Out::File(BufWriter::new(
                OpenOptions::new().create(true).append(true).open(path)?,
            )),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Out::Stdout(out) => out,
            Out::File(out) => out,
        }
    }
}

/// How often the writer thread wakes to write what has come. Woken by the clock rather than by
/// each line, so that an edge thread never pays for waking it (a futex call and a context
/// switch a request: half the CPU of a keep-alive request, measured).
const TICK: Duration = Duration::from_millis(20);

/// The writer thread: every [`TICK`], the lines that have come, written and flushed, until every
/// sender is gone.
fn write_lines(lines: Receiver<Message>, mut out: Out, destination: &Destination, format: Format) {
    let mut line = String::with_capacity(512);
    loop {
        std::thread::sleep(TICK);
        loop {
            match lines.try_recv() {
                Ok(Message::Line(entry)) => {
                    line.clear();
                    render(&entry, format, &mut line);
                    if let Err(e) = out.writer().write_all(line.as_bytes()) {
                        tracing::warn!(error = %e, "cannot write the access log");
                    }
                }
                Ok(Message::Reopen) => {
                    let _ = out.writer().flush();
                    match Out::open(destination) {
                        Ok(reopened) => out = reopened,
                        Err(e) => tracing::warn!(error = %e, "cannot reopen the access log"),
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.writer().flush();
                    return;
                }
            }
        }
        let _ = out.writer().flush();
    }
}

fn version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `entry` as one line (newline included) in `format`.
fn render(entry: &Entry, format: Format, out: &mut String) {
    use std::fmt::Write as _;
    let time = time::OffsetDateTime::from(entry.time);
    match format {
        Format::Combined => {
            let stamp = time
                .format(time::macros::format_description!(
                    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
                ))
                .unwrap_or_default();
            let quoted = |value: &Option<String>| {
                value
                    .as_deref()
                    .map_or("-".to_owned(), |v| v.replace('"', "\\\""))
            };
            let _ = writeln!(
                out,
                "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {} {:.3} {}",
                entry.client,
                stamp,
                entry.method,
                entry.target.replace('"', "%22"),
                version(entry.version),
                entry.status,
                entry.bytes_out,
                quoted(&entry.referer),
                quoted(&entry.user_agent),
                entry.site,
                entry.duration.as_secs_f64(),
                entry
                    .upstream
                    .map_or("-".to_owned(), |u| format!("{:.3}", u.as_secs_f64())),
            );
        }
        Format::Json => {
            let line = serde_json::json!({
                "time": time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "client": entry.client.to_string(),
                "site": entry.site,
                "method": entry.method.as_str(),
                "target": entry.target,
                "protocol": version(entry.version),
                "status": entry.status,
                "bytes_in": entry.bytes_in,
                "bytes_out": entry.bytes_out,
                "duration_ms": entry.duration.as_secs_f64() * 1000.0,
                "upstream_ms": entry.upstream.map(|u| u.as_secs_f64() * 1000.0),
                "tls": entry.tls.map(|(v, _)| v),
                "resumed": entry.tls.map(|(_, resumed)| resumed),
                "referer": entry.referer,
                "user_agent": entry.user_agent,
            });
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_547_200),
            client: "192.0.2.7".parse().unwrap(),
            site: "a.test".into(),
            method: http::Method::GET,
            target: "/x?y=\"1\"".into(),
            version: http::Version::HTTP_2,
            status: 200,
            bytes_in: Some(0),
            bytes_out: 1234,
            duration: Duration::from_millis(12),
            upstream: Some(Duration::from_millis(10)),
            tls: Some(("TLSv1.3", true)),
            referer: None,
            user_agent: Some("curl/8".into()),
        }
    }

    #[test]
    fn lines_in_both_formats() {
        let mut line = String::new();
        render(&entry(), Format::Combined, &mut line);
        assert_eq!(
            line,
            "192.0.2.7 - - [01/Dec/2025:00:00:00 +0000] \"GET /x?y=%221%22 HTTP/2.0\" 200 1234 \"-\" \"curl/8\" a.test 0.012 0.010\n"
        );
        line.clear();
        render(&entry(), Format::Json, &mut line);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["site"], "a.test");
        assert_eq!(value["status"], 200);
        assert_eq!(value["tls"], "TLSv1.3");
        assert_eq!(value["resumed"], true);
        assert_eq!(value["time"], "2025-12-01T00:00:00Z");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    }
}
