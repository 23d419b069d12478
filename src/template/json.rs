//! Legacy JSON templates: placeholder until written.
