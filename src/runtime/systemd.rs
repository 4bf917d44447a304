//! systemd's readiness protocol (`sd_notify`, for `Type=notify`): `READY=1` once the listeners
//! are bound and every site is loaded, `STOPPING=1` when Porter starts draining. A server that
//! took over from another (a SIGUSR2 upgrade, see `serve`) says `MAINPID=` with its `READY=1`,
//! so that systemd follows it (the unit's `NotifyAccess=all` lets it), and the server that
//! handed over says nothing more: it is no longer the service. One datagram to `$NOTIFY_SOCKET`
//! each (a path, or an abstract name written `@name`); nothing without it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What this server tells systemd besides readiness.
pub(crate) struct Notices {
    /// It took over from another server, which systemd knows as the service's main process.
    pub(crate) took_over: bool,
    /// Set once it has handed over to a successor: its stop is not the service's.
    pub(crate) handed_over: Arc<AtomicBool>,
}

/// Reports readiness now, then runs `then` (a successor tells its predecessor that it serves
/// only once systemd follows it: the predecessor's exit is not the service's then), and the
/// start of the drain at `stop` (a service started when ready).
pub(crate) async fn report(stop: CancellationToken, notices: Notices, then: impl FnOnce()) {
    let socket = std::env::var_os("NOTIFY_SOCKET");
    if let Some(socket) = &socket {
        if notices.took_over {
            let message = format!("MAINPID={}\nREADY=1\nSTATUS=serving", std::process::id());
            send(socket, &message);
        } else {
            send(socket, "READY=1\nSTATUS=serving");
        }
    }
    then();
    stop.cancelled().await;
    if let Some(socket) = &socket {
        if !notices.handed_over.load(Ordering::Acquire) {
            send(socket, "STOPPING=1\nSTATUS=draining");
        }
    }
}

fn send(socket: &OsString, message: &str) {
    let sent = UnixDatagram::unbound().and_then(|datagram| {
        let path = socket.as_bytes();
        match path.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                datagram.send_to_addr(message.as_bytes(), &addr)
            }
            None => datagram.send_to(message.as_bytes(), socket),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, socket = ?socket, "cannot notify systemd");
    }
}
