//! Reading every certificate a page at a time: the planners look at each once and keep little
//! of it, and holding 100,000 certificates at once would cost hundreds of megabytes that the
//! allocator then keeps.

use porter_store::{CertRecord, DomainName, Store, StoreError};

/// Certificates read per page.
const PAGE: usize = 256;

/// Calls `each` with every certificate, ordered by domain, yielding to the runtime between
/// pages so that the handshakes sharing it go on.
pub(crate) async fn for_each_cert(
    store: &dyn Store,
    mut each: impl FnMut(CertRecord),
) -> Result<(), StoreError> {
    let mut after: Option<DomainName> = None;
    loop {
        let page = store.certs_after(after.as_ref(), PAGE).await?;
        let more = page.len() == PAGE;
        after = page.last().map(|c| c.domain.clone());
        page.into_iter().for_each(&mut each);
        if !more {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}
