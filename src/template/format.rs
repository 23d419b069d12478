//! HCL formatting. Placeholder until the formatter lands.
