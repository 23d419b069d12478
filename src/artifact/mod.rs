//! artifact: placeholder, filled in by its owner.
