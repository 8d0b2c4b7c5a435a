//! procfs network tables: `/proc/net/ip_vs` (the NodePort audit and the
//! IPVS inference) and a namespace's `/proc/net/tcp{,6}` and `netstat`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::network::{parse_netstat, parse_proc_ip_vs, parse_tcp_listener_inodes, parse_tcp_table};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let services = parse_proc_ip_vs(&text);
    assert!(services.len() <= text.lines().count());
    parse_tcp_table(&text);
    parse_tcp_listener_inodes(&text);
    parse_netstat(&text);
});
