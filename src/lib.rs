//! kiln: build machine images locally from Packer templates.
//!
//! The crate is organised as the build flows (see `README.md` and the architecture notes):
//! templates are loaded and evaluated into a plan, each build runs as a pipeline of steps
//! that know how to undo themselves, and artifacts go through post-processor chains.

pub mod artifact;
pub mod aws;
pub mod builder;
pub mod child;
pub mod cli;
pub mod communicator;
pub mod config;
pub mod download;
pub mod http;
pub mod kinds;
pub mod layers;
pub mod pipeline;
pub mod postprocessor;
pub mod provisioner;
pub mod report;
pub mod template;
pub mod ui;
pub mod vmx;
