//! The task that keeps a daemon's certificate fresh: it re-reads the identity directory
//! ([`LiveIdentity::reload`]) every period, so that `certs renew` or a changed trust bundle
//! takes effect for new connections without a restart, and warns in the log, from 30 days
//! before, that the certificate is about to expire (daily, at start and after each reload).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swarmcast_certs::{LiveIdentity, Reload, expiry_warning};
use tracing::{error, info, warn};

/// How often a daemon re-reads its identity directory by default.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// How often the expiry warning is repeated.
const WARN_EVERY: Duration = Duration::from_secs(24 * 3600);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Log the expiry warning for a certificate valid until `not_after`, if it is due.
fn warn_expiry(not_after: i64) {
    match expiry_warning(not_after, unix_now()) {
        None => {}
        Some(left) if left < 0 => error!(
            not_after,
            expired_days_ago = -left / 86_400,
            "this process's certificate has expired: peers refuse it; renew it with `swarmcast certs renew`"
        ),
        Some(left) => warn!(
            not_after,
            days_left = left / 86_400,
            "this process's certificate expires soon; renew it with `swarmcast certs renew` (picked up without a restart)"
        ),
    }
}

/// Reload `live` every `every`, for ever; `expiry` is told the certificate's notAfter (Unix
/// seconds) at start and after each reload (the metrics gauge).
pub async fn watch_identity(live: Arc<LiveIdentity>, every: Duration, expiry: impl Fn(i64)) {
    let mut not_after = live.identity().not_after_unix();
    expiry(not_after);
    warn_expiry(not_after);
    let mut warned = tokio::time::Instant::now();
    let mut last_error: Option<String> = None;
    let mut interval = tokio::time::interval(every.max(Duration::from_millis(100)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        match live.reload() {
            Ok(Reload::Unchanged) => last_error = None,
            Ok(Reload::Reloaded {
                previous_not_after,
                not_after: now_after,
                cas,
            }) => {
                last_error = None;
                not_after = now_after;
                info!(
                    previous_not_after,
                    not_after,
                    trusted_cas = cas,
                    "identity reloaded: new connections present this certificate and trust these CAs"
                );
                expiry(not_after);
                warn_expiry(not_after);
                warned = tokio::time::Instant::now();
            }
            Err(e) => {
                // Once per distinct failure, not every period.
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    warn!(error = %text, "identity reload failed; keeping the certificate loaded");
                    last_error = Some(text);
                }
            }
        }
        if warned.elapsed() >= WARN_EVERY {
            warn_expiry(not_after);
            warned = tokio::time::Instant::now();
        }
    }
}
