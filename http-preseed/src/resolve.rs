//! Turn a request path into what to serve, refusing anything that could reach outside the
//! served directory: `..` (plain or percent-encoded), backslashes, NUL bytes, and symlinks
//! whose target leaves the directory. Directories are not served (no listings).

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

use crate::Source;

/// What a request path names.
#[derive(Debug)]
pub(crate) enum Target<'a> {
    /// A regular file inside the served directory, by its canonical path.
    File(PathBuf),
    /// An `http_content` entry.
    Memory(&'a str),
}

/// Why a path is not served; mapped to 403 and 404.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Forbidden,
    NotFound,
}

/// Resolve the raw (still percent-encoded) request path against `source`.
pub(crate) async fn resolve<'a>(source: &'a Source, raw: &str) -> Result<Target<'a>, Refusal> {
    let segments = segments(raw)?;
    match source {
        Source::Content(map) => {
            let key = format!("/{}", segments.join("/"));
            map.get(&key)
                .map(|s| Target::Memory(s.as_str()))
                .ok_or(Refusal::NotFound)
        }
        Source::Directory(root) => resolve_file(root, &segments).await,
    }
}

/// Decode the path and split it into plain names. Decoding comes first so `%2e%2e` and `%2f`
/// are checked like their literal forms.
fn segments(raw: &str) -> Result<Vec<String>, Refusal> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Refusal::NotFound)?;
    let mut out = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(Refusal::Forbidden),
            s if s.contains(['\\', '\0']) => return Err(Refusal::Forbidden),
            s => out.push(s.to_string()),
        }
    }
    Ok(out)
}

async fn resolve_file<'a>(root: &Path, segments: &[String]) -> Result<Target<'a>, Refusal> {
    if segments.is_empty() {
        return Err(Refusal::NotFound);
    }
    let joined: PathBuf = segments.iter().fold(root.to_path_buf(), |p, s| p.join(s));
    // Canonicalising resolves every symlink on the way; the result must still be under the
    // (canonical) root, and is what gets opened, so no later symlink lookup can escape.
    let real = tokio::fs::canonicalize(&joined)
        .await
        .map_err(|_| Refusal::NotFound)?;
    if !real.starts_with(root) {
        return Err(Refusal::Forbidden);
    }
    let meta = tokio::fs::metadata(&real)
        .await
        .map_err(|_| Refusal::NotFound)?;
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(Target::File(real))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_drop_empty_and_dot() {
        assert_eq!(segments("//a/./b/").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn segments_refuse_parent_in_any_spelling() {
        for raw in [
            "/../etc/passwd",
            "/a/%2e%2e/%2E%2E/etc",
            "/a%2f..%2fb",
            "/a/..",
            "/..%5cetc",
            "/a%00b",
        ] {
            assert_eq!(segments(raw), Err(Refusal::Forbidden), "{raw}");
        }
    }

    #[test]
    fn segments_reject_invalid_utf8() {
        assert_eq!(segments("/%ff"), Err(Refusal::NotFound));
    }
}
