//! ICMP echo through an unprivileged ICMP datagram socket (`socket(AF_INET, SOCK_DGRAM,
//! IPPROTO_ICMP)`, or ICMPv6): no capability, only the process's group inside
//! `net.ipv4.ping_group_range` (which covers IPv6 too).
//!
//! One socket per round, connected to the target, driven by tokio (it never blocks a worker).
//! The kernel fills in the checksum and replaces the identifier with the socket's own "port",
//! and it hands this socket only echo replies carrying that identifier; a reply is matched on
//! its sequence number (within this round's) and a random token in the payload, so a
//! stray or forged datagram counts for nothing. Reads are bounded: each into a fixed buffer,
//! and at most [`max_reads`] datagrams per round (a flood ends the round early, its
//! unanswered probes lost).

use super::round::Round;
use super::PingError;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// The payload after the 8-byte ICMP header: this round's token, then the probe's index.
const PAYLOAD: usize = 16;
/// Room for a reply: header, payload, and anything a peer pads it with (cut off).
const READ_BUF: usize = 128;

/// The most datagrams one round reads: four per probe (answers, duplicates, errors) and some.
pub fn max_reads(count: u32) -> usize {
    4 * count as usize + 16
}

/// Opens a non-blocking ICMP datagram socket for `ip`'s family, connected to `ip`.
pub fn open(ip: IpAddr) -> Result<UdpSocket, PingError> {
    let (domain, proto) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let sock =
        Socket::new(domain, Type::DGRAM, Some(proto)).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => PingError::NotPermitted {
                gid: rustix::process::getegid().as_raw(),
                range: group_range().unwrap_or_else(|| "?".into()),
            },
            _ => PingError::Socket {
                target: ip.to_string(),
                error: e.to_string(),
            },
        })?;
    let setup = || -> io::Result<UdpSocket> {
        sock.set_nonblocking(true)?;
        sock.connect(&SocketAddr::new(ip, 0).into())?;
        UdpSocket::from_std(std::net::UdpSocket::from(sock))
    };
    setup().map_err(|e| PingError::Socket {
        target: ip.to_string(),
        error: e.to_string(),
    })
}

/// The sysctl that lets groups open ICMP datagram sockets.
pub const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// The current `net.ipv4.ping_group_range` (`"1 0"`), read with a size cap.
fn group_range() -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    let f = std::fs::File::open(PING_GROUP_RANGE).ok()?;
    f.take(64).read_to_string(&mut text).ok()?;
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// An echo request: type, code 0, checksum and identifier left to the kernel, `seq`, then the
/// token and the probe's index.
fn request(v6: bool, seq: u16, token: &[u8; 8], index: u16) -> [u8; 8 + PAYLOAD] {
    let mut p = [0u8; 8 + PAYLOAD];
    p[0] = if v6 { 128 } else { 8 };
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(token);
    p[16..18].copy_from_slice(&index.to_be_bytes());
    p
}

/// The probe index a datagram answers, if it is an echo reply of this round: the right type,
/// a sequence number `base + i` for a probe `i < count`, and this round's token and index.
pub fn answers(datagram: &[u8], v6: bool, base: u16, token: &[u8; 8], count: u32) -> Option<usize> {
    if datagram.len() < 8 + PAYLOAD || datagram[0] != if v6 { 129 } else { 0 } || datagram[1] != 0 {
        return None;
    }
    let seq = u16::from_be_bytes([datagram[6], datagram[7]]);
    let i = seq.wrapping_sub(base);
    let index = u16::from_be_bytes([datagram[16], datagram[17]]);
    (u32::from(i) < count && index == i && &datagram[8..16] == token).then_some(usize::from(i))
}

