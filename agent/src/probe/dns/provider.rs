//! hickory's sockets, born inside the probe source's network namespace (NOTES.md trap 1:
//! stock hickory opens its sockets wherever its task runs, i.e. in the agent's namespace).
//!
//! [`NsProvider`] is hickory's `RuntimeProvider`: its `bind_udp` and `connect_tcp` order each
//! socket from [`serve`], which makes it on the thread parked in the source's namespace
//! ([`SourceNs::run`]) while the probe runs. A channel stands between them because hickory
//! wants a `'static` provider and the probe only borrows its `SourceNs`.
//!
//! Every socket goes through a [`SocketLog`]: made (with its `SO_NETNS_COOKIE`, the proof of
//! the namespace it lives in), failed (errno), received (the server spoke). UDP sockets are
//! *connected* to their nameserver, unlike stock hickory's, so an ICMP port unreachable comes
//! back as ECONNREFUSED instead of silence (watched for explicitly: tokio wakes readers on
//! EPOLLIN only), and only that server's datagrams are accepted.
//! hickory folds such errors into `NoConnections`; the log keeps what really happened.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hickory_resolver::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_resolver::net::runtime::{DnsUdpSocket, RuntimeProvider, TokioHandle, TokioTime};
use netdiag_model::dns::DnsTransport;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::{Failure, chain};
use crate::source::SourceNs;

/// Events one probe may log; a runaway resolver cannot grow the log beyond this.
const MAX_EVENTS: usize = 4096;
/// hickory's own default when it gives no connect timeout.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A socket a DNS probe made: whom it talked to, over what, and in which namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedSocket {
    pub server: SocketAddr,
    pub transport: DnsTransport,
    /// The kernel's cookie for the socket's network namespace (`SO_NETNS_COOKIE`); None if
    /// the kernel could not say (before Linux 5.14).
    pub netns_cookie: Option<u64>,
}

/// What happened to one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum What {
    Made {
        netns_cookie: Option<u64>,
    },
    /// The source's namespace could not make it: `gone` when its worker has stopped.
    NotMade {
        gone: bool,
        error: String,
    },
    Failed {
        errno: Option<i32>,
        error: String,
    },
    Received,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    pub(super) server: SocketAddr,
    pub(super) transport: DnsTransport,
    pub(super) what: What,
}

/// The socket events of one probe, in order.
#[derive(Debug, Clone, Default)]
pub(super) struct SocketLog(Arc<Mutex<Vec<Event>>>);

impl SocketLog {
    fn push(&self, server: SocketAddr, transport: DnsTransport, what: What) {
        let mut events = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() < MAX_EVENTS {
            events.push(Event { server, transport, what });
        }
    }

    pub(super) fn failed(&self, server: SocketAddr, transport: DnsTransport, e: &io::Error) {
        debug!(%server, %transport, error = %e, "DNS socket error");
        self.push(server, transport, What::Failed { errno: e.raw_os_error(), error: e.to_string() });
    }

    pub(super) fn received(&self, server: SocketAddr, transport: DnsTransport) {
        self.push(server, transport, What::Received);
    }

    /// A position to read later events from.
    pub(super) fn mark(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub(super) fn since(&self, mark: usize) -> Vec<Event> {
        let events = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        events.get(mark..).map(<[Event]>::to_vec).unwrap_or_default()
    }

    /// Every socket made, in order.
    pub(super) fn sockets(&self) -> Vec<TracedSocket> {
        self.since(0)
            .into_iter()
            .filter_map(|e| match e.what {
                What::Made { netns_cookie } => {
                    Some(TracedSocket { server: e.server, transport: e.transport, netns_cookie })
                }
                _ => None,
            })
            .collect()
    }
}

fn domain_of(ip: IpAddr) -> Domain {
    if ip.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 }
}

/// A socket for talking to `server`, made on the thread parked in `src`'s namespace (without
/// blocking the runtime: the worker may be busy with another probe's job), and logged.
pub(super) async fn make_socket(
    src: &SourceNs,
    log: &SocketLog,
    server: SocketAddr,
    transport: DnsTransport,
) -> Result<Socket, Failure> {
    let (ty, protocol) = match transport {
        DnsTransport::Udp => (Type::DGRAM, Protocol::UDP),
        DnsTransport::Tcp => (Type::STREAM, Protocol::TCP),
    };
    let domain = domain_of(server.ip());
    match src.run(move || Socket::new(domain, ty, Some(protocol))).await {
        Err(gone) => {
            let error = chain(&gone);
            log.push(server, transport, What::NotMade { gone: true, error: error.clone() });
            Err(Failure::Gone(error))
        }
        Ok(Err(e)) => {
            let error = format!("cannot create a {transport} socket in the source's namespace: {e}");
            log.push(server, transport, What::NotMade { gone: false, error: error.clone() });
            Err(Failure::Local(error))
        }
        Ok(Ok(socket)) => {
            let netns_cookie = netdiag_netns::socket_netns_cookie(&socket).ok();
            debug!(%server, %transport, ?netns_cookie, "DNS socket made in the source's namespace");
            log.push(server, transport, What::Made { netns_cookie });
            Ok(socket)
        }
    }
}

