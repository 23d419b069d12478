//! Where an `iso_url` points. Relative paths are resolved against the template's directory, as
//! Packer does, so a template runs the same from any working directory.

use std::path::{Path, PathBuf};

/// A parsed `iso_url` / `iso_urls` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on this machine (a plain path or a `file://` URL).
    Local(PathBuf),
    /// An `http://` or `https://` URL.
    Remote(String),
}

/// Why an `iso_url` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("unsupported URL scheme `{scheme}` in `{url}`\nhint: kiln fetches http://, https:// and file:// URLs and plain paths")]
    Scheme { scheme: String, url: String },
}

impl Source {
    /// Parses `url`; a relative local path is taken relative to `template_dir`.
    pub fn parse(url: &str, template_dir: &Path) -> Result<Self, SourceError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("file://") {
            return Ok(Source::Local(resolve(Path::new(rest), template_dir)));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Source::Remote(url.to_string()));
        }
        match url.split_once("://") {
            Some((scheme, _)) => Err(SourceError::Scheme {
                scheme: scheme.to_string(),
                url: url.to_string(),
            }),
            None => Ok(Source::Local(resolve(Path::new(url), template_dir))),
        }
    }

    /// The file name the source ends in, used to look it up in a checksum list.
    pub fn file_name(&self) -> String {
        let text = match self {
            Source::Local(path) => path.to_string_lossy().into_owned(),
            Source::Remote(url) => url.split(['?', '#']).next().unwrap_or(url).to_string(),
        };
        text.rsplit('/').next().unwrap_or(&text).to_string()
    }
}

fn resolve(path: &Path, template_dir: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        template_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_relative_to_the_template() {
        let dir = Path::new("/t");
        assert_eq!(
            Source::parse("iso/x.iso", dir).unwrap(),
            Source::Local("/t/iso/x.iso".into())
        );
        assert_eq!(
            Source::parse("/abs/x.iso", dir).unwrap(),
            Source::Local("/abs/x.iso".into())
        );
        assert_eq!(
            Source::parse("file:///abs/x.iso", dir).unwrap(),
            Source::Local("/abs/x.iso".into())
        );
        assert_eq!(
            Source::parse("file://rel.iso", dir).unwrap(),
            Source::Local("/t/rel.iso".into())
        );
    }

    #[test]
    fn remote_urls_and_bad_schemes() {
        let s = Source::parse("https://m.invalid/d/debian.iso?x=1", Path::new("/")).unwrap();
        assert_eq!(
            s,
            Source::Remote("https://m.invalid/d/debian.iso?x=1".into())
        );
        assert_eq!(s.file_name(), "debian.iso");
        let err = Source::parse("ftp://m.invalid/x.iso", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unsupported URL scheme `ftp` in `ftp://m.invalid/x.iso`"),
            "{err}"
        );
    }
}