/// Sends `count` echo requests to `ip`, `spacing` apart, and waits for each reply at most
/// `wait` after its request.
pub async fn round(
    ip: IpAddr,
    count: u32,
    spacing: Duration,
    wait: Duration,
) -> Result<Round, PingError> {
    let sock = open(ip)?;
    let v6 = ip.is_ipv6();
    let mut token = [0u8; 8];
    let mut base = [0u8; 2];
    // Without randomness the round still works; only a forger's guess gets easier.
    let _ = getrandom::fill(&mut token);
    let _ = getrandom::fill(&mut base);
    let base = u16::from_be_bytes(base);
    let n = count as usize;
    let mut sent: Vec<Option<Instant>> = vec![None; n];
    let mut rtt: Vec<Option<Duration>> = vec![None; n];
    let mut last_error = None;
    let start = Instant::now();
    let mut end = start + spacing * count.saturating_sub(1) + wait;
    let mut buf = [0u8; READ_BUF];
    let (mut next, mut reads) = (0usize, 0usize);
    loop {
        let now = Instant::now();
        let due = start + spacing * next as u32;
        if next < n && now >= due {
            let seq = base.wrapping_add(next as u16);
            match sock.send(&request(v6, seq, &token, next as u16)).await {
                Ok(_) => sent[next] = Some(Instant::now()),
                Err(e) => last_error = Some(e.to_string()),
            }
            next += 1;
            if next == n {
                // A late last send (a busy runtime) still gets its full wait.
                end = end.max(Instant::now() + wait);
            }
            continue;
        }
        if next >= n && now >= end {
            break;
        }
        let wake = if next < n { due } else { end };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            got = sock.recv(&mut buf) => {
                let at = Instant::now();
                reads += 1;
                match got {
                    Ok(len) => {
                        if let Some(i) = answers(&buf[..len], v6, base, &token, count) {
                            let took = sent[i].map(|s| at.duration_since(s));
                            if rtt[i].is_none() {
                                rtt[i] = took.filter(|t| *t <= wait);
                            }
                        }
                    }
                    // An ICMP error about an earlier probe (host or net unreachable).
                    Err(e) => last_error = Some(e.to_string()),
                }
                if reads >= max_reads(count) {
                    last_error = Some(format!("more than {reads} datagrams in one round; stopped reading"));
                    break;
                }
            }
        }
    }
    Ok(Round {
        sent: count,
        rtts: rtt.into_iter().flatten().collect(),
        last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(v6: bool, seq: u16, token: &[u8; 8], index: u16) -> Vec<u8> {
        let mut r = request(v6, seq, token, index).to_vec();
        r[0] = if v6 { 129 } else { 0 };
        // The kernel's identifier and checksum: whatever they are, they are not looked at.
        r[2..6].copy_from_slice(&[0xAB, 0xCD, 0x12, 0x34]);
        r
    }

    #[test]
    fn replies_match_on_sequence_token_and_index() {
        let tok = *b"tok-0123";
        let base = 65_534; // wraps within the round
        for v6 in [false, true] {
            assert_eq!(
                answers(&reply(v6, 65_534, &tok, 0), v6, base, &tok, 5),
                Some(0)
            );
            assert_eq!(answers(&reply(v6, 2, &tok, 4), v6, base, &tok, 5), Some(4));
            // Beyond this round's sequence numbers.
            assert_eq!(answers(&reply(v6, 3, &tok, 5), v6, base, &tok, 5), None);
            assert_eq!(
                answers(&reply(v6, 65_533, &tok, 65_535), v6, base, &tok, 5),
                None
            );
            // Another round's token, or an index that does not go with the sequence.
            assert_eq!(
                answers(&reply(v6, 65_534, b"other-00", 0), v6, base, &tok, 5),
                None
            );
            assert_eq!(
                answers(&reply(v6, 65_535, &tok, 0), v6, base, &tok, 5),
                None
            );
            // Our own request looped back, the other family's reply, a wrong code.
            let req = request(v6, 65_534, &tok, 0);
            assert_eq!(answers(&req, v6, base, &tok, 5), None);
            assert_eq!(
                answers(&reply(!v6, 65_534, &tok, 0), v6, base, &tok, 5),
                None
            );
            let mut coded = reply(v6, 65_534, &tok, 0);
            coded[1] = 1;
            assert_eq!(answers(&coded, v6, base, &tok, 5), None);
        }
    }

    #[test]
    fn short_and_odd_datagrams_are_ignored() {
        let tok = *b"tok-0123";
        let full = reply(false, 7, &tok, 0);
        for len in 0..full.len() {
            assert_eq!(
                answers(&full[..len], false, 7, &tok, 1),
                None,
                "{len} bytes"
            );
        }
        let mut long = full.clone();
        long.extend([0xFF; 100]);
        assert_eq!(answers(&long, false, 7, &tok, 1), Some(0));
    }

    #[test]
    fn requests_carry_type_sequence_and_token() {
        let r = request(false, 0x1234, b"abcdefgh", 3);
        assert_eq!(r[0], 8);
        assert_eq!(&r[6..8], &[0x12, 0x34]);
        assert_eq!(&r[8..16], b"abcdefgh");
        assert_eq!(request(true, 0, b"abcdefgh", 0)[0], 128);
    }
}