/// A socket order from the provider to [`serve`].
#[derive(Debug)]
pub(super) struct Order {
    server: SocketAddr,
    transport: DnsTransport,
    reply: oneshot::Sender<io::Result<Socket>>,
}

/// The receiving end of a provider's socket orders.
#[derive(Debug)]
pub(super) struct Orders(mpsc::UnboundedReceiver<Order>);

/// Makes every socket the provider orders, until every provider clone is gone. Run it
/// alongside the resolver's work (it borrows `src`, which the provider cannot).
pub(super) async fn serve(src: &SourceNs, log: &SocketLog, mut orders: Orders) {
    while let Some(order) = orders.0.recv().await {
        // The log keeps why a socket could not be made; hickory only needs an io::Error.
        let made = make_socket(src, log, order.server, order.transport).await.map_err(|f| match f {
            Failure::Gone(why) | Failure::Local(why) => io::Error::other(why),
        });
        // The resolver may have given up on this socket meanwhile; nothing to do then.
        let _ = order.reply.send(made);
    }
}

/// hickory's `RuntimeProvider` whose sockets live in the probe source's namespace.
#[derive(Clone)]
pub(super) struct NsProvider {
    orders: mpsc::UnboundedSender<Order>,
    log: SocketLog,
    handle: TokioHandle,
    /// Scope ids of link-local IPv6 nameservers (`fe80::1%eth0`), which hickory cannot carry.
    scopes: Arc<HashMap<IpAddr, u32>>,
}

impl std::fmt::Debug for NsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsProvider").field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

impl NsProvider {
    pub(super) fn new(log: SocketLog, scopes: HashMap<IpAddr, u32>) -> (Self, Orders) {
        let (tx, rx) = mpsc::unbounded_channel();
        let provider = Self { orders: tx, log, handle: TokioHandle::default(), scopes: Arc::new(scopes) };
        (provider, Orders(rx))
    }

    async fn order(&self, server: SocketAddr, transport: DnsTransport) -> io::Result<Socket> {
        let (reply, made) = oneshot::channel();
        self.orders
            .send(Order { server, transport, reply })
            .map_err(|_| io::Error::other("the DNS probe has ended; no more sockets"))?;
        made.await.map_err(|_| io::Error::other("the DNS probe has ended; no more sockets"))?
    }

    /// Where to send: the server with its IPv6 scope, if it has one.
    fn peer(&self, server: SocketAddr) -> SocketAddr {
        match (server, self.scopes.get(&server.ip())) {
            (SocketAddr::V6(v6), Some(scope)) => SocketAddrV6::new(*v6.ip(), v6.port(), 0, *scope).into(),
            _ => server,
        }
    }

    async fn udp(self, local: SocketAddr, server: SocketAddr) -> io::Result<NsUdp> {
        let socket = self.order(server, DnsTransport::Udp).await?;
        let peer = self.peer(server);
        let prepared = socket
            .set_nonblocking(true)
            .and_then(|()| socket.bind(&local.into()))
            .and_then(|()| socket.connect(&peer.into()));
        if let Err(e) = prepared {
            // EADDRINUSE makes hickory try another random port; anything else is the server's
            // route (ENETUNREACH) or ours.
            self.log.failed(server, DnsTransport::Udp, &e);
            return Err(e);
        }
        let socket = UdpSocket::from_std(socket.into())?;
        Ok(NsUdp::new(socket, server, self.log))
    }

    async fn tcp(
        self,
        server: SocketAddr,
        bind: Option<SocketAddr>,
        wait: Option<Duration>,
    ) -> io::Result<AsyncIoTokioAsStd<NsTcp>> {
        let socket = self.order(server, DnsTransport::Tcp).await?;
        // SO_LINGER 0: closing sends RST, so probes leave no conntrack entries behind.
        let prepared = socket.set_nonblocking(true).and_then(|()| socket.set_linger(Some(Duration::ZERO)));
        let prepared = match bind {
            Some(b) => prepared.and_then(|()| socket.bind(&b.into())),
            None => prepared,
        };
        if let Err(e) = prepared {
            self.log.failed(server, DnsTransport::Tcp, &e);
            return Err(e);
        }
        let tcp = TcpSocket::from_std_stream(socket.into());
        let _ = tcp.set_nodelay(true);
        match tokio::time::timeout(wait.unwrap_or(TCP_CONNECT_TIMEOUT), tcp.connect(self.peer(server))).await
        {
            Ok(Ok(stream)) => Ok(AsyncIoTokioAsStd(NsTcp { stream, server, log: self.log })),
            Ok(Err(e)) => {
                self.log.failed(server, DnsTransport::Tcp, &e);
                Err(e)
            }
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TCP connect to the nameserver timed out")),
        }
    }
}

