//! Parsers of procfs text, pure so they are unit-tested and fuzzed: the
//! IPVS table, `/proc/net/tcp{,6}`, `netstat`, `fib_trie`, `if_inet6`,
//! kallsyms; and the accept queue a connection waits in.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use tracer_common::tcp_state::{TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_LISTEN};

use super::{IpvsService, ListenQueue, Listener};

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

/// The text symbol at or below `addr` in a kallsyms listing (unsorted
/// across modules), if it is within 64 KiB.
pub fn symbol_in(kallsyms: &str, addr: u64) -> Option<String> {
    let mut best: Option<(u64, &str)> = None;
    for line in kallsyms.lines() {
        let mut cols = line.split_whitespace();
        let (Some(a), Some(kind), Some(name)) = (cols.next(), cols.next(), cols.next()) else { continue };
        if !matches!(kind, "T" | "t") {
            continue;
        }
        let Ok(a) = u64::from_str_radix(a, 16) else { continue };
        if a <= addr && addr - a < 0x10000 && best.is_none_or(|(b, _)| a > b) {
            best = Some((a, name));
        }
    }
    best.map(|(_, name)| name.to_string())
}

/// The local (`host LOCAL`) IPv4 addresses in a `/proc/net/fib_trie`.
pub fn local_ipv4(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut last = None;
    let mut out = Vec::new();
    for line in fib_trie.lines() {
        let t = line.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse::<Ipv4Addr>().ok();
        } else if t.contains("host LOCAL")
            && let Some(a) = last
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

/// The addresses in a `/proc/net/if_inet6`.
pub fn local_ipv6(if_inet6: &str) -> Vec<std::net::Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(std::net::Ipv6Addr::from)
        .collect()
}

/// Listening sockets (state 0A) in a `/proc/net/tcp` or `tcp6`.
pub fn parse_tcp_listeners(text: &str) -> Vec<Listener> {
    parse_tcp_listener_inodes(text).into_iter().map(|(l, _)| l).collect()
}

/// [`parse_tcp_listeners`] with each socket's inode (what a process's
/// `fd/N -> socket:[inode]` names).
pub fn parse_tcp_listener_inodes(text: &str) -> Vec<(Listener, u64)> {
    parse_tcp_table(text)
        .into_iter()
        .filter(|r| r.state == TCP_LISTEN)
        .map(|r| (Listener { addr: r.local.ip(), port: r.local.port() }, r.inode))
        .collect()
}

/// One socket of a `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    /// For a listener, its accept queue's length.
    pub rx_queue: u32,
    /// The socket's inode: 0 while no file owns it (not yet accepted).
    pub inode: u64,
}

/// Every socket in a `/proc/net/tcp` or `tcp6`, whose addresses are
/// printed as native-endian 32-bit words.
pub fn parse_tcp_table(text: &str) -> Vec<TcpRow> {
    let endpoint = |s: &str| -> Option<SocketAddr> {
        let (addr, port) = s.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
            .map(|i| addr.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok()).map(u32::to_le_bytes))
            .collect();
        let ip = match words.as_deref() {
            Some([w]) => IpAddr::V4(Ipv4Addr::from(*w)),
            Some(ws) if ws.len() == 4 => {
                let mut b = [0u8; 16];
                for (i, w) in ws.iter().enumerate() {
                    b[i * 4..i * 4 + 4].copy_from_slice(w);
                }
                let v6 = std::net::Ipv6Addr::from(b);
                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state)) = (cols.get(1), cols.get(2), cols.get(3)) else { continue };
        let (Some(local), Some(remote), Ok(state)) = (endpoint(local), endpoint(remote), u8::from_str_radix(state, 16)) else {
            continue;
        };
        let rx_queue = cols.get(4).and_then(|q| q.split_once(':')).and_then(|(_, rx)| u32::from_str_radix(rx, 16).ok()).unwrap_or(0);
        let inode = cols.get(9).and_then(|i| i.parse().ok()).unwrap_or(0);
        out.push(TcpRow { local, remote, state, rx_queue, inode });
    }
    out
}

/// The accept queue of the listener `dest` reaches (its own address or
/// the wildcard), and whether `peer`'s connection to it waits unaccepted.
pub fn listen_queue_in(rows: &[TcpRow], dest: SocketAddr, peer: SocketAddr, overflows: Option<u64>) -> Option<ListenQueue> {
    let reaches = |l: &SocketAddr| l.port() == dest.port() && (l.ip() == dest.ip() || l.ip().is_unspecified());
    let listener = rows
        .iter()
        .filter(|r| r.state == TCP_LISTEN && reaches(&r.local))
        // The exact address wins over a wildcard, as in the kernel's lookup.
        .max_by_key(|r| r.local.ip() == dest.ip())?;
    let probe_waiting = rows.iter().any(|r| {
        r.local == dest && r.remote == peer && r.inode == 0 && matches!(r.state, TCP_ESTABLISHED | TCP_CLOSE_WAIT)
    });
    Some(ListenQueue {
        listener: Listener { addr: listener.local.ip(), port: listener.local.port() },
        waiting: listener.rx_queue,
        probe_waiting,
        listen_overflows: overflows,
    })
}

