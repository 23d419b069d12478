//! VirtualBox's guest additions, as Packer's VirtualBox builders deliver them
//! (`guest_additions_mode`): fetched before the VM is made ([`DownloadGuestAdditions`]), then
//! either attached as a second DVD (`attach`, by the ISO-attaching step, which reads the path
//! from the [`Shared`] record) or uploaded over the communicator after it connects
//! ([`UploadGuestAdditions`], `upload`, Packer's default). `disable` does neither.
//!
//! Where the ISO comes from, in Packer's order: `guest_additions_url` (with `{{ .Version }}`)
//! if set; else the ISO the host's VirtualBox ships, as `list systemproperties` names it; else
//! VirtualBox's download site for the host's version. It is checked against
//! `guest_additions_sha256`, or else against the `SHA256SUMS` list VirtualBox publishes for
//! that version. Everything goes through kiln's download cache, so offline mode works once the
//! ISO is cached (or imported with `kiln cache import`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::driver::{default_additions_iso, Driver, VBoxOp};
use super::steps::{version, with, Shared};
use crate::builder::steps::download::with_fetcher;
use crate::config::virtualbox::VirtualBoxCommon;
use crate::download::{FetchError, Fetcher, Request};
use crate::pipeline::{BuildContext, Step, StepError};
use crate::ui::progress::Reporter;

/// Where VirtualBox publishes each version's files (Packer's default location).
const DOWNLOAD_SITE: &str = "https://download.virtualbox.org/virtualbox";

/// What to fetch: the ISO's URL and how to verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    url: String,
    check: Check,
}

/// How the fetched ISO is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    /// `guest_additions_sha256`.
    Sha256(String),
    /// The digest listed for `name` in the checksum list at `list`.
    Listed { list: String, name: String },
}

impl Plan {
    /// The plan for `cfg` on VirtualBox `version` (`7.1.4`), with `url` already rendered
    /// (empty when unset).
    fn new(cfg: &VirtualBoxCommon, version: &str, url: String) -> Self {
        let name = format!("VBoxGuestAdditions_{version}.iso");
        let check = match &cfg.guest_additions_sha256 {
            Some(sum) if !sum.is_empty() => Check::Sha256(sum.to_ascii_lowercase()),
            // Packer's list is VirtualBox's, looked up by the ISO's published name, whatever
            // guest_additions_url names.
            _ => Check::Listed {
                list: format!("{DOWNLOAD_SITE}/{version}/SHA256SUMS"),
                name: name.clone(),
            },
        };
        let url = if url.is_empty() {
            format!("{DOWNLOAD_SITE}/{version}/{name}")
        } else {
            url
        };
        Plan { url, check }
    }

    /// Fetch and verify the ISO with `fetcher`; its path in the cache (or on disk).
    fn fetch(
        &self,
        fetcher: &Fetcher,
        reporter: &dyn Reporter,
        template_dir: &Path,
    ) -> Result<PathBuf, FetchError> {
        let checksum = match &self.check {
            Check::Sha256(hex) => format!("sha256:{hex}"),
            Check::Listed { list, name } => fetcher
                .resolve_checksum(&format!("file:{list}"), name, template_dir, reporter)?
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
        };
        let req = Request {
            urls: std::slice::from_ref(&self.url),
            checksum: &checksum,
            template_dir,
            extension: "iso",
            target_path: None,
        };
        fetcher.fetch(&req, reporter)
    }
}

/// `{{ .Version }}` for the guest additions options.
fn render_with_version(option: &str, text: &str, version: &str) -> Result<String, StepError> {
    let values = BTreeMap::from([("Version".to_owned(), version.to_owned())]);
    boot_commands::render(text, &values)
        .map_err(|e| StepError::with(format!("cannot render {option}"), e))
}

/// Fetch the guest additions ISO (unless `guest_additions_mode = "disable"`) and record its
/// path in [`Shared`] for the attach and upload steps.
pub struct DownloadGuestAdditions {
    cfg: Arc<VirtualBoxCommon>,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl DownloadGuestAdditions {
    /// The step for `cfg`, recording the ISO in `shared`.
    pub fn new(cfg: Arc<VirtualBoxCommon>, driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            cfg,
            driver,
            shared,
        }
    }
}

