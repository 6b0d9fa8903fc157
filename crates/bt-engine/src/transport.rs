//! How peer connections are made.
//!
//! TCP in production; the simulated network of the test harness
//! (`swarm-sim`) implements the same trait, and µTP will be the next real
//! one. A connection arrives already split into its two halves, so the
//! connection task can read and write at once without a lock.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};

pub type PeerReader = Box<dyn AsyncRead + Send + Unpin>;
pub type PeerWriter = Box<dyn AsyncWrite + Send + Unpin>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub struct Connection {
    pub reader: PeerReader,
    pub writer: PeerWriter,
    pub remote: SocketAddr,
}

pub trait Transport: Send + Sync + 'static {
    /// Opens a connection from `local` (unspecified: any) to `remote`.
    fn connect(
        &self,
        local: IpAddr,
        remote: SocketAddr,
    ) -> BoxFuture<'static, io::Result<Connection>>;
    /// Listens for incoming connections on `addr` (port 0: any free one).
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>>;
}

pub trait Acceptor: Send {
    fn local_addr(&self) -> SocketAddr;
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>>;
}

/// Plain TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tcp;

fn tcp_connection(stream: tokio::net::TcpStream, remote: SocketAddr) -> Connection {
    // Requests and HAVEs are small and latency-sensitive.
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    Connection {
        reader: Box::new(r),
        writer: Box::new(w),
        remote,
    }
}

impl Transport for Tcp {
    fn connect(
        &self,
        local: IpAddr,
        remote: SocketAddr,
    ) -> BoxFuture<'static, io::Result<Connection>> {
        Box::pin(async move {
            let socket = match remote.ip() {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            if !local.is_unspecified() && local.is_ipv4() == remote.is_ipv4() {
                socket.bind(SocketAddr::new(local, 0))?;
            }
            let stream = socket.connect(remote).await?;
            Ok(tcp_connection(stream, remote))
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>> {
        Box::pin(async move {
            let listener = TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            Ok(Box::new(TcpAcceptor { listener, local }) as Box<dyn Acceptor>)
        })
    }
}

struct TcpAcceptor {
    listener: TcpListener,
    local: SocketAddr,
}

impl Acceptor for TcpAcceptor {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>> {
        Box::pin(async move {
            let (stream, remote) = self.listener.accept().await?;
            Ok(tcp_connection(stream, remote))
        })
    }
}
