//! Legacy JSON templates: placeholder.