#[async_trait]
impl Step for DownloadGuestAdditions {
    fn name(&self) -> &'static str {
        "download guest additions"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.cfg.guest_additions_mode == "disable" {
            return Ok(());
        }
        let d = self.driver.as_ref();
        let v = version(d).await?.to_string();
        let url = render_with_version(
            "guest_additions_url",
            self.cfg.guest_additions_url.as_deref().unwrap_or_default(),
            &v,
        )?;
        if url.is_empty() {
            // The ISO the host's VirtualBox ships needs no download and no checksum.
            let props = d.run(&VBoxOp::ListSystemProperties).await;
            if let Some(iso) = props.ok().as_deref().and_then(default_additions_iso) {
                if iso.is_file() {
                    ctx.ui.say(&format!(
                        "Using the guest additions of VirtualBox at {}",
                        iso.display()
                    ));
                    with(&self.shared, |a| a.additions = Some(iso));
                    return Ok(());
                }
            }
        }
        let plan = Plan::new(&self.cfg, &v, url);
        ctx.ui.say("Retrieving guest additions");
        let path = with_fetcher(ctx, "guest additions", move |fetcher, reporter, dir| {
            plan.fetch(fetcher, reporter, dir)
        })
        .await?;
        ctx.ui.message(&format!("Using {}", path.display()));
        with(&self.shared, |a| a.additions = Some(path));
        Ok(())
    }
}

/// Upload the guest additions ISO to `guest_additions_path` in the guest (with
/// `{{ .Version }}`), with `guest_additions_mode = "upload"`.
pub struct UploadGuestAdditions {
    cfg: Arc<VirtualBoxCommon>,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl UploadGuestAdditions {
    /// The step for `cfg`, uploading the ISO recorded in `shared`.
    pub fn new(cfg: Arc<VirtualBoxCommon>, driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            cfg,
            driver,
            shared,
        }
    }
}