/// `/proc/net/netstat` (or `snmp`): header and value lines in pairs,
/// as `Prefix.Name` -> value.
pub fn parse_netstat(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((prefix, names)), Some((prefix2, values))) = (names.split_once(':'), values.split_once(':')) else { continue };
        if prefix != prefix2 {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = value.parse() {
                out.insert(format!("{prefix}.{name}"), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded in the VM from `ipvsadm -A -t 10.200.0.1:31055 -s rr;
    // ipvsadm -a -t 10.200.0.1:31055 -r 10.200.2.2:80 -m`.
    const PROC_IP_VS_SAMPLE: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0AC80001:794F rr
  -> 0AC80202:0050      Masq    1      0          1
";

    // From a network namespace with `busybox httpd -p 127.0.0.1:8080` and
    // a listener on [::]:9090.
    const PROC_NET_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123 1 0000000000000000 100 0 0 10 0
   1: 0201C80A:1F90 0101C80A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
";
    const PROC_NET_TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000
";
    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.200.1.0/30 2 0 2
        |-- 10.200.1.0
           /30 link UNICAST
        |-- 10.200.1.2
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 10.200.1.2
           /32 host LOCAL
";

    #[test]
    fn finds_listeners_and_local_addresses_in_a_namespaces_proc_files() {
        let v4 = parse_tcp_listeners(PROC_NET_TCP);
        assert_eq!(v4, vec![Listener { addr: "127.0.0.1".parse().unwrap(), port: 8080 }]);
        let v6 = parse_tcp_listeners(PROC_NET_TCP6);
        assert_eq!(v6, vec![Listener { addr: "::".parse().unwrap(), port: 9090 }]);
        assert_eq!(v6[0].to_string(), "[::]:9090");
        let local = local_ipv4(FIB_TRIE);
        assert_eq!(local, vec!["10.200.1.2".parse::<Ipv4Addr>().unwrap(), "127.0.0.1".parse().unwrap()]);
        let v6 = local_ipv6("fd000000000000000000000000000002 03 40 00 80     eth0\n");
        assert_eq!(v6, vec!["fd00::2".parse::<std::net::Ipv6Addr>().unwrap()]);
    }

    #[test]
    fn parses_proc_ip_vs() {
        let s = parse_proc_ip_vs(PROC_IP_VS_SAMPLE);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].vip, "10.200.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s[0].vport, 31055);
        assert_eq!(s[0].reals, vec![("10.200.2.2".parse().unwrap(), 80)]);
    }

    // The bare 6.18, a pod namespace whose listener on 10.200.9.2:9000
    // (backlog 1) never accepts: two connections wait in CLOSE_WAIT, no
    // file owns them (inode 0); one more was accepted (an inode).
    const LISTEN_FULL: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0209C80A:2328 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1257504 3 000000002f325451 100 0 0 10 0
   1: 0209C80A:2328 0109C80A:E8CE 08 00000000:0000001C 00:00000000 00000000     0        0 0 1 000000001327b161 20 4 28 10 -1
   2: 0209C80A:2328 0109C80A:ED9A 08 00000000:0000001C 00:00000000 00000000     0        0 0 1 00000000c73c2fbf 20 4 28 10 -1
   3: 0209C80A:2328 0109C80A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1257999 1 00000000c73c2fc0 20 4 28 10 -1
";
    const NETSTAT: &str = "TcpExt: SyncookiesSent EmbryonicRsts ListenOverflows ListenDrops IPReversePathFilter
TcpExt: 0 0 3 3 0
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 5
";

    #[test]
    fn reads_a_listeners_accept_queue_and_who_waits_in_it() {
        let rows = parse_tcp_table(LISTEN_FULL);
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].state, rows[0].rx_queue, rows[0].inode), (0x0a, 2, 1257504));
        assert_eq!(rows[1].remote, "10.200.9.1:59598".parse().unwrap());
        let dest: SocketAddr = "10.200.9.2:9000".parse().unwrap();
        let counters = parse_netstat(NETSTAT);
        assert_eq!(counters["TcpExt.ListenOverflows"], 3);
        assert_eq!(counters["IpExt.InTruncatedPkts"], 5);
        let overflows = counters.get("TcpExt.ListenOverflows").copied();
        let q = listen_queue_in(&rows, dest, "10.200.9.1:59598".parse().unwrap(), overflows).unwrap();
        assert_eq!(q, ListenQueue { listener: Listener { addr: dest.ip(), port: 9000 }, waiting: 2, probe_waiting: true, listen_overflows: Some(3) });
        // An accepted connection is no longer waiting.
        let q = listen_queue_in(&rows, dest, "10.200.9.1:40000".parse().unwrap(), None).unwrap();
        assert!(!q.probe_waiting);
        // No listener on that port.
        assert!(listen_queue_in(&rows, "10.200.9.2:9001".parse().unwrap(), "10.200.9.1:1".parse().unwrap(), None).is_none());
        // A wildcard listener in tcp6 takes IPv4 too.
        let v6 = parse_tcp_table(PROC_NET_TCP6);
        let q = listen_queue_in(&v6, "10.200.9.2:9090".parse().unwrap(), "10.200.9.1:1".parse().unwrap(), None).unwrap();
        assert_eq!(q.listener.to_string(), "[::]:9090");
    }
}
