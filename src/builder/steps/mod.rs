//! Steps every local builder uses: fetch the ISO ([`download`]), make the floppy
//! ([`floppy`]), serve answer files
//! ([`http`]), wait for SSH ([`connect`]), run the provisioners ([`provision`]) and shut the
//! guest down ([`shutdown`]).

pub mod connect;
pub mod download;
pub mod floppy;
pub mod http;
pub mod provision;
pub mod shutdown;
