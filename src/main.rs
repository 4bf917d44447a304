//! Porter: a TLS edge for hosting platforms.
//!
//! # Layout (each part may use the parts listed after it, never one before it)
//! - `cli`: the command line: arguments, dispatch (to the admin API, or with no server running
//!   straight to the store), rendering, exit codes.
//! - `serve`: `porter serve` as named steps, its flags, one server per data dir.
//! - `control`: the admin API and the operations behind it.
//! - `proxy`: connections, the request pipeline and its phases, the upstream side.
//! - `tls`: rustls configuration, SNI resolution, the accept step, session tickets.
//! - `observe`: Prometheus metrics and the access log.
//! - `served`: the snapshot the hot path reads, kept current from the store's changes, with the
//!   ACME challenge answers, on-demand rules and expiry warnings.
//! - `apps`: the supervisor of account daemons; `waf`: the libmodsecurity engine; `cache`: the
//!   HTTP cache (its tiers and RFC 9111).
//! - `balance`: a site's several upstreams: picking one, their health, active checks.
//! - `runtime`: services and the store follower, data dir, handover, systemd, logs.
//!
//! Data flows one way: CLI/API -> store -> followers -> served view -> connections.

mod apps;
mod balance;
mod cache;
mod cli;
mod control;
mod observe;
mod proxy;
mod runtime;
mod serve;
mod served;
mod tls;
mod waf;

use clap::Parser;
use std::process::ExitCode;

/// jemalloc for the whole process, exported unprefixed (`malloc`, `free`, ...) so that
/// libmodsecurity, opened with `dlopen`, allocates through it too: allocation was about a third
/// of a clean request's WAF cost under glibc's malloc, a fifth fewer instructions with jemalloc
/// (see docs/waf.md, "What it costs").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Most worker threads of the control plane's runtime.
const CONTROL_THREADS: usize = 2;

fn main() -> ExitCode {
    // Two providers are in the tree (the ACME side's crates are built on ring): the edge's is
    // the process default, for every component that asks for one.
    let _ = runtime::crypto::provider().install_default();
    runtime::data_dir::private_umask();
    let cli = cli::Cli::parse();
    let default_level = if cli.is_serve() { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let installed = match cli.log_format {
        cli::LogFormat::Text => tracing::subscriber::set_global_default(
            logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .finish(),
        ),
        // One JSON object a line, the event's fields flattened beside time, level and target.
        cli::LogFormat::Json => {
            tracing::subscriber::set_global_default(logs.json().flatten_event(true).finish())
        }
    };
    if installed.is_ok() {
        runtime::library_logs::install();
    }
    // The control plane (admin API, store watcher, ACME, OCSP, apps) and the CLI: light work.
    // Client connections are served on the edge's own threads (`proxy::EdgeThreads`).
    let control_threads =
        std::thread::available_parallelism().map_or(1, |n| n.get().min(CONTROL_THREADS));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(control_threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(cli::run(cli));
    // A read stuck on a stalled disk holds a blocking thread: do not wait for it to exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
