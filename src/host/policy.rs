//! The reconnect policy (ARCHITECTURE invariant 4): one pure function from a
//! [`DisconnectReason`] and the tenant's recent history to the [`Action`] the tenant actor
//! takes. No IO, no clock and no randomness here: the jitter sample comes in as an argument.

use std::time::Duration;

use crate::wa::client::DisconnectReason;

/// First backoff step (network, 408/428/500/503).
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Backoff cap.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Floor of every backoff delay: caps the attempt rate at two per second even when full
/// jitter draws close to zero.
pub const MIN_DELAY: Duration = Duration::from_millis(500);
/// A connection that stayed up this long resets the backoff attempt counter.
pub const STABLE_PERIOD: Duration = Duration::from_secs(60);
/// After 440 (another connection took the device over): the long cooldown before trying again,
/// once the lease check says we still own the tenant.
pub const REPLACED_COOLDOWN: Duration = Duration::from_secs(600);
/// 515 restarts in a row allowed before they are treated like any other failure (a server
/// looping on 515 must not spin us).
pub const MAX_RESTARTS_IN_ROW: u32 = 3;

/// What the tenant remembers about its recent connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// Failed attempts since the last stable connection.
    pub attempt: u32,
    /// 515 restarts in a row.
    pub restarts_in_row: u32,
    /// How long the connection that just ended was logged in (`None`: never logged in).
    pub connected_for: Option<Duration>,
}

/// What to do after a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Reconnect at once (515 after pairing).
    ReconnectNow,
    /// Wait, then reconnect (state `backoff`).
    Backoff(Duration),
    /// 440: renew the lease first (lost → `held_elsewhere`), then wait this long (state
    /// `backoff`). Never a loop.
    RecheckLeaseThenCooldown(Duration),
    /// 411: resynchronise (app state), then reconnect after this delay.
    ResyncThenReconnect(Duration),
    /// The device is unlinked: clear keys, state `logged_out`, wait for a link request.
    LoggedOut,
    /// The account is banned: state `banned`, stop (retry after the ban if it says when).
    Banned(Option<Duration>),
    /// 405: the server refused our client version. `auto`: refetch it and retry once; else
    /// (or after that retry) state `outdated`, stopped. Never a loop.
    Outdated,
    /// Stop with state `error` and this reason (a retry will not help).
    Fail(&'static str),
    /// Stop quietly: we closed it ourselves, or linking was abandoned (state `unlinked`).
    Idle,
}

/// Full-jitter exponential backoff: `max(MIN_DELAY, jitter × min(cap, base × 2^attempt))`.
/// `jitter` is a sample in `[0, 1)`.
pub fn backoff(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(BACKOFF_CAP);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0)).max(MIN_DELAY)
}

/// The attempt counter to use for the next decision: reset after a stable connection.
pub fn next_attempt(history: &History) -> u32 {
    if history.connected_for.is_some_and(|d| d >= STABLE_PERIOD) { 0 } else { history.attempt }
}