type Boxed<T> = Pin<Box<dyn Send + Future<Output = io::Result<T>>>>;

impl RuntimeProvider for NsProvider {
    type Handle = TokioHandle;
    type Timer = TokioTime;
    type Udp = NsUdp;
    type Tcp = AsyncIoTokioAsStd<NsTcp>;

    fn create_handle(&self) -> Self::Handle {
        self.handle.clone()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Boxed<Self::Tcp> {
        Box::pin(self.clone().tcp(server_addr, bind_addr, timeout))
    }

    fn bind_udp(&self, local_addr: SocketAddr, server_addr: SocketAddr) -> Boxed<Self::Udp> {
        Box::pin(self.clone().udp(local_addr, server_addr))
    }
}

type ErrorWatch = Pin<Box<dyn Future<Output = io::Result<Ready>> + Send>>;

/// A UDP socket connected to one nameserver, logging what it hears.
pub(super) struct NsUdp {
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    log: SocketLog,
    /// Waits for EPOLLERR. tokio wakes readers only for EPOLLIN, and an ICMP port unreachable
    /// on a connected socket raises EPOLLERR alone: without this watch the receiver would
    /// sleep until its timeout and a refusing server would read as a silent one.
    error_watch: Mutex<Option<ErrorWatch>>,
}

impl std::fmt::Debug for NsUdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsUdp")
            .field("socket", &self.socket)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl NsUdp {
    fn new(socket: UdpSocket, server: SocketAddr, log: SocketLog) -> Self {
        Self { socket: Arc::new(socket), server, log, error_watch: Mutex::new(None) }
    }

    /// The socket's pending error (ECONNREFUSED after an ICMP port unreachable, …), once
    /// EPOLLERR was seen; otherwise registers `cx` to be woken by the next one.
    fn poll_error(&self, cx: &mut Context<'_>) -> Option<io::Error> {
        let mut slot = self.error_watch.lock().unwrap_or_else(PoisonError::into_inner);
        let socket = Arc::clone(&self.socket);
        let watch = slot.get_or_insert_with(|| Box::pin(async move { socket.ready(Interest::ERROR).await }));
        match watch.as_mut().poll(cx) {
            Poll::Pending => None,
            Poll::Ready(_) => {
                // tokio keeps the error readiness set; a fresh watch would fire at once. The
                // error itself (SO_ERROR) is what counts, and reading it clears it.
                *slot = None;
                match self.socket.take_error() {
                    Ok(error) => error,
                    Err(e) => Some(e),
                }
            }
        }
    }
}

impl DnsUdpSocket for NsUdp {
    type Time = TokioTime;

    fn poll_recv_from(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut read = ReadBuf::new(buf);
        match self.socket.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(from)) => {
                self.log.received(self.server, DnsTransport::Udp);
                Poll::Ready(Ok((read.filled().len(), from)))
            }
            Poll::Ready(Err(e)) => {
                self.log.failed(self.server, DnsTransport::Udp, &e);
                Poll::Ready(Err(e))
            }
            Poll::Pending => match self.poll_error(cx) {
                Some(e) => {
                    self.log.failed(self.server, DnsTransport::Udp, &e);
                    Poll::Ready(Err(e))
                }
                None => Poll::Pending,
            },
        }
    }

    fn poll_send_to(&self, cx: &mut Context<'_>, buf: &[u8], target: SocketAddr) -> Poll<io::Result<usize>> {
        // The socket is connected (with the IPv6 scope hickory cannot express): send there.
        let to_server = target.ip() == self.server.ip() && target.port() == self.server.port();
        let sent = if to_server {
            self.socket.poll_send(cx, buf)
        } else {
            self.socket.poll_send_to(cx, buf, target)
        };
        if let Poll::Ready(Err(e)) = &sent {
            self.log.failed(self.server, DnsTransport::Udp, e);
        }
        sent
    }
}

/// A TCP connection to one nameserver, logging what it hears; closes with RST.
#[derive(Debug)]
pub(super) struct NsTcp {
    stream: TcpStream,
    server: SocketAddr,
    log: SocketLog,
}

impl AsyncRead for NsTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        match &read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.log.received(this.server, DnsTransport::Tcp);
            }
            Poll::Ready(Err(e)) => this.log.failed(this.server, DnsTransport::Tcp, e),
            _ => {}
        }
        read
    }
}

impl AsyncWrite for NsTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Err(e)) = &written {
            this.log.failed(this.server, DnsTransport::Tcp, e);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
