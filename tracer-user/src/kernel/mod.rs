//! What the running kernel offers.

pub mod btf;
pub mod info;
pub mod memory;
pub mod tracefs;
