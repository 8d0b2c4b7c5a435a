//! IPVS taking a prober connection's reply.

use crate::EventHeader;

/// IPVS created a connection whose client/virtual pair is the reverse of a
/// prober connection: the prober's reply traffic went into a virtual service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IpvsConnEvent {
    pub header: EventHeader,
    pub af: u16,
    pub protocol: u16,
    /// Client port (the pod's port: the SYN-ACK's source).
    pub cport: u16,
    /// Virtual service port (the prober's source port).
    pub vport: u16,
    /// Real server port.
    pub dport: u16,
    pub _pad: u16,
    pub caddr: [u8; 16],
    pub vaddr: [u8; 16],
    pub daddr: [u8; 16],
}
