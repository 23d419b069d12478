//! Steps every local builder uses: fetch the ISO ([`download`]), serve answer files
//! ([`http`]), wait for SSH ([`connect`]), run the provisioners ([`provision`]) and shut the
//! guest down ([`shutdown`]).

pub mod connect;
pub mod download;
pub mod http;
pub mod provision;
pub mod shutdown;
