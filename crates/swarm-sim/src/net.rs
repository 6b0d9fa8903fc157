//! A simulated network: per-node latency and bandwidth, TCP-like in-order
//! delivery, and occasional retransmission delays.
//!
//! Each direction of a connection is a [`Pipe`]. A write is serialised at
//! the link's rate behind earlier writes, then delivered after the one-way
//! latency; with probability `loss` a segment waits an extra retransmission
//! timeout, and (as in TCP) everything behind it waits too. A sender whose
//! bytes are not yet on the wire beyond `SEND_BUFFER` is pushed back, so a
//! peer cannot queue unbounded data, and a CANCEL can still reach requests
//! it has not written yet — as with a real socket buffer.
//!
//! Everything runs on tokio's clock, so on a paused runtime a simulated
//! minute takes milliseconds and runs are reproducible from the seed.

use bt_engine::Transport;
use bt_engine::transport::{Acceptor, BoxFuture, Connection};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

/// Smallest send buffer (Linux's default `tcp_wmem`); links get at least
/// one bandwidth-delay product, as autotuning would give them.
const MIN_SEND_BUFFER: u64 = 16 * 1024;
/// Largest segment accepted per write.
const SEGMENT: usize = 64 * 1024;

/// What one node's side of every link looks like.
#[derive(Clone, Copy, Debug)]
pub struct NodeSpec {
    /// One-way latency this node adds.
    pub latency: Duration,
    /// Upload and download rate of the node's access link, bytes/s.
    pub rate: u64,
    /// Probability that a segment is delayed by a retransmission timeout.
    pub loss: f64,
    pub rto: Duration,
}

impl NodeSpec {
    /// A node that adds nothing: the engine under test, say.
    pub fn ideal() -> NodeSpec {
        NodeSpec {
            latency: Duration::ZERO,
            rate: u64::MAX / 4,
            loss: 0.0,
            rto: Duration::from_millis(200),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct LinkSpec {
    latency: Duration,
    rate: u64,
    loss: f64,
    rto: Duration,
}

fn link(a: &NodeSpec, b: &NodeSpec) -> LinkSpec {
    LinkSpec {
        latency: a.latency + b.latency,
        rate: a.rate.min(b.rate).max(1),
        loss: a.loss.max(b.loss),
        rto: a.rto.max(b.rto),
    }
}

struct PipeState {
    spec: LinkSpec,
    send_buffer: u64,
    /// Delivery time of the latest segment held back by a retransmission
    /// timeout: nothing sent on this pipe arrives before it.
    rto_until: Instant,
    chunks: VecDeque<(Instant, Vec<u8>)>,
    /// When the wire is free for the next segment.
    wire_free: Instant,
    last_delivery: Instant,
    writer_closed: bool,
    reader_gone: bool,
    reader_waker: Option<Waker>,
    rng: StdRng,
}

/// One direction of a connection.
struct Pipe(Mutex<PipeState>);

impl Pipe {
    fn new(spec: LinkSpec, seed: u64) -> Arc<Pipe> {
        let now = Instant::now();
        let bdp = (spec.rate as f64 * 2.0 * spec.latency.as_secs_f64()) as u64;
        Arc::new(Pipe(Mutex::new(PipeState {
            spec,
            send_buffer: bdp.max(MIN_SEND_BUFFER),
            rto_until: now,
            chunks: VecDeque::new(),
            wire_free: now,
            last_delivery: now,
            writer_closed: false,
            reader_gone: false,
            reader_waker: None,
            rng: StdRng::seed_from_u64(seed),
        })))
    }
}

fn transfer_time(bytes: u64, rate: u64) -> Duration {
    Duration::from_nanos(
        (u128::from(bytes) * 1_000_000_000 / u128::from(rate)).min(u128::from(u64::MAX)) as u64,
    )
}

pub struct SimWriter {
    pipe: Arc<Pipe>,
    sleep: Pin<Box<Sleep>>,
}

pub struct SimReader {
    pipe: Arc<Pipe>,
    sleep: Pin<Box<Sleep>>,
}

impl AsyncWrite for SimWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let now = Instant::now();
        let mut st = self.pipe.0.lock();
        if st.reader_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let wire_free = st.wire_free.max(now);
        // Bytes still waiting for the wire, at the link's rate.
        let backlog = (wire_free - now).as_secs_f64() * st.spec.rate as f64;
        let room = st.send_buffer.saturating_sub(backlog as u64) as usize;
        if room == 0 {
            let wake_at = wire_free - transfer_time(st.send_buffer / 2, st.spec.rate);
            drop(st);
            self.sleep.as_mut().reset(wake_at);
            return match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            };
        }
        let n = buf.len().min(room).min(SEGMENT);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        let on_wire = wire_free + transfer_time(n as u64, st.spec.rate);
        st.wire_free = on_wire;
        let mut deliver = on_wire + st.spec.latency;
        let loss = st.spec.loss;
        if loss > 0.0 && st.rng.random_bool(loss.min(1.0)) {
            deliver += st.spec.rto;
            st.rto_until = deliver;
        }
        // In order: nothing overtakes a delayed segment.
        deliver = deliver.max(st.last_delivery);
        st.last_delivery = deliver;
        st.chunks.push_back((deliver, buf[..n].to_vec()));
        if let Some(w) = st.reader_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close();
        Poll::Ready(Ok(()))
    }
}

