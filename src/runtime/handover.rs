//! Zero-downtime restart and upgrade. A running `porter serve` offers its listening sockets on a
//! unix socket in the data dir; a new `porter serve` on the same data dir asks for them before
//! it binds anything. The handover has two steps so that a successor that fails to start costs
//! nothing:
//!
//! 1. the successor asks; the running server sends its sockets (`SCM_RIGHTS`) and lets go of the
//!    store, serving on from memory and still accepting;
//! 2. the successor opens the store, starts, accepts on the same sockets and, once every site
//!    is loaded (and systemd told, under systemd), says `serving`; only then does the old
//!    server stop accepting, drain and exit. If the successor goes away
//!    before that, the old server takes the store back and carries on.
//!
//! Both accept from the same kernel queue meanwhile, so no connection is refused.

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut, Write as _};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::net::{UnixListener, UnixStream};

/// The socket's file name in the data dir.
const SOCKET: &str = "handover.sock";
const ASK: &[u8] = b"porter handover 1\n";
const SERVING: &[u8] = b"serving\n";
/// How long either side waits for the other's next message. A successor gets this long to
/// open the store and start after it has the sockets.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Most sockets handed over (http, https, admin, metrics).
const MAX_SOCKETS: usize = 8;

/// What the running server says with its sockets.
#[derive(Serialize, Deserialize)]
struct Offered {
    pid: u32,
    /// The role of each socket, in the order of the descriptors.
    roles: Vec<String>,
}

/// The sockets a successor received, by role, and the way to tell their old owner it serves.
pub(crate) struct Inherited {
    /// The server that handed them over.
    pub(crate) from: u32,
    sockets: Vec<(String, OwnedFd)>,
    channel: std::os::unix::net::UnixStream,
}

impl Inherited {
    /// Asks the server running on `data_dir` for its sockets; `None` when no server answers
    /// there (a socket file a crashed server left is removed).
    pub(crate) fn ask(data_dir: &Path) -> std::io::Result<Option<Inherited>> {
        let path = data_dir.join(SOCKET);
        let mut channel = match std::os::unix::net::UnixStream::connect(&path) {
            Ok(channel) => channel,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::info!(file = %path.display(), "removing a handover socket no server answers on");
                std::fs::remove_file(&path)?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        channel.set_read_timeout(Some(STEP_TIMEOUT))?;
        channel.set_write_timeout(Some(STEP_TIMEOUT))?;
        channel.write_all(ASK)?;
        let mut payload = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut payload)];
        let length = recvmsg(&channel, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?.bytes;
        let mut fds = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        let offered: Offered = serde_json::from_slice(&payload[..length]).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the running server's handover answer: {e}"),
            )
        })?;
        if offered.roles.len() != fds.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the running server named {} sockets and sent {}",
                    offered.roles.len(),
                    fds.len()
                ),
            ));
        }
        Ok(Some(Inherited {
            from: offered.pid,
            sockets: offered.roles.into_iter().zip(fds).collect(),
            channel,
        }))
    }

    fn take(&mut self, role: &str) -> Option<OwnedFd> {
        let at = self.sockets.iter().position(|(r, _)| r == role)?;
        Some(self.sockets.swap_remove(at).1)
    }

    /// The inherited TCP socket of `role` when it is bound to `wanted`, or to its IP when
    /// `wanted` asks for any port (0). Another address is bound afresh by the caller.
    pub(crate) fn tcp(
        &mut self,
        role: &str,
        wanted: SocketAddr,
    ) -> Option<tokio::net::TcpListener> {
        let fd = self.take(role)?;
        let listener = std::net::TcpListener::from(fd);
        let bound = listener.local_addr().ok()?;
        let same = bound == wanted || (wanted.port() == 0 && bound.ip() == wanted.ip());
        if !same {
            tracing::info!(role, %bound, %wanted, "not taking over a listener: this server is asked for another address");
            return None;
        }
        listener.set_nonblocking(true).ok()?;
        tokio::net::TcpListener::from_std(listener).ok()
    }

    /// The inherited UDP socket of `role` when it is bound to `wanted`.
    pub(crate) fn udp(&mut self, role: &str, wanted: SocketAddr) -> Option<std::net::UdpSocket> {
        let fd = self.take(role)?;
        let socket = std::net::UdpSocket::from(fd);
        let bound = socket.local_addr().ok()?;
        if bound != wanted {
            tracing::info!(role, %bound, %wanted, "not taking over a socket: this server is asked for another address");
            return None;
        }
        Some(socket)
    }

    /// The inherited unix socket of `role` when it is bound to `wanted`.
    pub(crate) fn unix(&mut self, role: &str, wanted: &Path) -> Option<UnixListener> {
        let fd = self.take(role)?;
        let listener = std::os::unix::net::UnixListener::from(fd);
        let bound = listener.local_addr().ok()?.as_pathname()?.to_path_buf();
        if bound != wanted {
            tracing::info!(role, bound = %bound.display(), wanted = %wanted.display(), "not taking over a listener: this server is asked for another address");
            return None;
        }
        listener.set_nonblocking(true).ok()?;
        UnixListener::from_std(listener).ok()
    }

    /// Tells the old server that this one serves: it stops accepting and drains. What it
    /// returns ends once the old server has let go of what only one process may read (its QUIC
    /// endpoint): when it has exited.
    pub(crate) fn serving(mut self) -> impl std::future::Future<Output = ()> {
        if let Err(e) = self.channel.write_all(SERVING) {
            tracing::warn!(error = %e, pid = self.from, "cannot tell the old server that this one serves; it keeps accepting until it is stopped");
        }
        let channel = self.channel;
        async move {
            // The old server holds its end until it exits; then the read sees the end.
            let exited = async {
                channel.set_nonblocking(true)?;
                let mut channel = UnixStream::from_std(channel)?;
                let mut rest = Vec::new();
                channel.read_to_end(&mut rest).await
            };
            let _ = tokio::time::timeout(STEP_TIMEOUT, exited).await;
        }
    }
}

