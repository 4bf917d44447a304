//! Whether a request may go on now: its client's rate for the site (429 when over), then a
//! slot of its site and of its upstream (waiting in their bounded queues when all are taken,
//! 503 when full). Shared by every edge thread, so that the bounds are the process's.

use crate::proxy::connection::per_ip::client_key;
use crate::proxy::connection::shed::{Reason, Shed};
use crate::proxy::phases::answer::Own;
use crate::proxy::phases::gate::{Bounds, Gates, Pass};
use crate::proxy::phases::rate::Rates;
use crate::proxy::upstream::held::Slots;
use crate::served::snapshot::SiteEntry;
use porter_store::Target;
use std::net::IpAddr;
use std::sync::Arc;

/// The request bounds of the edge.
pub(crate) struct Admission {
    sites: Gates<Arc<str>>,
    upstreams: Gates<Target>,
    rates: Rates<(Arc<str>, IpAddr)>,
    shed: Arc<Shed>,
}

impl Admission {
    /// `site` and `upstream` concurrency bounds, and `rate` (a second) and `burst` per client
    /// and site.
    pub(crate) fn new(
        site: Bounds,
        upstream: Bounds,
        (rate, burst): (u32, u32),
        shed: Arc<Shed>,
    ) -> Self {
        Admission {
            sites: Gates::new(site),
            upstreams: Gates::new(upstream),
            rates: Rates::new(rate, burst),
            shed,
        }
    }

    /// Whether `client` is within its request rate for `site` (429 with the wait when not).
    pub(crate) fn within_rate(&self, site: &SiteEntry, client: IpAddr) -> Result<(), Own> {
        self.rates
            .take((Arc::clone(&site.domain), client_key(client)))
            .map_err(|wait| {
                self.shed.note(Reason::ClientRate);
                Own::TooMany(wait)
            })
    }

    /// A slot of `site` and one of its upstream, held until the response is done (waiting in
    /// their queues when all are taken, 503 when those are full).
    pub(crate) async fn slots(&self, site: &SiteEntry) -> Result<Slots, Own> {
        let site_slot = self.slot(self.sites.try_enter(&site.domain)).await?;
        let upstream_slot = self.slot(self.upstreams.try_enter(&site.target)).await?;
        Ok((site_slot, upstream_slot))
    }

    async fn slot(
        &self,
        entered: Result<Option<Pass>, crate::proxy::phases::gate::Queue>,
    ) -> Result<Option<Pass>, Own> {
        match entered {
            Ok(pass) => Ok(pass),
            // Boxed: waiting is rare, and every request's future would carry its size.
            Err(queue) => match Box::pin(queue.wait()).await {
                Ok(pass) => Ok(Some(pass)),
                Err(_) => {
                    self.shed.note(Reason::Queue);
                    Err(Own::Busy)
                }
            },
        }
    }
}
