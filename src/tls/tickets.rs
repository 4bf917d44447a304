//! TLS session tickets (TLS 1.3 and 1.2) under keys kept in the store: a restarted edge, and
//! every edge sharing the store, resumes sessions any of them started. The newest key encrypts;
//! it and the one before decrypt, so a ticket lives between one and two rotation periods. Keys
//! are AES-256-GCM (ring), never logged.
//!
//! Ticket layout: key id (4 bytes) | nonce (12) | ciphertext | tag (16); the first 16 bytes are
//! authenticated as associated data.

use crate::runtime::service::{follow, Follower};
use arc_swap::ArcSwap;
use porter_store::unix_now;
use porter_store::{Change, SecretBytes, Store, StoreError, TicketKey, TicketKeys};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const HEADER: usize = 4 + NONCE_LEN;
/// Keys kept: the current one and the one before.
const KEPT: usize = 2;
/// Seconds to wait before trying again when the store failed to read or rotate the keys.
const RETRY_SECS: i64 = 5;

struct LoadedKey {
    id: u32,
    key: LessSafeKey,
}

/// The ticket keys in use, swapped whole when the store's change.
pub(crate) struct Keyring {
    keys: ArcSwap<Vec<LoadedKey>>,
    /// How long clients may keep a ticket (the rotation period).
    lifetime: u32,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys, <redacted>)", self.keys.load().len())
    }
}

fn load(keys: &TicketKeys) -> Vec<LoadedKey> {
    keys.keys
        .iter()
        .filter_map(|k| {
            let unbound = UnboundKey::new(&AES_256_GCM, k.secret.expose()).ok()?;
            Some(LoadedKey {
                id: k.id,
                key: LessSafeKey::new(unbound),
            })
        })
        .collect()
}

impl ProducesTickets for Keyring {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        let current = keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(HEADER + plain.len() + AES_256_GCM.tag_len());
        ticket.extend_from_slice(&current.id.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let (header, body) = ticket.split_at_mut(HEADER);
        let tag = current
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&*header),
                body,
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < HEADER + AES_256_GCM.tag_len() {
            return None;
        }
        let id = u32::from_be_bytes(ticket[..4].try_into().ok()?);
        let keys = self.keys.load();
        let key = keys.iter().find(|k| k.id == id)?;
        let nonce = Nonce::try_assume_unique_for_key(&ticket[4..HEADER]).ok()?;
        let mut body = ticket[HEADER..].to_vec();
        let plain_len = key
            .key
            .open_in_place(nonce, Aad::from(&ticket[..HEADER]), &mut body)
            .ok()?
            .len();
        body.truncate(plain_len);
        Some(body)
    }
}

/// A new key in front, the older ones after, `KEPT` in all.
fn rotated(old: Option<TicketKeys>, rng: &SystemRandom) -> Option<TicketKeys> {
    let mut secret = vec![0u8; 32];
    rng.fill(&mut secret).ok()?;
    let mut id = [0u8; 4];
    rng.fill(&mut id).ok()?;
    let mut keys = vec![TicketKey {
        id: u32::from_be_bytes(id),
        secret: SecretBytes::new(secret),
        created_at: unix_now(),
    }];
    keys.extend(old.unwrap_or_default().keys.into_iter().take(KEPT - 1));
    Some(TicketKeys { keys })
}

/// Why the ticket keys could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No random bytes for a new key.
    #[error("the system RNG failed")]
    Rng,
}

/// When the newest key is due for replacement.
fn due(keys: Option<&TicketKeys>, period: Duration) -> i64 {
    keys.and_then(|k| k.keys.first())
        .map_or(i64::MIN, |k| k.created_at + period.as_secs() as i64)
}

/// Rotates the keys in the store when they are due, and returns what is current; `None` when
/// they are due and another node of the fleet is rotating them (its keys arrive as a change).
async fn rotate_if_due(
    store: &dyn Store,
    period: Duration,
    rng: &SystemRandom,
) -> Result<Option<TicketKeys>, KeysError> {
    let keys = store.ticket_keys().await?;
    if due(keys.as_ref(), period) > unix_now() {
        return Ok(Some(keys.unwrap_or_default()));
    }
    // One node rotates: keys made by two at once would leave one node's tickets unreadable.
    let Some(_rotating) = store.try_lock("ticket-keys").await? else {
        return Ok(None);
    };
    // Read again under the lock: the node that held it may have just rotated.
    let keys = store.ticket_keys().await?;
    if due(keys.as_ref(), period) > unix_now() {
        return Ok(Some(keys.unwrap_or_default()));
    }
    let fresh = rotated(keys, rng).ok_or(KeysError::Rng)?;
    store.put_ticket_keys(fresh.clone()).await?;
    tracing::info!(keys = fresh.keys.len(), "TLS ticket keys rotated");
    Ok(Some(fresh))
}

