//! The thin tokio/tokio-tungstenite driver of [`crate::wa::client::Client`]: dials the
//! WebSocket, feeds bytes and deadlines to the sans-IO core and applies its outputs strictly in
//! order (each `Persist` is awaited before anything after it), reconnecting at once after 515.
//!
//! Lives outside `wa/` because `wa/` must not use tokio. No protocol logic and no reconnect
//! policy beyond 515 here (backoff belongs to `host::policy`).

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::wa::client::{Client, Delta, DisconnectReason, Event, Output};

/// How long dialing the WebSocket may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(20);
/// Initial read buffer of each WebSocket. WhatsApp frames are small (keepalives, receipts and
/// most messages fit in a few hundred bytes); the buffer grows for a larger frame. tungstenite's
/// default (128 KiB, zero-filled on the first read) cost ~130 KiB RSS per idle tenant
/// (`staylinked bench scale`: 181 KiB per tenant before, see README "Performance").
pub const WS_READ_BUFFER: usize = 4 * 1024;

/// The WebSocket settings of every connection to WhatsApp: a small read buffer
/// ([`WS_READ_BUFFER`]) and no write buffering (each frame is written at once; the sans-IO core
/// already sends whole frames), instead of tungstenite's 128 KiB + 128 KiB per socket.
pub fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
}
/// `Origin` header sent by WA Web clients.
const ORIGIN: &str = "https://web.whatsapp.com";
/// Upper bound on back-to-back 515 restarts in one [`run`] call (a server looping on 515
/// must not spin us forever).
const MAX_RESTARTS: usize = 5;

/// Makes a delta durable. The driver awaits it before acting on any later output.
pub trait Persister: Send {
    /// Commits `delta`.
    ///
    /// # Errors
    /// Any storage failure; the driver then closes the connection without sending what
    /// depended on the delta.
    fn persist(&mut self, delta: &Delta) -> impl Future<Output = Result<(), PersistError>> + Send;
}

/// A store refused a delta.
#[derive(Debug, Clone, thiserror::Error)]
#[error("persisting a delta failed: {0}")]
pub struct PersistError(pub String);

/// Commands the application can send to a running connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Unlink this device (`remove-companion-device`).
    Logout,
    /// Close the connection.
    Disconnect,
    /// Request a pair code for this phone number (digits); the code arrives as
    /// [`Event::PairCode`].
    RequestPairCode(String),
}

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The WebSocket could not be opened (or the upgrade was refused).
    #[error("cannot open websocket to {url}")]
    Dial {
        /// The URL dialed.
        url: String,
        /// The underlying error.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// Dialing took longer than [`DIAL_TIMEOUT`].
    #[error("websocket dial timed out")]
    DialTimeout,
    /// A delta could not be persisted; the connection was closed.
    #[error("persist failed; connection closed")]
    Persist(#[source] PersistError),
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs one connection to completion and returns why it ended.
///
/// # Errors
/// [`DriverError`] for dial failures and persistence failures.
pub async fn run_once<P: Persister>(
    client: &mut Client,
    persister: &mut P,
    events: &mpsc::Sender<Event>,
    commands: &mut mpsc::Receiver<Command>,
) -> Result<DisconnectReason, DriverError> {
    let url = client.config().url.clone();
    let dial_err = |e| DriverError::Dial { url: url.clone(), source: Box::new(e) };
    let mut req = url.as_str().into_client_request().map_err(dial_err)?;
    req.headers_mut().insert("Origin", HeaderValue::from_static(ORIGIN));
    let (mut ws, _) = tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), false),
    )
    .await
    .map_err(|_| DriverError::DialTimeout)?
    .map_err(dial_err)?;
    client.connect(now());
    let mut commands_open = true;
    loop {
        while let Some(out) = client.poll_output() {
            match out {
                Output::Persist(d) => {
                    if let Err(e) = persister.persist(&d).await {
                        let _ = ws.close(None).await;
                        return Err(DriverError::Persist(e));
                    }
                }
                Output::Send(b) => {
                    if ws.send(Message::Binary(b.into())).await.is_err() {
                        client.handle_closed(now());
                    }
                }
                Output::Event(e) => {
                    // A slow application gets backpressure, never a dropped event.
                    let _ = events.send(e).await;
                }
                Output::Close(reason) => {
                    let _ = ws.close(None).await;
                    return Ok(reason);
                }
            }
        }
        let deadline = client.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => client.handle_data(now(), &b),
                Some(Ok(Message::Close(_)) | Err(_)) | None => client.handle_closed(now()),
                Some(Ok(_)) => {}
            },
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                client.handle_timeout(now());
            }
            cmd = commands.recv(), if commands_open => match cmd {
                Some(Command::Logout) => client.logout(now()),
                Some(Command::Disconnect) => client.disconnect(now()),
                Some(Command::RequestPairCode(phone)) => { let _ = client.request_pair_code(now(), &phone); }
                None => commands_open = false,
            },
        }
    }
}

/// Runs connections until one ends for a reason other than the 515 restart (which is
/// followed by an immediate reconnect, as after pairing).
///
/// # Errors
/// As [`run_once`].
pub async fn run<P: Persister>(
    client: &mut Client,
    persister: &mut P,
    events: &mpsc::Sender<Event>,
    commands: &mut mpsc::Receiver<Command>,
) -> Result<DisconnectReason, DriverError> {
    let mut restarts = 0;
    loop {
        let reason = run_once(client, persister, events, commands).await?;
        if reason.is_restart() && restarts < MAX_RESTARTS {
            restarts += 1;
            tracing::info!(code = reason.code(), "restart requested; reconnecting now");
            continue;
        }
        return Ok(reason);
    }
}
