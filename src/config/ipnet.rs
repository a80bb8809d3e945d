//! [`IpNet`]: an IP network (`10.0.0.0/8`, `::1`) as written in
//! `server.trusted_proxies`, matched against peer addresses of either family.

use std::fmt;
use std::net::IpAddr;

/// An IP network such as `10.0.0.0/8`; a bare address is a one-address network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `10.0.0.0/8`, `127.0.0.1`, `::1/128`. Host bits may be set (`10.1.2.3/8`).
    pub fn parse(s: &str) -> Option<IpNet> {
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|&p| p <= max)?
            }
            Some(_) => return None,
        };
        // `::ffff:10.0.0.0/104` is kept as 10.0.0.0/8 so it matches peers of both forms.
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Some(IpNet {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Some(IpNet { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`, as a dual-stack listener reports
    /// IPv4 clients) are matched as IPv4.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let (net, ip, bits) = match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                (u32::from(net) as u128, u32::from(ip) as u128, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => (u128::from(net), u128::from(ip), 128),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix);
        net.checked_shr(host_bits).unwrap_or(0) == ip.checked_shr(host_bits).unwrap_or(0)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_networks() {
        let net = |s| IpNet::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(&ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(&ip("11.0.0.1")));
        assert!(net("10.1.2.3/8").contains(&ip("10.9.9.9")));
        assert!(net("127.0.0.1").contains(&ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(&ip("127.0.0.2")));
        assert!(net("0.0.0.0/0").contains(&ip("8.8.8.8")));
        assert!(!net("0.0.0.0/0").contains(&ip("::1")));
        assert!(net("::1/128").contains(&ip("::1")));
        assert!(net("fd00::/8").contains(&ip("fdab::1")));
        assert!(net("::/0").contains(&ip("2001:db8::1")));
        // A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6.
        assert!(net("10.0.0.0/8").contains(&ip("::ffff:10.0.0.1")));
        assert!(net("::ffff:10.0.0.0/104").contains(&ip("10.0.0.1")));
        assert!(!net("::ffff:10.0.0.0/104").contains(&ip("11.0.0.1")));
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!((net("::1").addr(), net("::1").prefix()), (ip("::1"), 128));
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host",
            "",
        ] {
            assert_eq!(IpNet::parse(bad), None, "{bad:?}");
        }
    }
}
