//! The default IPv4 gateway, from `/proc/net/route`: the target of the automatic `gateway` ping
//! check. The file is read with a size cap and parsed defensively (it is the kernel's, but a
//! test, a container runtime or a FUSE overlay may hand us anything): a malformed line is
//! skipped, never trusted.

use std::io::Read;
use std::net::Ipv4Addr;

/// Where the kernel lists the IPv4 routes.
pub const ROUTE_FILE: &str = "/proc/net/route";
/// The most of the route table read (about 500 routes); the default route is in the first
/// lines on any host this agent watches.
pub const MAX_ROUTE_BYTES: u64 = 64 * 1024;

/// `RTF_UP`: the route is usable.
const RTF_UP: u32 = 0x1;
/// `RTF_GATEWAY`: the route goes through a gateway.
const RTF_GATEWAY: u32 = 0x2;

/// The default gateway of this host's network namespace, if it has one (read now).
pub fn default_gateway() -> Option<Ipv4Addr> {
    let f = std::fs::File::open(ROUTE_FILE).ok()?;
    let mut text = String::new();
    f.take(MAX_ROUTE_BYTES).read_to_string(&mut text).ok()?;
    parse_default_gateway(&text)
}

/// The gateway of the usable default route with the lowest metric in a `/proc/net/route` text.
pub fn parse_default_gateway(text: &str) -> Option<Ipv4Addr> {
    text.lines()
        .skip(1)
        .filter_map(default_route)
        .min_by_key(|(_, metric)| *metric)
        .map(|(gw, _)| gw)
}

/// `(gateway, metric)` when `line` is a well-formed, usable default route via a gateway.
fn default_route(line: &str) -> Option<(Ipv4Addr, u32)> {
    let f: Vec<&str> = line.split_ascii_whitespace().take(8).collect();
    let [_iface, dest, gw, flags, _refcnt, _use, metric, mask] = f[..] else {
        return None;
    };
    // Addresses and masks are 8 hex digits, the flags 4; `from_str_radix` alone would take a
    // sign.
    let hex = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
    };
    let flags = hex(flags, 4)?;
    if hex(dest, 8)? != 0
        || hex(mask, 8)? != 0
        || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY
    {
        return None;
    }
    // The kernel prints the address as the u32 it holds in network order, read natively.
    let gw = Ipv4Addr::from(hex(gw, 8)?.to_ne_bytes());
    if gw.is_unspecified() || gw.is_broadcast() || gw.is_multicast() {
        return None;
    }
    Some((gw, metric.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    /// A route line as the kernel prints it (the gateway given as an address).
    fn line(dest: u32, gw: Ipv4Addr, flags: u32, metric: u32, mask: u32) -> String {
        let gw = u32::from_ne_bytes(gw.octets());
        format!("eth0\t{dest:08X}\t{gw:08X}\t{flags:04X}\t0\t0\t{metric}\t{mask:08X}\t0\t0\t0\n")
    }

    #[test]
    fn the_default_route_with_the_lowest_metric() {
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let b = Ipv4Addr::new(198, 51, 100, 1);
        let text = HEAD.to_string()
            + &line(0, b, 3, 600, 0)
            + &line(
                0x0002_00C0u32.to_be(),
                Ipv4Addr::UNSPECIFIED,
                1,
                0,
                0xFFFFFF00,
            )
            + &line(0, a, 3, 100, 0);
        assert_eq!(parse_default_gateway(&text), Some(a));
    }

    #[test]
    fn the_kernels_own_text() {
        // This machine's /proc/net/route, as read during development.
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_default_gateway(text),
                Some(Ipv4Addr::new(192, 0, 2, 1))
            );
        }
    }

    #[test]
    fn no_default_route() {
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(parse_default_gateway(""), None);
        assert_eq!(parse_default_gateway(HEAD), None);
        // Down (no RTF_UP), or without RTF_GATEWAY, or not the default destination/mask.
        for l in [
            line(0, gw, 2, 0, 0),
            line(0, gw, 1, 0, 0),
            line(1, gw, 3, 0, 0),
            line(0, gw, 3, 0, 1),
        ] {
            assert_eq!(parse_default_gateway(&(HEAD.to_string() + &l)), None, "{l}");
        }
    }

    #[test]
    fn hostile_lines_are_skipped() {
        let good = line(0, Ipv4Addr::new(10, 0, 0, 1), 3, 5, 0);
        let bad = [
            "eth0\n".to_string(),
            "eth0\t00000000\n".into(),
            "eth0\tZZZZZZZZ\t010200C0\t0003\t0\t0\t0\t00000000\n".into(),
            "eth0\t00000000\t+1020C0\t0003\t0\t0\t0\t00000000\n".into(),
            "eth0\t00000000\t0102000C0\t0003\t0\t0\t0\t00000000\n".into(),
            "eth0\t00000000\t010200C0\t0003\t0\t0\t-1\t00000000\n".into(),
            "eth0\t00000000\t010200C0\t0003\t0\t0\t99999999999\t00000000\n".into(),
            "eth0\t00000000\t00000000\t0003\t0\t0\t0\t00000000\n".into(),
            "eth0\t00000000\tFFFFFFFF\t0003\t0\t0\t0\t00000000\n".into(),
            "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\u{0}\u{feff}\n".into(),
            "é\tü\t✓\t\t\t\t\t\t\n".into(),
            "x ".repeat(10_000) + "\n",
        ];
        for b in &bad {
            let text = HEAD.to_string() + b + &good;
            assert_eq!(
                parse_default_gateway(&text),
                Some(Ipv4Addr::new(10, 0, 0, 1)),
                "{b:?}"
            );
            assert_eq!(
                parse_default_gateway(&(HEAD.to_string() + b)),
                None,
                "{b:?}"
            );
        }
        // A header only is the first line: a route in it is not read.
        assert_eq!(parse_default_gateway(&good), None);
    }

    #[test]
    fn reads_this_hosts_table() {
        // Whatever the machine has, reading it must not fail or hang.
        let _ = default_gateway();
    }
}
