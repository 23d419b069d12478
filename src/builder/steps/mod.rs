//! Steps every local builder uses, in the order a VM build runs them: fetch the ISO
//! ([`download`]), make the output directory ([`output_dir`]), the floppy ([`floppy`]) and the
//! CD ([`cd`]), serve answer files ([`http`]), pick host ports ([`ports`]), type the boot
//! command ([`boot`]), wait for SSH ([`connect`]), run the provisioners ([`provision`]) and shut
//! the guest down ([`shutdown`]). They read and write the typed
//! [`BuildContext`](crate::pipeline::BuildContext) and reach the VM only through
//! [`Machine`](crate::pipeline::Machine), so a new hypervisor reuses all of them.

pub mod boot;
pub mod cd;
pub mod connect;
pub mod download;
pub mod floppy;
pub mod http;
pub mod layers;
pub mod output_dir;
pub mod ports;
pub mod provision;
pub mod shutdown;
