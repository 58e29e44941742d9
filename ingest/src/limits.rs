//! Rate limits on the public tracking routes (`/api/v1/track/*`): any browser can post to
//! them, so one client or one tenant's page must not be able to flood the pipeline.
//!
//! Two limits, each off at 0 (`[edge.rate_limits]`): requests per second per client IP
//! (IPv6 clients by their /64, what one subscriber holds) and per tenant, each with a
//! burst. A request over either gets 429 with `Retry-After` (whole seconds until a request
//! would pass, at least 1; the tracker waits that long and sends again) and is counted as
//! `funnelhub_edge_rejected_total{reason="too_many_requests"}`; nothing is produced for it.
//!
//! Guarantees: a refusal costs no allocation per client beyond the limiter's entry; the
//! entries of clients not seen for a while are dropped every [`SWEEP_EVERY`], so a flood of
//! addresses holds memory only until the next sweep. Assumes the client IP is the one
//! `[edge] client_ip_header`/`trusted_proxies` establish: behind a proxy that is not
//! trusted every client is the proxy, and the per-IP limit applies to all of them at once.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use funnelhub_runtime::api::ApiError;

/// How often the entries of quiet clients and tenants are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// `[edge.rate_limits]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Tracking requests per second one client IP may send (0: no limit).
    pub per_client_ip_per_sec: u32,
    /// How many a client may send at once above that rate (default: one second's worth).
    pub per_client_ip_burst: u32,
    /// Tracking requests per second one tenant's pages may send (0: no limit).
    pub per_tenant_per_sec: u32,
    /// How many at once above that rate (default: one second's worth).
    pub per_tenant_burst: u32,
}

/// The limiters, shared by every request of one edge.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    clients: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    tenants: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The key of a client: its IPv4 address, or its IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> RateLimits {
        RateLimits {
            clients: quota(config.per_client_ip_per_sec, config.per_client_ip_burst)
                .map(|q| Arc::new(RateLimiter::keyed(q))),
            tenants: quota(config.per_tenant_per_sec, config.per_tenant_burst)
                .map(|q| Arc::new(RateLimiter::keyed(q))),
        }
    }

    /// One tracking request of `tenant_id` from `client`: `Ok`, or 429 naming what is over.
    pub fn check(&self, tenant_id: &str, client: Option<IpAddr>) -> Result<(), ApiError> {
        if let (Some(limiter), Some(ip)) = (&self.clients, client) {
            if let Err(not_until) = limiter.check_key(&client_key(ip)) {
                return Err(refused(
                    "requests from this client",
                    not_until.wait_time_from(DefaultClock::default().now()),
                ));
            }
        }
        if let Some(limiter) = &self.tenants {
            if let Err(not_until) = limiter.check_key(&tenant_id.to_owned()) {
                return Err(refused(
                    "requests for this tenant",
                    not_until.wait_time_from(DefaultClock::default().now()),
                ));
            }
        }
        Ok(())
    }

    /// Drop the entries of clients and tenants that are back under their limit.
    pub fn sweep(&self) {
        if let Some(limiter) = &self.clients {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.tenants {
            limiter.retain_recent();
        }
    }

    /// Clients with an entry now.
    pub fn clients_tracked(&self) -> usize {
        self.clients.as_ref().map_or(0, |l| l.len())
    }

    /// Sweep every [`SWEEP_EVERY`] while the edge runs (nothing to do without limits).
    pub fn spawn_sweeper(&self) {
        if self.clients.is_none() && self.tenants.is_none() {
            return;
        }
        let limits = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                limits.sweep();
            }
        });
    }
}

fn refused(what: &str, wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::TooManyRequests {
        what: format!("too many {what}: retry later"),
        retry_after_secs: secs.clamp(1, 3600) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ip: u32, tenant: u32) -> RateLimits {
        RateLimits::new(&RateLimitConfig {
            per_client_ip_per_sec: ip,
            per_client_ip_burst: 0,
            per_tenant_per_sec: tenant,
            per_tenant_burst: 0,
        })
    }

    #[test]
    fn a_client_over_its_rate_gets_429_with_a_retry_after_and_others_do_not() {
        let limits = limits(2, 0);
        let a: IpAddr = "203.0.113.7".parse().expect("ip");
        let b: IpAddr = "203.0.113.8".parse().expect("ip");
        assert!(limits.check("shop", Some(a)).is_ok());
        assert!(limits.check("shop", Some(a)).is_ok());
        match limits.check("shop", Some(a)) {
            Err(ApiError::TooManyRequests {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
        assert!(limits.check("shop", Some(b)).is_ok(), "another client");
        assert!(
            limits.check("shop", None).is_ok(),
            "no address known: no limit"
        );
    }

    #[test]
    fn one_ipv6_subscriber_is_one_client_and_mapped_ipv4_is_ipv4() {
        let limits = limits(1, 0);
        let first: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(limits.check("shop", Some(first)).is_ok());
        assert!(limits.check("shop", Some(same_64)).is_err());
        assert!(limits.check("shop", Some(other_64)).is_ok());
        let v4: IpAddr = "198.51.100.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().expect("ip");
        assert!(limits.check("shop", Some(v4)).is_ok());
        assert!(limits.check("shop", Some(mapped)).is_err());
    }

    #[test]
    fn a_tenant_over_its_rate_is_refused_whatever_the_client_and_zero_means_no_limit() {
        let limits = limits(0, 3);
        for i in 0..3u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            assert!(limits.check("shop", Some(ip)).is_ok());
        }
        assert!(limits
            .check("shop", Some(IpAddr::from([198, 51, 100, 9])))
            .is_err());
        assert!(limits
            .check("loja", Some(IpAddr::from([198, 51, 100, 9])))
            .is_ok());
        let none = RateLimits::new(&RateLimitConfig::default());
        for _ in 0..10_000 {
            assert!(none
                .check("shop", Some(IpAddr::from([198, 51, 100, 1])))
                .is_ok());
        }
    }

    #[test]
    fn a_sweep_forgets_clients_back_under_their_limit() {
        let limits = limits(1000, 0);
        for i in 0..200u8 {
            assert!(limits
                .check("shop", Some(IpAddr::from([10, 0, 0, i])))
                .is_ok());
        }
        assert_eq!(limits.clients_tracked(), 200);
        std::thread::sleep(Duration::from_millis(20));
        limits.sweep();
        assert_eq!(limits.clients_tracked(), 0);
    }
}
