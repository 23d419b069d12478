//! boot-commands: placeholder.
