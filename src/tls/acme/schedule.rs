//! When to renew and how long to wait after a failure.
//!
//! Owns the timing rules only (pure functions, unit-tested).

use std::time::Duration;

use time::OffsetDateTime;

/// Renew this long before expiry at most ...
pub const RENEW_BEFORE: time::Duration = time::Duration::days(30);
/// The first wait after a failed attempt; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The renewal time of a certificate valid from `not_before` to
/// `not_after`: 30 days before expiry, or, for a certificate that lives
/// less than 90 days, when a third of its lifetime is left (like Caddy).
pub fn renew_at(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    let lifetime = (not_after - not_before).max(time::Duration::ZERO);
    not_after - RENEW_BEFORE.min(lifetime / 3)
}

/// The wait after `failures` failed attempts in a row (1 or more).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// How long from `now` until `at` (zero when it has passed).
pub fn until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(at - now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ninety_day_certificates_renew_thirty_days_early() {
        let from = datetime!(2026-01-01 0:00 UTC);
        let to = from + time::Duration::days(90);
        assert_eq!(renew_at(from, to), to - time::Duration::days(30));
        let long = from + time::Duration::days(365);
        assert_eq!(renew_at(from, long), long - time::Duration::days(30));
    }

    #[test]
    fn short_lived_certificates_renew_at_two_thirds() {
        let from = datetime!(2026-01-01 0:00 UTC);
        let to = from + time::Duration::days(6);
        assert_eq!(renew_at(from, to), from + time::Duration::days(4));
        let minute = from + time::Duration::seconds(60);
        assert_eq!(renew_at(from, minute), from + time::Duration::seconds(40));
        // A broken certificate (ends before it starts) renews at once.
        assert_eq!(renew_at(to, from), from);
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(6), Duration::from_secs(1920));
        assert_eq!(backoff(7), MAX_BACKOFF);
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }
}
