//! HCL formatting: placeholder until written.