impl SimWriter {
    fn close(&self) {
        let mut st = self.pipe.0.lock();
        st.writer_closed = true;
        if let Some(w) = st.reader_waker.take() {
            w.wake();
        }
    }
}

impl Drop for SimWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsyncRead for SimReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let now = Instant::now();
        let mut st = self.pipe.0.lock();
        let mut copied = false;
        while buf.remaining() > 0 {
            let Some((at, data)) = st.chunks.front_mut() else {
                break;
            };
            if *at > now {
                break;
            }
            let n = data.len().min(buf.remaining());
            buf.put_slice(&data[..n]);
            copied = true;
            if n == data.len() {
                st.chunks.pop_front();
            } else {
                data.drain(..n);
            }
        }
        if copied {
            return Poll::Ready(Ok(()));
        }
        match st.chunks.front() {
            Some((at, _)) => {
                let at = *at;
                drop(st);
                self.sleep.as_mut().reset(at);
                match self.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            None if st.writer_closed => Poll::Ready(Ok(())),
            None => {
                st.reader_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for SimReader {
    fn drop(&mut self) {
        self.pipe.0.lock().reader_gone = true;
    }
}

struct NetState {
    nodes: HashMap<IpAddr, NodeSpec>,
    /// Pipes by (sender, receiver) node, to read their state for floors.
    pipes: Vec<(IpAddr, IpAddr, std::sync::Weak<Pipe>)>,
    listeners: HashMap<SocketAddr, mpsc::Sender<Connection>>,
    next_port: u16,
    rng: StdRng,
}

/// The simulated network. Cheap to clone; every clone is the same network.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<NetState>>,
}

impl SimNet {
    pub fn new(seed: u64) -> SimNet {
        SimNet {
            state: Arc::new(Mutex::new(NetState {
                nodes: HashMap::new(),
                pipes: Vec::new(),
                listeners: HashMap::new(),
                next_port: 20000,
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    pub fn add_node(&self, ip: IpAddr, spec: NodeSpec) {
        self.state.lock().nodes.insert(ip, spec);
    }

    fn spec(&self, ip: IpAddr) -> NodeSpec {
        self.state
            .lock()
            .nodes
            .get(&ip)
            .copied()
            .unwrap_or_else(NodeSpec::ideal)
    }

    /// A connected pair (client side, server side) between two nodes.
    fn pair(&self, client: SocketAddr, server: SocketAddr) -> (Connection, Connection) {
        let spec = link(&self.spec(client.ip()), &self.spec(server.ip()));
        let (s1, s2) = {
            let mut st = self.state.lock();
            (st.rng.random(), st.rng.random())
        };
        let up = Pipe::new(spec, s1);
        let down = Pipe::new(spec, s2);
        {
            let mut st = self.state.lock();
            st.pipes.retain(|(_, _, w)| w.strong_count() > 0);
            st.pipes
                .push((client.ip(), server.ip(), Arc::downgrade(&up)));
            st.pipes
                .push((server.ip(), client.ip(), Arc::downgrade(&down)));
        }
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let end = |r: &Arc<Pipe>, w: &Arc<Pipe>, remote| Connection {
            reader: Box::new(SimReader {
                pipe: r.clone(),
                sleep: Box::pin(tokio::time::sleep_until(far)),
            }),
            writer: Box::new(SimWriter {
                pipe: w.clone(),
                sleep: Box::pin(tokio::time::sleep_until(far)),
            }),
            remote,
        };
        (end(&down, &up, server), end(&up, &down, client))
    }

    /// Opens a connection as the engine would; usable by simulated peers too.
    pub async fn dial(&self, local: IpAddr, remote: SocketAddr) -> io::Result<Connection> {
        let spec = link(&self.spec(local), &self.spec(remote.ip()));
        // SYN, SYN-ACK: one round trip before the connection is usable.
        tokio::time::sleep(spec.latency * 2).await;
        let (listener, port) = {
            let mut st = self.state.lock();
            st.next_port = st.next_port.wrapping_add(1).max(20000);
            (st.listeners.get(&remote).cloned(), st.next_port)
        };
        let Some(listener) = listener else {
            return Err(io::ErrorKind::ConnectionRefused.into());
        };
        let local = SocketAddr::new(local, port);
        let (client, server) = self.pair(local, remote);
        listener
            .try_send(server)
            .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
        Ok(client)
    }

    pub fn listen(&self, addr: SocketAddr) -> io::Result<SimListener> {
        let (tx, rx) = mpsc::channel(64);
        let mut st = self.state.lock();
        let addr = if addr.port() == 0 {
            st.next_port = st.next_port.wrapping_add(1).max(20000);
            SocketAddr::new(addr.ip(), st.next_port)
        } else {
            addr
        };
        if st.listeners.contains_key(&addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        st.listeners.insert(addr, tx);
        Ok(SimListener { rx, addr })
    }

    /// The earliest time a byte written now from `from` to `to` could
    /// arrive: after what the sender's socket already holds has gone out
    /// plus the latency, and not before a segment held back by a
    /// retransmission timeout (in-order delivery).
    pub fn earliest_arrival(&self, from: IpAddr, to: IpAddr) -> Option<Instant> {
        let now = Instant::now();
        self.state
            .lock()
            .pipes
            .iter()
            .filter(|(f, t, _)| *f == from && *t == to)
            .filter_map(|(_, _, w)| w.upgrade())
            .map(|p| {
                let st = p.0.lock();
                (st.wire_free.max(now) + st.spec.latency).max(st.rto_until)
            })
            .min()
    }

    /// Removes a listener (a peer that left).
    pub fn unlisten(&self, addr: SocketAddr) {
        self.state.lock().listeners.remove(&addr);
    }
}

pub struct SimListener {
    rx: mpsc::Receiver<Connection>,
    addr: SocketAddr,
}

impl SimListener {
    pub async fn accept(&mut self) -> io::Result<Connection> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionAborted))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Acceptor for SimListener {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>> {
        Box::pin(SimListener::accept(self))
    }
}

impl Transport for SimNet {
    fn connect(
        &self,
        local: IpAddr,
        remote: SocketAddr,
    ) -> BoxFuture<'static, io::Result<Connection>> {
        let net = self.clone();
        Box::pin(async move { net.dial(local, remote).await })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>> {
        let r = self.listen(addr).map(|l| Box::new(l) as Box<dyn Acceptor>);
        Box::pin(async move { r })
    }
}
