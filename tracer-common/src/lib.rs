//! Wire format between the kernel programs (`tracer-ebpf`) and userspace
//! (`tracer-user`).
//!
//! Every record in the ring buffer starts with an [`EventHeader`]; its `kind`
//! says which struct follows. All structs are `#[repr(C)]`, have explicit
//! padding, and contain only plain integers so both sides agree on the layout
//! without any serialisation step. Ports are in host byte order, addresses in
//! network byte order (as the kernel stores them), IPv4 in the first 4 bytes.
#![no_std]

pub const TASK_COMM_LEN: usize = 16;

/// TCP states (`include/net/tcp_states.h`): the values `/proc/net/tcp` and
/// the `sock:inet_sock_set_state` tracepoint print, unchanged since Linux
/// has had them. One definition for the kernel programs and userspace.
pub mod tcp_state {
    pub const TCP_ESTABLISHED: u8 = 1;
    pub const TCP_SYN_SENT: u8 = 2;
    pub const TCP_SYN_RECV: u8 = 3;
    pub const TCP_FIN_WAIT1: u8 = 4;
    pub const TCP_FIN_WAIT2: u8 = 5;
    pub const TCP_TIME_WAIT: u8 = 6;
    pub const TCP_CLOSE: u8 = 7;
    pub const TCP_CLOSE_WAIT: u8 = 8;
    pub const TCP_LAST_ACK: u8 = 9;
    pub const TCP_LISTEN: u8 = 10;
    pub const TCP_CLOSING: u8 = 11;
    pub const TCP_NEW_SYN_RECV: u8 = 12;
}

/// Address families (`include/linux/socket.h`), as a tuple's `family`.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

mod config;
mod drop;
mod event;
mod ipvs;
mod offsets;
mod process;
mod tcp;
mod tracked;

// One flat namespace, as both sides name these types.
pub use config::*;
pub use drop::*;
pub use event::*;
pub use ipvs::*;
pub use offsets::*;
pub use process::*;
pub use tcp::*;
pub use tracked::*;

/// Copy a record out of a ring-buffer slice if it is long enough.
///
/// Returns `None` for a short slice instead of reading out of bounds.
pub fn read_record<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < core::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked above; read_unaligned has no alignment needs and
    // every T used here is a plain-integer #[repr(C)] struct.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}
