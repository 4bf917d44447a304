//! Whether a QUIC connection's TLS session was resumed, which quinn does not say: the server's
//! QUIC crypto is wrapped and the first messages of its Handshake flight read as they go. In
//! TLS 1.3 a full handshake sends its certificate (or asks for the client's) right after
//! EncryptedExtensions; a resumed one goes on to Finished (RFC 8446 section 2.2).

use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::crypto::{
    ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, PacketKey, ServerConfig, Session,
    UnsupportedVersion,
};
use quinn::{ConnectionId, Side};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::TransportError;
use std::any::Any;
use std::sync::Arc;

/// TLS handshake message types (RFC 8446 section 4).
const ENCRYPTED_EXTENSIONS: u8 = 8;
const FINISHED: u8 = 20;
/// Handshake bytes looked at, at most, before giving up (a certificate chain is never read:
/// the answer is in the first two message headers).
const LOOKED_AT: usize = 1 << 10;

/// What a QUIC server connection's handshake says: rustls's data, and whether it resumed.
pub(crate) struct Handshaken {
    pub(crate) data: HandshakeData,
    pub(crate) resumed: bool,
}

/// The QUIC server crypto, with each session's resumption watched.
pub(super) struct Watched(pub(super) Arc<QuicServerConfig>);

impl ServerConfig for Watched {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, UnsupportedVersion> {
        self.0.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.0.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn Session> {
        Box::new(WatchedSession {
            inner: self.0.clone().start_session(version, params),
            key_changes: 0,
            flight: Vec::new(),
            resumed: None,
        })
    }
}

struct WatchedSession {
    inner: Box<dyn Session>,
    /// Key changes the server's writes have gone through: after the first, they are the
    /// Handshake flight.
    key_changes: u8,
    /// The start of the Handshake flight, until the answer is in it.
    flight: Vec<u8>,
    resumed: Option<bool>,
}

impl WatchedSession {
    /// Looks at `written`, the server's latest handshake bytes.
    fn watch(&mut self, written: &[u8]) {
        if self.resumed.is_some() || self.key_changes != 1 {
            return;
        }
        let room = LOOKED_AT.saturating_sub(self.flight.len());
        self.flight
            .extend_from_slice(&written[..written.len().min(room)]);
        self.resumed = next_after_extensions(&self.flight).map(|kind| kind == FINISHED);
        if self.resumed.is_none() && self.flight.len() >= LOOKED_AT {
            self.resumed = Some(false);
        }
        if self.resumed.is_some() {
            self.flight = Vec::new();
        }
    }
}

/// The type of the message after EncryptedExtensions at the start of `flight`, once there.
fn next_after_extensions(flight: &[u8]) -> Option<u8> {
    let (&kind, rest) = flight.split_first()?;
    if kind != ENCRYPTED_EXTENSIONS {
        // Not a TLS 1.3 server's flight as known: counted as full.
        return Some(0);
    }
    let length = rest.get(..3)?;
    let length =
        usize::from(length[0]) << 16 | usize::from(length[1]) << 8 | usize::from(length[2]);
    flight.get(4 + length).copied()
}

impl Session for WatchedSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        self.inner.initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        let data = self
            .inner
            .handshake_data()?
            .downcast::<HandshakeData>()
            .ok()?;
        Some(Box::new(Handshaken {
            data: *data,
            resumed: self.resumed == Some(true),
        }))
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.inner.peer_identity()
    }

    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn PacketKey>)> {
        self.inner.early_crypto()
    }

    fn early_data_accepted(&self) -> Option<bool> {
        self.inner.early_data_accepted()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        self.inner.read_handshake(buf)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        self.inner.transport_parameters()
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        let start = buf.len();
        let keys = self.inner.write_handshake(buf);
        self.watch(&buf[start..]);
        if keys.is_some() {
            self.key_changes = self.key_changes.saturating_add(1);
        }
        keys
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        self.inner.next_1rtt_keys()
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.inner.is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        self.inner.export_keying_material(output, label, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_after_encrypted_extensions_tells() {
        // EncryptedExtensions of 2 bytes, then Certificate (11) or Finished (20).
        assert_eq!(next_after_extensions(&[8, 0, 0, 2, 0, 0, 11, 0]), Some(11));
        assert_eq!(next_after_extensions(&[8, 0, 0, 2, 0, 0, 20, 0]), Some(20));
        // Not there yet.
        assert_eq!(next_after_extensions(&[8, 0, 0, 2, 0]), None);
        assert_eq!(next_after_extensions(&[8, 0]), None);
        assert_eq!(next_after_extensions(&[]), None);
        // Something else first: full.
        assert_eq!(next_after_extensions(&[2, 0, 0, 0]), Some(0));
    }
}
