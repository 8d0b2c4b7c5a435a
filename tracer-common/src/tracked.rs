//! The tracking maps' entry counts, which the kernel programs keep in a
//! global (`TRACKED_COUNTS`, the whole of `.bss`) and userspace reads to
//! tell the entries an LRU map evicted.

/// Indexes of `TRACKED_COUNTS`.
pub mod tracked_map {
    /// Entries of the `PROBE_SOCKS` map (sockets whose slot was taken).
    pub const PROBE_SOCKS: u32 = 0;
    pub const RUNTIME_TASKS: u32 = 1;
    pub const OOM_VICTIMS: u32 = 2;
    /// Claimed slots of `PROBE_SLOTS`.
    pub const PROBE_SLOTS: u32 = 3;
    /// Tracked sockets in SYN-RECV after a simultaneous open.
    pub const SIMULTANEOUS_OPENS: u32 = 4;
    /// Entries of the `PROBE_REPLIES` map (replies whose slot was taken).
    pub const PROBE_REPLIES: u32 = 5;
    /// Tracked sockets in ESTABLISHED, followed until their first close:
    /// the received-segment hook, which runs for every segment an
    /// established socket on the node gets, returns at once while none is.
    pub const ESTABLISHED_PROBES: u32 = 6;
    /// Tracked sockets whose destinations are in the drop hook's filter
    /// (not yet answered): the drop hook, which runs for every packet the
    /// node drops, returns at once while none is.
    pub const DROP_WATCHED: u32 = 7;
    pub const COUNT: u32 = 8;
}

/// The LRU maps whose entries are counted, by count index and map name: an
/// entry such a map evicts is never removed, so its count stays above the
/// entries the map holds by the number evicted.
pub const COUNTED_LRU_MAPS: [(u32, &str); 4] = [
    (tracked_map::PROBE_SOCKS, "PROBE_SOCKS"),
    (tracked_map::RUNTIME_TASKS, "RUNTIME_TASKS"),
    (tracked_map::OOM_VICTIMS, "OOM_VICTIMS"),
    (tracked_map::PROBE_REPLIES, "PROBE_REPLIES"),
];
