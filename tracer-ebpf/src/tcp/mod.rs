//! Prober TCP connections: connect, state changes, SYN retransmits, resets,
//! and segments arriving in SYN-SENT.
//!
//! A socket is *tracked* from the moment a prober process (comm among
//! `Config::prober_comms`) connects it until it closes without connecting,
//! or, once ESTABLISHED, until its first close by either side: a kubelet
//! probe is one short connection, and what happens after the handshake
//! (the request acknowledged, the first response byte and its status line,
//! who closed and how) says which phase failed. Every later hook fires in
//! softirq or timer context where `comm` means nothing, so they filter on
//! the tracked-socket map instead.
//!
//! The connect is reported lazily (see [`ProbeSock`]): a probe that
//! connected is one record, sent at its first close ([`TcpClosedEvent`]),
//! with the prober's pid, comm and connect time kept in the map since the
//! connect; a healthy one is only counted when no one reads that record.
//! Anything else about the socket (a retransmit, a reset, IPVS taking its
//! SYN-ACK, a close before connecting) first sends the connect record, so
//! userspace sees the same sequence as if it had been sent at once, only
//! later.
//!
//! One file per thing a reader looks for: [`tracking`] (which sockets are
//! followed), [`report`] (what their changes send), [`sock`] (reading
//! `struct sock`), and the hooks: [`connect`], [`state`], [`retransmit`],
//! [`response`].

mod connect;
mod report;
mod response;
mod retransmit;
mod sock;
mod state;
mod tracking;

// What the drop and IPVS hooks use.
pub(crate) use report::send_connect_owed;
pub(crate) use sock::{load, pointer_value};
pub(crate) use tracking::{reply_owner, tracked};
