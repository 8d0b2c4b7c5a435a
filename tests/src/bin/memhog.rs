//! Allocates and touches MIB mebibytes, then exits 0: the OOM scenario's
//! victim. Copied under another name (`containerd-shim`) to play a runtime
//! component. Usage: memhog MIB
use std::{env, thread, time::Duration};

fn main() {
    let mib: usize = env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for _ in 0..mib {
        // Touch every page so the memory is really charged to the cgroup.
        chunks.push(vec![1u8; 1 << 20]);
    }
    thread::sleep(Duration::from_millis(100));
    println!("allocated {} MiB", chunks.len());
}