/// The running server's side: the socket successors ask on, and the listeners it would give.
pub(crate) struct Offer {
    listener: UnixListener,
    path: PathBuf,
    sockets: Vec<(&'static str, OwnedFd)>,
}

/// How a handover attempt ended.
pub(crate) enum Handed {
    /// The successor serves: stop accepting and drain, holding the connection to the successor
    /// until this process exits (it reads the QUIC socket only then).
    Over(UnixStream),
    /// The successor went away before it served: take the store back and carry on.
    Abandoned,
}

impl Offer {
    /// Listens for successors in `data_dir`, with copies of `sockets` (by role) to give them.
    pub(crate) fn bind(
        data_dir: &Path,
        sockets: Vec<(&'static str, OwnedFd)>,
    ) -> std::io::Result<Offer> {
        let path = data_dir.join(SOCKET);
        // Only a socket no server answers on can be here now (see `Inherited::ask`); a
        // successor replaces its predecessor's, which stays open, unreachable, until it exits.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        Ok(Offer {
            listener,
            path,
            sockets,
        })
    }

    /// Waits for a successor and hands it the sockets; returns the connection to it once it
    /// has them, for [`Offer::outcome`]. Attempts by anyone but this user (or root) are refused.
    pub(crate) async fn asked(&self) -> UnixStream {
        loop {
            let mut stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "handover accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.give(&mut stream).await {
                Ok(pid) => {
                    tracing::info!(successor = ?pid, "listening sockets handed over; the store is the successor's once it opens it");
                    return stream;
                }
                Err(e) => tracing::warn!(error = %e, "handover refused"),
            }
        }
    }

    async fn give(&self, stream: &mut UnixStream) -> std::io::Result<Option<i32>> {
        let peer = stream.peer_cred()?;
        let me = nix::unistd::geteuid().as_raw();
        if peer.uid() != me && peer.uid() != 0 {
            return Err(std::io::Error::other(format!(
                "uid {} may not take this server's sockets",
                peer.uid()
            )));
        }
        let mut ask = [0u8; ASK.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut ask))
            .await
            .map_err(|_| std::io::Error::other("the successor said nothing"))??;
        if ask != ASK {
            return Err(std::io::Error::other("not a handover request"));
        }
        let offered = Offered {
            pid: std::process::id(),
            roles: self.sockets.iter().map(|(r, _)| (*r).to_owned()).collect(),
        };
        let payload = serde_json::to_vec(&offered).expect("serialisable");
        let fds: Vec<BorrowedFd<'_>> = self.sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(std::io::Error::other("too many sockets to hand over"));
        }
        stream.writable().await?;
        stream.try_io(tokio::io::Interest::WRITABLE, || {
            Ok(sendmsg(
                &*stream,
                &[IoSlice::new(&payload)],
                &mut control,
                SendFlags::empty(),
            )?)
        })?;
        Ok(peer.pid())
    }

    /// What the successor did with the sockets: it serves, or it went away (or said nothing
    /// within its time).
    pub(crate) async fn outcome(mut channel: UnixStream) -> Handed {
        let mut said = [0u8; SERVING.len()];
        match tokio::time::timeout(STEP_TIMEOUT, channel.read_exact(&mut said)).await {
            Ok(Ok(_)) if said == SERVING => Handed::Over(channel),
            _ => Handed::Abandoned,
        }
    }

    /// Closes the copies of the listening sockets (at a shutdown that hands nothing over, so
    /// that new connections are refused at once rather than queued for nobody).
    pub(crate) fn close(self, handed_over: bool) {
        // A successor's socket file is at the same path: leave it.
        if !handed_over {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
