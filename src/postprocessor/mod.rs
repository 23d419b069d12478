//! postprocessor: placeholder, filled in by its owner.