impl Keyring {
    /// The keyring from the store, rotated first when due (so a start never serves stale keys).
    /// Fails only when the system RNG does.
    pub(crate) async fn open(store: &dyn Store, period: Duration) -> Result<Arc<Self>, KeysError> {
        let rng = SystemRandom::new();
        let keys = match rotate_if_due(store, period, &rng).await {
            Ok(Some(keys)) => keys,
            // Another node is making the first keys: this one's serve until they arrive.
            Ok(None) => rotated(None, &rng).ok_or(KeysError::Rng)?,
            // A store that does not answer must not keep the edge from starting: keys of this
            // process alone serve until `run` reads or rotates the stored ones.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the TLS ticket keys; using keys of this process until the store answers");
                rotated(None, &rng).ok_or(KeysError::Rng)?
            }
        };
        Ok(Arc::new(Keyring {
            keys: ArcSwap::from_pointee(load(&keys)),
            lifetime: period.as_secs().min(u64::from(u32::MAX)) as u32,
            rng,
        }))
    }

    /// Rotates on schedule and follows the store's keys (written by any edge) until `shutdown`.
    pub(crate) async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        period: Duration,
        shutdown: CancellationToken,
    ) {
        let following = Following {
            keyring: &self,
            store: store.as_ref(),
        };
        tokio::join!(
            follow(&following, store.subscribe(), &shutdown),
            self.rotate(store.as_ref(), period, &shutdown),
        );
    }

    /// Rotates the keys in the store each time they are due, until `shutdown`.
    async fn rotate(&self, store: &dyn Store, period: Duration, shutdown: &CancellationToken) {
        // Set while another node rotates: look again a little later, not in a loop.
        let mut not_before = i64::MIN;
        loop {
            let next = match store.ticket_keys().await {
                Ok(keys) => due(keys.as_ref(), period).max(not_before),
                Err(_) => unix_now() + RETRY_SECS,
            };
            let wait = Duration::from_secs((next - unix_now()).max(0) as u64);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match rotate_if_due(store, period, &self.rng).await {
                Ok(Some(keys)) => self.keys.store(Arc::new(load(&keys))),
                Ok(None) => not_before = unix_now() + 1,
                Err(e) => {
                    tracing::error!(error = %e, "cannot rotate TLS ticket keys; retrying");
                    not_before = unix_now() + RETRY_SECS;
                }
            }
        }
    }
}

/// Keeps a keyring what the store holds (keys rotated by any node).
struct Following<'a> {
    keyring: &'a Keyring,
    store: &'a dyn Store,
}

impl Follower for Following<'_> {
    const NAME: &'static str = "ticket keys";

    fn cares(&self, change: &Change) -> bool {
        matches!(change, Change::TicketKeys)
    }

    async fn reload(&self) -> Result<(), StoreError> {
        // None stored yet: the keys in use stay until the first rotation stores them.
        if let Some(keys) = self.store.ticket_keys().await? {
            self.keyring.keys.store(Arc::new(load(&keys)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(keys: &TicketKeys) -> Keyring {
        Keyring {
            keys: ArcSwap::from_pointee(load(keys)),
            lifetime: 60,
            rng: SystemRandom::new(),
        }
    }

    #[test]
    fn tickets_survive_one_rotation_and_not_two() {
        let rng = SystemRandom::new();
        let first = rotated(None, &rng).unwrap();
        let ticket = ring_of(&first).encrypt(b"session state").unwrap();
        assert_eq!(ring_of(&first).decrypt(&ticket).unwrap(), b"session state");

        let second = rotated(Some(first), &rng).unwrap();
        assert_eq!(second.keys.len(), 2);
        assert_eq!(
            ring_of(&second).decrypt(&ticket).unwrap(),
            b"session state",
            "previous key still decrypts"
        );

        let third = rotated(Some(second), &rng).unwrap();
        assert!(
            ring_of(&third).decrypt(&ticket).is_none(),
            "a ticket two rotations old is refused"
        );
    }

    #[test]
    fn tampered_or_short_tickets_are_refused() {
        let keys = rotated(None, &SystemRandom::new()).unwrap();
        let ring = ring_of(&keys);
        let mut ticket = ring.encrypt(b"state").unwrap();
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert!(ring.decrypt(&ticket).is_none());
        assert!(ring.decrypt(&[0u8; 10]).is_none());
        assert!(!format!("{ring:?}").contains("secret"));
    }
}
