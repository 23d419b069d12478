//! Fetch and verify the ISO or disk image (`iso_url`/`iso_urls`, `iso_checksum`) through the
//! shared cache, showing progress (download and verification) as the build's UI allows. The fetcher is blocking I/O, so it runs on a blocking
//! thread, which stops at the next chunk when the build is cancelled: Ctrl-C leaves at most a
//! `.part` file that the next run resumes.

use std::path::Path;

use async_trait::async_trait;

use crate::config::common::IsoConfig;
use crate::download::{Cache, FetchError, Fetcher, Request};
use crate::pipeline::{BuildContext, Step, StepError};
use crate::ui::progress::Reporter;

/// Makes `ctx.iso_path` point at a verified local copy.
pub struct Download {
    iso: IsoConfig,
    /// `Disk image` or `ISO`, for messages.
    what: &'static str,
}

impl Download {
    /// A step fetching `iso`.
    pub fn new(iso: IsoConfig, what: &'static str) -> Self {
        Self { iso, what }
    }
}

#[async_trait]
impl Step for Download {
    fn name(&self) -> &'static str {
        "download"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let urls: Vec<String> = self.iso.urls().into_iter().map(str::to_owned).collect();
        let checksum = self.iso.checksum().unwrap_or_default();
        let extension = self.iso.iso_target_extension.clone();
        let target = self.iso.iso_target_path.clone().map(Into::into);
        ctx.ui.say(&format!("Retrieving {}", self.what));
        let path = with_fetcher(ctx, self.what, move |fetcher, reporter, template_dir| {
            let req = Request {
                urls: &urls,
                checksum: &checksum,
                template_dir,
                extension: &extension,
                target_path: target,
            };
            fetcher.fetch(&req, reporter)
        })
        .await?;
        ctx.ui.message(&format!("Using {}", path.display()));
        ctx.iso_path = Some(path);
        Ok(())
    }
}

/// Runs `f` on a blocking thread with a fetcher over the shared cache (offline mode and the
/// build's cancellation honoured), the build's progress reporter and the template's
/// directory. Every step that fetches an input goes through here, so they all use the cache
/// the same way. A failure is "cannot get the `what`".
pub async fn with_fetcher<T: Send + 'static>(
    ctx: &BuildContext,
    what: &str,
    f: impl FnOnce(&Fetcher, &dyn Reporter, &Path) -> Result<T, FetchError> + Send + 'static,
) -> Result<T, StepError> {
    let template_dir = ctx.template_dir.clone();
    let cwd = std::env::current_dir().unwrap_or_default();
    let (ui, cancel) = (ctx.ui.clone(), ctx.cancel.clone());
    tokio::task::spawn_blocking(move || {
        let fetcher =
            Fetcher::new(Cache::from_env(&cwd), Fetcher::offline_from_env()).with_cancel(cancel);
        f(&fetcher, &ui.reporter(), &template_dir)
    })
    .await
    .map_err(|e| StepError::msg(format!("download task failed: {e}")))?
    .map_err(|e| StepError::with(format!("cannot get the {what}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::context::testing::context;

    fn iso(url: &str, checksum: &str) -> IsoConfig {
        IsoConfig {
            iso_url: Some(url.into()),
            iso_checksum: Some(checksum.into()),
            ..IsoConfig::default()
        }
    }

    #[tokio::test]
    async fn a_local_file_with_a_matching_checksum_becomes_the_iso() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a.iso"), b"abc").unwrap();
        let mut ctx = context(t.path());
        // sha256 of "abc"
        let sum = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        Download::new(iso("a.iso", sum), "ISO")
            .run(&mut ctx)
            .await
            .unwrap();
        assert_eq!(std::fs::read(ctx.require_iso().unwrap()).unwrap(), b"abc");
    }

    #[tokio::test]
    async fn a_wrong_checksum_fails_and_sets_nothing() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a.iso"), b"abc").unwrap();
        let mut ctx = context(t.path());
        let sum = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let e = Download::new(iso("a.iso", sum), "ISO")
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("cannot get the ISO"), "{e}");
        assert!(ctx.iso_path.is_none());
    }
}
