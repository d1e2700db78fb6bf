//! The simulator's IO shell: one axum listener serving `/ws/chat` (WebSocket) and `/admin`
//! (JSON), and one actor task that owns the sans-IO [`Sim`] and its timer.
//!
//! Connection tasks and admin handlers talk to the actor through a bounded channel; the
//! actor drains the core's outputs to per-connection bounded channels. No protocol logic here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::core::{ConnId, ConnOutput, Sim, SimConfig};

/// How long a closing connection waits for the peer's Close frame (see [`linger`]).
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Capacity of the actor's inbox.
const ACTOR_INBOX: usize = 1024;
/// Capacity of each connection's outbox; a client that cannot keep up is disconnected.
const CONN_OUTBOX: usize = 256;

type Call = Box<dyn FnOnce(&mut Sim, Instant) + Send>;

enum Cmd {
    Open { tx: mpsc::Sender<ConnOutput>, reply: oneshot::Sender<ConnId> },
    Data { conn: ConnId, bytes: Vec<u8> },
    Closed { conn: ConnId },
    Call(Call),
}

/// A handle to the simulator actor, shared by the WebSocket and admin handlers.
#[derive(Clone)]
pub(crate) struct SimHandle {
    tx: mpsc::Sender<Cmd>,
}

/// The actor stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("simulator stopped")]
pub(crate) struct Stopped;

impl SimHandle {
    /// Runs `f` on the simulator inside the actor and returns its result.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Sim, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |sim, now| {
            let _ = tx.send(f(sim, now));
        });
        self.tx.send(Cmd::Call(call)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[expect(clippy::disallowed_methods, reason = "the simulator's wall clock for stanza timestamps")]
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn actor(mut sim: Sim, mut rx: mpsc::Receiver<Cmd>) {
    let mut conns: HashMap<ConnId, mpsc::Sender<ConnOutput>> = HashMap::new();
    loop {
        let deadline = sim.poll_timeout().map(tokio::time::Instant::from_std);
        let cmd = tokio::select! {
            c = rx.recv() => match c { Some(c) => Some(c), None => break },
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => None,
        };
        let t = now();
        match cmd {
            None => sim.handle_timeout(t),
            Some(Cmd::Open { tx, reply }) => {
                let id = sim.open(t);
                conns.insert(id, tx);
                let _ = reply.send(id);
            }
            Some(Cmd::Data { conn, bytes }) => sim.handle_data(t, conn, &bytes),
            Some(Cmd::Closed { conn }) => {
                conns.remove(&conn);
                sim.handle_closed(t, conn);
            }
            Some(Cmd::Call(f)) => f(&mut sim, t),
        }
        while let Some((conn, out)) = sim.poll_output() {
            let Some(tx) = conns.get(&conn) else { continue };
            let is_close = matches!(out, ConnOutput::Close);
            if tx.try_send(out).is_err() || is_close {
                if !is_close {
                    tracing::warn!(conn_id = conn.0, "sim connection outbox full; dropping connection");
                }
                conns.remove(&conn);
                sim.handle_closed(t, conn);
            }
        }
    }
}

async fn ws_handler(State(h): State<SimHandle>, ws: WebSocketUpgrade) -> impl IntoResponse {
    ws.max_message_size(1 << 24).on_upgrade(move |socket| serve_socket(h, socket))
}

async fn serve_socket(h: SimHandle, mut socket: WebSocket) {
    let (tx, mut out_rx) = mpsc::channel(CONN_OUTBOX);
    let (reply, id_rx) = oneshot::channel();
    if h.tx.send(Cmd::Open { tx, reply }).await.is_err() {
        return;
    }
    let Ok(conn) = id_rx.await else { return };
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if h.tx.send(Cmd::Data { conn, bytes: b.to_vec() }).await.is_err() { break; }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {} // text/ping/pong: ignored, like whatsmeow ignores non-binary
            },
            out = out_rx.recv() => match out {
                Some(ConnOutput::Send(bytes)) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() { break; }
                }
                Some(ConnOutput::Close) | None => {
                    let _ = socket.send(Message::Close(None)).await;
                    linger(&mut socket).await;
                    return finish(&h, conn).await;
                }
            },
        }
    }
    finish(&h, conn).await;
}

/// A graceful close, like a real server's: after our Close frame, keep reading (and discarding)
/// until the peer answers with its Close or `CLOSE_LINGER` passes. Dropping the TCP socket at once
/// while the peer's last frames are still unread makes the kernel answer with a reset, and a reset
/// can discard the frames we sent just before it (the stream error, the 515) from the peer's
/// receive buffer: the client then saw a bare close (428) instead of the reason.
async fn linger(socket: &mut WebSocket) {
    let drain = async {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}

async fn finish(h: &SimHandle, conn: ConnId) {
    let _ = h.tx.send(Cmd::Closed { conn }).await;
}

/// A running simulator: WebSocket endpoint + admin API on one port.
pub struct Server {
    addr: SocketAddr,
    root_public_key: [u8; 32],
    handle: SimHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Server {
    /// Binds `config.listen` (use port 0 for any free port) and starts serving.
    ///
    /// # Errors
    /// [`StartError::Bind`] when the address cannot be bound.
    pub async fn start(config: SimConfig) -> Result<Self, StartError> {
        let addr = config.listen;
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        let sim = Sim::new(config, now(), unix_now());
        let root_public_key = sim.root_public_key();
        let (tx, rx) = mpsc::channel(ACTOR_INBOX);
        let handle = SimHandle { tx };
        let actor_task = tokio::spawn(actor(sim, rx));
        let app = Router::new()
            .route("/ws/chat", get(ws_handler))
            .nest("/admin", super::admin::router())
            .with_state(handle.clone());
        let (stx, srx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = srx.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "simulator server failed");
            }
            actor_task.abort();
        });
        tracing::info!(addr = %local, "simulator listening");
        Ok(Self { addr: local, root_public_key, handle, shutdown: Some(stx), task })
    }

    /// `ws://ADDR/ws/chat`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// `http://ADDR/admin`.
    pub fn admin_url(&self) -> String {
        format!("http://{}/admin", self.addr)
    }

    /// The socket address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The root public key a client must trust to verify this simulator's certificate chain.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.root_public_key
    }

    /// The one JSON line `staylinked sim` prints when ready.
    pub fn ready_line(&self) -> String {
        serde_json::json!({
            "ws_url": self.ws_url(),
            "admin_url": self.admin_url(),
            "root_public_key": hex32(&self.root_public_key),
        })
        .to_string()
    }

    /// Runs `f` on the simulator state (for in-process tests that bypass HTTP).
    ///
    /// # Errors
    /// [`Stopped`] when the simulator has shut down.
    pub async fn with_sim<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Sim, Instant) -> R + Send + 'static,
    ) -> Result<R, SimStopped> {
        self.handle.call(f).await.map_err(|_| SimStopped)
    }

    /// Stops accepting, closes connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// The simulator has shut down.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("simulator stopped")]
pub struct SimStopped;

/// Lowercase hex of 32 bytes.
pub(crate) fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