/// The policy table (exhaustive on purpose: a new reason does not compile without its row).
/// `jitter` is a uniform sample in `[0, 1)`.
pub fn decide(reason: &DisconnectReason, history: &History, jitter: f64) -> Action {
    let attempt = next_attempt(history);
    let retry = |base: Duration| Action::Backoff(backoff(base, attempt, jitter));
    match reason {
        DisconnectReason::RestartRequired if history.restarts_in_row < MAX_RESTARTS_IN_ROW => {
            Action::ReconnectNow
        }
        DisconnectReason::RestartRequired => retry(BACKOFF_BASE),
        DisconnectReason::LoggedOut { code: 403, .. } => Action::Banned(None),
        DisconnectReason::LoggedOut { .. } | DisconnectReason::LocalLogout => Action::LoggedOut,
        DisconnectReason::Replaced => Action::RecheckLeaseThenCooldown(REPLACED_COOLDOWN),
        DisconnectReason::TempBanned { expire, .. } => Action::Banned(*expire),
        DisconnectReason::ClientOutdated => Action::Outdated,
        DisconnectReason::LoginRefused { .. } => Action::Fail("login refused by the server"),
        DisconnectReason::RateLimited => retry(BACKOFF_BASE.saturating_mul(5)),
        DisconnectReason::ServiceUnavailable { .. }
        | DisconnectReason::StreamError { .. }
        | DisconnectReason::StreamEnd
        | DisconnectReason::ConnectionClosed
        | DisconnectReason::ConnectionLost
        | DisconnectReason::ConnectTimeout
        | DisconnectReason::Protocol(_) => retry(BACKOFF_BASE),
        DisconnectReason::MultideviceMismatch => {
            Action::ResyncThenReconnect(backoff(BACKOFF_BASE, attempt, jitter))
        }
        DisconnectReason::QrTimeout | DisconnectReason::LocalClose => Action::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::client::ProtocolError;

    fn h(attempt: u32) -> History {
        History { attempt, restarts_in_row: 0, connected_for: None }
    }

    /// Invariant 4: every disconnect reason maps to exactly the action of the table.
    #[test]
    fn table_covers_every_reason() {
        use DisconnectReason as R;
        let j = 0.5;
        let b0 = Action::Backoff(backoff(BACKOFF_BASE, 0, j));
        let rows: Vec<(R, Action)> = vec![
            (R::RestartRequired, Action::ReconnectNow),
            (R::LoggedOut { code: 401, on_connect: false }, Action::LoggedOut),
            (R::LoggedOut { code: 401, on_connect: true }, Action::LoggedOut),
            (R::LoggedOut { code: 406, on_connect: true }, Action::LoggedOut),
            (R::LoggedOut { code: 516, on_connect: false }, Action::LoggedOut),
            (R::LoggedOut { code: 403, on_connect: true }, Action::Banned(None)),
            (R::LocalLogout, Action::LoggedOut),
            (R::Replaced, Action::RecheckLeaseThenCooldown(REPLACED_COOLDOWN)),
            (
                R::TempBanned { code: Some(101), expire: Some(Duration::from_secs(30)) },
                Action::Banned(Some(Duration::from_secs(30))),
            ),
            (R::ClientOutdated, Action::Outdated),
            (R::LoginRefused { reason: Some(409) }, Action::Fail("login refused by the server")),
            (R::ServiceUnavailable { code: 503 }, b0.clone()),
            (R::ServiceUnavailable { code: 500 }, b0.clone()),
            (R::RateLimited, Action::Backoff(backoff(BACKOFF_BASE * 5, 0, j))),
            (R::StreamError { code: None, child: Some("ack".into()) }, b0.clone()),
            (R::StreamEnd, b0.clone()),
            (R::ConnectionClosed, b0.clone()),
            (R::ConnectionLost, b0.clone()),
            (R::ConnectTimeout, b0.clone()),
            (R::Protocol(ProtocolError::Decrypt), b0.clone()),
            (R::MultideviceMismatch, Action::ResyncThenReconnect(backoff(BACKOFF_BASE, 0, j))),
            (R::QrTimeout, Action::Idle),
            (R::LocalClose, Action::Idle),
        ];
        for (reason, want) in rows {
            assert_eq!(decide(&reason, &h(0), j), want, "{reason:?}");
        }
    }

    /// 440 never yields an immediate or short retry, whatever the history (no 440 loop).
    #[test]
    fn replaced_is_never_a_loop() {
        for attempt in 0..20 {
            for j in [0.0, 0.3, 0.99] {
                match decide(&DisconnectReason::Replaced, &h(attempt), j) {
                    Action::RecheckLeaseThenCooldown(d) => assert!(d >= Duration::from_secs(300)),
                    other => panic!("440 gave {other:?}"),
                }
            }
        }
    }

    /// Backoff grows exponentially, is capped at 60 s, never drops below the rate floor, and
    /// resets after a stable minute.
    #[test]
    fn backoff_grows_caps_and_resets() {
        assert_eq!(backoff(BACKOFF_BASE, 0, 0.999), Duration::from_secs(1).mul_f64(0.999));
        assert_eq!(backoff(BACKOFF_BASE, 3, 0.999), Duration::from_secs(8).mul_f64(0.999));
        assert_eq!(backoff(BACKOFF_BASE, 30, 0.999), BACKOFF_CAP.mul_f64(0.999));
        assert_eq!(backoff(BACKOFF_BASE, 5, 0.0), MIN_DELAY);
        let long = History { attempt: 9, restarts_in_row: 0, connected_for: Some(STABLE_PERIOD) };
        assert_eq!(next_attempt(&long), 0);
        let short = History { connected_for: Some(Duration::from_secs(5)), ..long };
        assert_eq!(next_attempt(&short), 9);
    }

    /// A server that loops on 515 is backed off after a few immediate restarts.
    #[test]
    fn restart_loop_is_bounded() {
        let hist = History { attempt: 0, restarts_in_row: MAX_RESTARTS_IN_ROW, connected_for: None };
        assert!(matches!(decide(&DisconnectReason::RestartRequired, &hist, 0.5), Action::Backoff(_)));
    }
}
