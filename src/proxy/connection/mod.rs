//! What a connection meets before any request: the accept loops and edge threads, the bounds
//! on connections (per client, handshakes, the memory ceiling, shedding), the PROXY protocol
//! header, the deadline for a first request and the bound on HTTP/1 request chunk sizes. It
//! hands each request to `crate::proxy::request`.

pub(super) mod ceiling;
pub(super) mod chunk_size;
pub(super) mod first_request;
pub(super) mod listener;
pub(super) mod per_ip;
pub(super) mod proxy_protocol;
pub(super) mod shed;
pub(super) mod status_line;
pub(super) mod threads;
