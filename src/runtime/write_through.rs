//! The write side of an I/O wrapper that only looks at what is read (the first request's
//! deadline, the chunk-size bound, the TLS first flight): every write goes to its pinned
//! `inner` as it is, vectored writes included.

/// `impl AsyncWrite` for a `pin_project!` wrapper over `IO` whose field `inner` is pinned:
/// `write_through!(impl[IO, R] FirstRequest<IO, R>);`
macro_rules! write_through {
    (impl[$($generic:ident),*] $wrapper:ty) => {
        impl<$($generic),*> tokio::io::AsyncWrite for $wrapper
        where
            IO: tokio::io::AsyncWrite,
        {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.project().inner.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.project().inner.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.project().inner.poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.project().inner.poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use write_through;
