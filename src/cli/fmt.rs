//! `kiln fmt`: placeholder until written.
