//! The process's open-file limit: every connection the HTTP server holds is a file
//! descriptor, and the usual soft limit of 1,024 is far below what the hard limit allows.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raise this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard limit, and
/// return the soft limit now in effect (`None` for unlimited). An unlimited hard limit leaves
/// the soft one as it is: Linux refuses an unlimited soft limit for open files.
pub fn raise_open_file_limit() -> io::Result<Option<u64>> {
    let limit = getrlimit(Resource::Nofile);
    let Some(hard) = limit.maximum else {
        return Ok(limit.current);
    };
    if limit.current.is_none_or(|soft| soft >= hard) {
        return Ok(limit.current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    )?;
    Ok(Some(hard))
}