#[async_trait]
impl Step for UploadGuestAdditions {
    fn name(&self) -> &'static str {
        "upload guest additions"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        // No communicator (`communicator = "none"`, refused with upload at validate time).
        let ("upload", Some(comm)) = (
            self.cfg.guest_additions_mode.as_str(),
            ctx.communicator.clone(),
        ) else {
            return Ok(());
        };
        let iso = with(&self.shared, |a| a.additions.clone()).ok_or(StepError::MissingState {
            key: "the guest additions ISO",
            producer: "download guest additions",
        })?;
        let v = version(self.driver.as_ref()).await?.to_string();
        let dest = render_with_version("guest_additions_path", &self.cfg.guest_additions_path, &v)?;
        let mut file = tokio::fs::File::open(&iso).await.map_err(|e| {
            StepError::with(
                format!("cannot open the guest additions ISO {}", iso.display()),
                e,
            )
        })?;
        ctx.ui.say("Uploading VirtualBox guest additions ISO...");
        comm.upload(&mut file, &dest, 0o644)
            .await
            .map_err(|e| StepError::with(format!("cannot upload the guest additions to {dest}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::driver::testing::FakeDriver;
    use super::super::steps::{AttachIsos, RemoveDevices};
    use super::*;
    use crate::communicator::testing::FakeCommunicator;
    use crate::download::Cache;
    use crate::pipeline::context::testing::context;

    /// A sha256 digest that `ga.iso` does not have.
    const WRONG_SUM: &str = "5b3e1c5d3a6d2b14b8f6e3b9ab1b7e0c7b0bd6c0f3c0d6d0b4bd0e5f0a3b0c1d";

    struct Setup {
        _t: tempfile::TempDir,
        ctx: BuildContext,
        sum: String,
    }

    /// A build context in a temporary template directory holding `ga.iso`, with a boot ISO,
    /// the VM's name, and the sha256 of `ga.iso`.
    fn setup() -> Setup {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("ga.iso"), b"additions").unwrap();
        std::fs::write(t.path().join("boot.iso"), b"boot").unwrap();
        let mut ctx = context(t.path());
        ctx.vm_name = Some("vm".into());
        ctx.iso_path = Some(std::fs::canonicalize(t.path().join("boot.iso")).unwrap());
        // sha256 of `additions`.
        let sum = "ea32cae4a7df15489a854dc00b48b335f764f62d9132db100e03e65f957d975a".to_owned();
        Setup { _t: t, ctx, sum }
    }

    fn cfg(f: impl FnOnce(&mut VirtualBoxCommon)) -> Arc<VirtualBoxCommon> {
        let mut c = VirtualBoxCommon::default();
        f(&mut c);
        Arc::new(c)
    }

    #[test]
    fn the_default_url_and_checksum_list_are_virtualbox_s_for_the_version() {
        let p = Plan::new(&VirtualBoxCommon::default(), "7.1.4", String::new());
        assert_eq!(
            p.url,
            "https://download.virtualbox.org/virtualbox/7.1.4/VBoxGuestAdditions_7.1.4.iso"
        );
        assert_eq!(
            p.check,
            Check::Listed {
                list: "https://download.virtualbox.org/virtualbox/7.1.4/SHA256SUMS".into(),
                name: "VBoxGuestAdditions_7.1.4.iso".into()
            }
        );
        let c = cfg(|c| c.guest_additions_sha256 = Some("ABC".into()));
        let p = Plan::new(&c, "7.1.4", "ga.iso".into());
        assert_eq!(
            (p.url.as_str(), p.check),
            ("ga.iso", Check::Sha256("abc".into()))
        );
    }

    #[test]
    fn offline_with_nothing_cached_names_the_checksum_list_and_tries_no_network() {
        let t = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(Cache::new(t.path().join("cache")), true);
        let reporter = crate::ui::progress::Silent;
        let p = Plan::new(&VirtualBoxCommon::default(), "7.1.4", String::new());
        let e = crate::report::chain(&p.fetch(&fetcher, &reporter, t.path()).unwrap_err());
        assert!(
            e.contains("offline mode (KILN_OFFLINE) forbids fetching https://download.virtualbox.org/virtualbox/7.1.4/SHA256SUMS"),
            "{e}"
        );
        // With the digest given, the ISO itself is what offline mode cannot fetch.
        let c = cfg(|c| c.guest_additions_sha256 = Some(WRONG_SUM.into()));
        let p = Plan::new(&c, "7.1.4", String::new());
        let e = crate::report::chain(&p.fetch(&fetcher, &reporter, t.path()).unwrap_err());
        assert!(
            e.contains("forbids fetching https://download.virtualbox.org/virtualbox/7.1.4/VBoxGuestAdditions_7.1.4.iso")
                && e.contains("kiln cache import"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_local_url_with_its_sha256_is_fetched_and_uploaded_with_the_version() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let shared = Shared::default();
        let c = cfg(|c| {
            c.guest_additions_url = Some("ga.iso".into());
            c.guest_additions_sha256 = Some(s.sum.to_ascii_uppercase());
            c.guest_additions_path = "VBoxGuestAdditions_{{ .Version }}.iso".into();
        });
        DownloadGuestAdditions::new(c.clone(), d.clone(), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        let iso = with(&shared, |a| a.additions.clone()).unwrap();
        assert_eq!(std::fs::read(&iso).unwrap(), b"additions");
        assert!(
            d.calls().is_empty(),
            "a URL is given: VirtualBox is not asked"
        );

        // Nothing to upload to before the communicator connects.
        let mut up = UploadGuestAdditions::new(c, d.clone(), shared);
        up.run(&mut s.ctx).await.unwrap();
        let comm = Arc::new(FakeCommunicator::default());
        s.ctx.communicator = Some(comm.clone());
        up.run(&mut s.ctx).await.unwrap();
        assert_eq!(comm.commands(), ["upload VBoxGuestAdditions_7.1.0.iso"]);
    }

    #[tokio::test]
    async fn a_checksum_mismatch_fails_the_step_and_records_no_iso() {
        let mut s = setup();
        let shared = Shared::default();
        let c = cfg(|c| {
            c.guest_additions_url = Some("ga.iso".into());
            c.guest_additions_sha256 = Some(WRONG_SUM.into());
        });
        let e = DownloadGuestAdditions::new(c, Arc::new(FakeDriver::default()), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("cannot get the guest additions"), "{e}");
        assert!(with(&shared, |a| a.additions.is_none()));
    }

    #[tokio::test]
    async fn the_iso_virtualbox_ships_is_used_when_no_url_is_set() {
        let mut s = setup();
        let ga = s.ctx.template_dir.join("ga.iso");
        let d = Arc::new(FakeDriver::default());
        d.answer_on(
            "list systemproperties",
            &format!(
                "API version:                     7_1\nDefault Guest Additions ISO:     {}\n",
                ga.display()
            ),
        );
        let shared = Shared::default();
        DownloadGuestAdditions::new(cfg(|_| {}), d.clone(), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(d.commands(), ["list systemproperties"]);
        assert_eq!(with(&shared, |a| a.additions.clone()), Some(ga));
    }

    #[tokio::test]
    async fn disable_fetches_nothing_and_attach_uploads_nothing() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let shared = Shared::default();
        let c = cfg(|c| c.guest_additions_mode = "disable".into());
        DownloadGuestAdditions::new(c, d.clone(), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert!(d.calls().is_empty() && with(&shared, |a| a.additions.is_none()));
        let comm = Arc::new(FakeCommunicator::default());
        s.ctx.communicator = Some(comm.clone());
        with(&shared, |a| {
            a.additions = Some(s.ctx.template_dir.join("ga.iso"))
        });
        let c = cfg(|c| c.guest_additions_mode = "attach".into());
        UploadGuestAdditions::new(c, d, shared)
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert!(comm.commands().is_empty());
    }

    #[tokio::test]
    async fn attach_puts_the_additions_in_a_second_dvd_drive_and_removes_it_after() {
        for (interface, slot) in [
            (None, "IDE --port 1 --device 0"),
            (Some("sata"), "SATA --port 14 --device 0"),
        ] {
            let mut s = setup();
            let ga = std::fs::canonicalize(s.ctx.template_dir.join("ga.iso")).unwrap();
            let boot = s.ctx.iso_path.clone().unwrap();
            let d = Arc::new(FakeDriver::default());
            let shared = Shared::default();
            with(&shared, |a| a.additions = Some(ga.clone()));
            let c = cfg(|c| {
                c.guest_additions_mode = "attach".into();
                c.guest_additions_interface = interface.map(Into::into);
            });
            let mut isos = AttachIsos::new(c, Some("ide".into()), d.clone(), shared.clone());
            isos.run(&mut s.ctx).await.unwrap();
            RemoveDevices::new(false, d.clone(), shared.clone())
                .run(&mut s.ctx)
                .await
                .unwrap();
            isos.cleanup(&mut s.ctx).await.unwrap();
            assert_eq!(
                d.commands(),
                [
                    format!("storageattach vm --storagectl IDE --port 0 --device 1 --type dvddrive --medium {}", boot.display()),
                    format!("storageattach vm --storagectl {slot} --type dvddrive --medium {}", ga.display()),
                    "storageattach vm --storagectl IDE --port 0 --device 1 --type dvddrive --medium none".into(),
                    format!("storageattach vm --storagectl {slot} --type dvddrive --medium none"),
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_build_that_fails_after_attach_detaches_the_additions_in_cleanup() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let shared = Shared::default();
        with(&shared, |a| {
            a.additions = Some(s.ctx.template_dir.join("ga.iso"))
        });
        let c = cfg(|c| c.guest_additions_mode = "attach".into());
        let mut isos = AttachIsos::new(c, Some("ide".into()), d.clone(), shared);
        isos.run(&mut s.ctx).await.unwrap();
        isos.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(
            d.commands()[3],
            "storageattach vm --storagectl IDE --port 1 --device 0 --type dvddrive --medium none"
        );
    }
}
