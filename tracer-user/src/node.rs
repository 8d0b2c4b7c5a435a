//! Facts about the node that explain a verdict: port ranges, reserved ports
//! and the IPVS table. Read from procfs; behind a trait so the diagnosis
//! logic can be tested with recorded values.

use std::{fs, net::IpAddr, net::Ipv4Addr, ops::RangeInclusive};

/// A set of port ranges as in `net.ipv4.ip_local_reserved_ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRanges(pub Vec<RangeInclusive<u16>>);

impl PortRanges {
    /// Parses the sysctl's syntax: "30000-32767,40000" (empty = none).
    pub fn parse(text: &str) -> Option<Self> {
        let mut ranges = Vec::new();
        for part in text.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
                None => {
                    let p = part.parse().ok()?;
                    (p, p)
                }
            };
            if lo > hi {
                return None;
            }
            ranges.push(lo..=hi);
        }
        Some(Self(ranges))
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(&port))
    }

    /// True when every port of `range` is covered.
    pub fn covers(&self, range: &RangeInclusive<u16>) -> bool {
        range.clone().all(|p| self.contains(p))
    }
}

/// One IPVS virtual service with its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsService {
    pub protocol: String,
    pub vip: IpAddr,
    pub vport: u16,
    pub reals: Vec<(IpAddr, u16)>,
}

/// Parses `/proc/net/ip_vs` (IPv4 services; hex addresses and ports).
pub fn parse_proc_ip_vs(text: &str) -> Vec<IpvsService> {
    let mut services: Vec<IpvsService> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("->") {
            let Some(addr) = rest.split_whitespace().next() else { continue };
            if let (Some(svc), Some(real)) = (services.last_mut(), parse_hex_endpoint(addr)) {
                svc.reals.push(real);
            }
            continue;
        }
        let mut cols = trimmed.split_whitespace();
        let (Some(proto), Some(addr)) = (cols.next(), cols.next()) else { continue };
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            continue;
        }
        if let Some((vip, vport)) = parse_hex_endpoint(addr) {
            services.push(IpvsService { protocol: proto.to_string(), vip, vport, reals: Vec::new() });
        }
    }
    services
}

fn parse_hex_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if addr.len() != 8 {
        return None; // IPv6 services are printed as [..]:port; not handled here.
    }
    let v = u32::from_str_radix(addr, 16).ok()?;
    Some((IpAddr::V4(Ipv4Addr::from(v)), port))
}

/// What the diagnosis may ask about the node.
pub trait NodeView {
    fn reserved_ports(&self) -> PortRanges;
    fn ipvs_services(&self) -> Vec<IpvsService>;
}

/// The live node, read from procfs on each call (calls are rare: once per
/// failed probe).
pub struct ProcNode;

pub const RESERVED_PORTS_SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
pub const PORT_RANGE_SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_port_range";
pub const PROC_IP_VS: &str = "/proc/net/ip_vs";

impl NodeView for ProcNode {
    fn reserved_ports(&self) -> PortRanges {
        fs::read_to_string(RESERVED_PORTS_SYSCTL)
            .ok()
            .and_then(|t| PortRanges::parse(&t))
            .unwrap_or_default()
    }

    fn ipvs_services(&self) -> Vec<IpvsService> {
        fs::read_to_string(PROC_IP_VS).map(|t| parse_proc_ip_vs(&t)).unwrap_or_default()
    }
}

/// `net.ipv4.ip_local_port_range` ("32768\t60999").
pub fn ephemeral_port_range() -> Option<RangeInclusive<u16>> {
    let text = fs::read_to_string(PORT_RANGE_SYSCTL).ok()?;
    let mut it = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some(it.next()??..=it.next()??)
}

/// A fixed view for tests and replays.
#[derive(Debug, Clone, Default)]
pub struct StaticNode {
    pub reserved: PortRanges,
    pub services: Vec<IpvsService>,
}

impl NodeView for StaticNode {
    fn reserved_ports(&self) -> PortRanges {
        self.reserved.clone()
    }
    fn ipvs_services(&self) -> Vec<IpvsService> {
        self.services.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reserved_ports() {
        let r = PortRanges::parse("30000-32767,40000\n").unwrap();
        assert!(r.contains(31055) && r.contains(40000) && !r.contains(40001));
        assert!(r.covers(&(30000..=32767)));
        assert_eq!(PortRanges::parse("").unwrap(), PortRanges::default());
        assert!(PortRanges::parse("5-1").is_none());
    }

    // Recorded in the VM from `ipvsadm -A -t 10.200.0.1:31055 -s rr;
    // ipvsadm -a -t 10.200.0.1:31055 -r 10.200.2.2:80 -m`.
    const PROC_IP_VS_SAMPLE: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0AC80001:794F rr
  -> 0AC80202:0050      Masq    1      0          1
";

    #[test]
    fn parses_proc_ip_vs() {
        let s = parse_proc_ip_vs(PROC_IP_VS_SAMPLE);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].vip, "10.200.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s[0].vport, 31055);
        assert_eq!(s[0].reals, vec![("10.200.2.2".parse().unwrap(), 80)]);
    }
}
