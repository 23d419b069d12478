//! Builders: one per source type, each turning its typed config into the list of steps the
//! pipeline runs. Steps shared by builders (HTTP server, boot command, SSH, provisioning,
//! shutdown) live in [`steps`].
