//! http-preseed: placeholder.
