//! `[[checks.ping]]`: packet loss and round-trip time to a host. Each sample is a round of
//! `count` probes `spacing` apart, each answered within `wait` or lost: ICMP echo through an
//! unprivileged ICMP socket ([`icmp`]), or TCP connects in `tcp = "host:port"` mode ([`tcp`]).
//! The value is the loss in percent; the level is the worse of the loss against
//! `loss_warn`/`loss_crit` and the round's p95 round-trip time against `rtt_warn`/`rtt_crit`
//! ([`round`]). The automatic `gateway` check pings the default IPv4 gateway ([`route`]).
//!
//! When ICMP sockets are not permitted (the process's group outside
//! `net.ipv4.ping_group_range`), the sample is UNKNOWN and says which sysctl to set, or to use
//! the TCP mode.

pub mod icmp;
pub mod round;
pub mod route;
pub mod tcp;

use super::state::Level;
use super::{inner_budget, CheckSpec, Sample};
use round::{judge, Round, Thresholds};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A ping check.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// What is probed, and how.
    pub target: Target,
    /// Probes per round.
    pub count: u32,
    /// Time between the starts of two probes.
    pub spacing: Duration,
    /// How long a probe waits for its answer before it counts as lost.
    pub wait: Duration,
    /// Loss and round-trip time thresholds.
    pub thresholds: Thresholds,
}

impl Spec {
    /// How long one round takes at most: the last probe starts `(count - 1) × spacing` in and
    /// waits `wait`.
    pub fn round_time(&self) -> Duration {
        self.spacing * self.count.saturating_sub(1) + self.wait
    }

    /// The target as written, for messages.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Icmp(h) => h.clone(),
            Target::Tcp(a) => format!("tcp {a}"),
            Target::Gateway => "the default gateway".into(),
        }
    }
}

/// What a ping check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// ICMP echo to a host name or an IPv4/IPv6 address.
    Icmp(String),
    /// TCP connects to `host:port`.
    Tcp(String),
    /// ICMP echo to the default IPv4 gateway, looked up in every round.
    Gateway,
}

/// Why a round could not run.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The process may not open ICMP datagram sockets.
    #[error(
        "ICMP echo is not permitted for this process: its group {gid} is outside \
         net.ipv4.ping_group_range (now \"{range}\"); set `net.ipv4.ping_group_range = 0 2147483647` \
         in /etc/sysctl.d/ and run `sysctl --system` (the opsagent package ships it in \
         /usr/lib/sysctl.d/60-opsagent-ping.conf: is it overridden?), or measure TCP connects \
         instead: tcp = \"host:port\""
    )]
    NotPermitted {
        /// The effective group id.
        gid: u32,
        /// The sysctl's current value.
        range: String,
    },
    /// The socket could not be opened or connected.
    #[error("cannot open an ICMP socket to {target}: {error}")]
    Socket {
        /// The address.
        target: String,
        /// The cause.
        error: String,
    },
    /// The name did not resolve.
    #[error(
        "cannot resolve `{target}`: {error}; check the name and /etc/resolv.conf, or give an address"
    )]
    Resolve {
        /// The name.
        target: String,
        /// The cause.
        error: String,
    },
    /// The host lost its default route after the check started.
    #[error(
        "there is no default route any more (no default gateway in /proc/net/route): this host \
         cannot reach other networks; look at `ip route`"
    )]
    NoGateway,
}

/// One round. `last` is the level of the previous sample (for the thresholds' hysteresis) and
/// is updated.
pub async fn probe(spec: &CheckSpec, p: &Spec, last: &mut Level) -> Sample {
    let budget = inner_budget(spec.timeout);
    // Name resolution gets what the round leaves of the budget (at least a little).
    let resolve_within = budget
        .saturating_sub(p.round_time())
        .max(Duration::from_millis(200));
    let done = match &p.target {
        Target::Icmp(host) => icmp_round(host, p, resolve_within).await,
        Target::Gateway => match route::default_gateway() {
            Some(gw) => icmp::round(IpAddr::V4(gw), p.count, p.spacing, p.wait)
                .await
                .map(|r| (format!("gateway {gw}"), r)),
            None => Err(PingError::NoGateway),
        },
        Target::Tcp(address) => match resolve(address, resolve_within).await {
            Ok(addr) => Ok((
                format!("tcp {address}"),
                tcp::round(addr, p.count, p.spacing, p.wait).await,
            )),
            Err(e) => Err(e),
        },
    };
    match done {
        Ok((what, round)) => sample(spec, p, &what, &round, last),
        Err(e @ PingError::NoGateway) => Sample::judged(spec, Level::Crit, None, e.to_string()),
        Err(e) => Sample::failed(spec, e.to_string()),
    }
}

fn sample(spec: &CheckSpec, p: &Spec, what: &str, round: &Round, last: &mut Level) -> Sample {
    let v = judge(round, &p.thresholds, *last);
    *last = v.level;
    Sample::decided(
        spec,
        v.level,
        Some(round.loss_pct()),
        v.threshold,
        format!("{what}: {}", v.detail),
    )
}

async fn icmp_round(
    host: &str,
    p: &Spec,
    resolve_within: Duration,
) -> Result<(String, Round), PingError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let (ip, what) = match bare.parse::<IpAddr>() {
        Ok(ip) => (ip, ip.to_string()),
        Err(_) => {
            let addr = resolve(&format!("{host}:0"), resolve_within).await?;
            (addr.ip(), format!("{host} ({})", addr.ip()))
        }
    };
    let round = icmp::round(ip, p.count, p.spacing, p.wait).await?;
    Ok((what, round))
}

/// The first address `host:port` resolves to, within `within`.
async fn resolve(address: &str, within: Duration) -> Result<SocketAddr, PingError> {
    let err = |error: String| PingError::Resolve {
        target: address.trim_end_matches(":0").to_string(),
        error,
    };
    match tokio::time::timeout(within, tokio::net::lookup_host(address)).await {
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| err("no address".into())),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(_) => Err(err(format!("no answer within {within:?}"))),
    }
}
