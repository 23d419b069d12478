//! The AWS SDKs' configuration chain, the parts a local build uses: credentials from the
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and else from
//! the shared files' profile (`AWS_PROFILE`, `~/.aws/credentials` and `~/.aws/config`, moved by
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`; the credentials file wins where both set
//! a value), the region from `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile. Role assumption,
//! SSO, `credential_process` and the EC2/ECS metadata services are not followed: a profile that
//! needs them is refused by name rather than silently skipped.
//!
//! The environment is passed in as a lookup function, so tests need not touch the process's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Looks an environment variable up; empty counts as unset, as in the SDKs.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment, for [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Why no credentials or profile could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Only half of the environment's key pair is set.
    #[error("{set} is set but {unset} is not")]
    HalfEnv {
        /// The variable that is set.
        set: &'static str,
        /// The one missing.
        unset: &'static str,
    },
    /// A shared file exists but cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The profile named by `AWS_PROFILE` is in neither shared file.
    #[error("the AWS profile {0:?} is in neither the shared credentials nor the config file")]
    NoProfile(String),
    /// The profile gets its credentials in a way kiln does not follow.
    #[error(
        "the AWS profile {profile:?} gets its credentials through {key}, which kiln does not \
         support; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or \
         aws_access_key_id and aws_secret_access_key in the profile"
    )]
    Unsupported {
        /// The profile.
        profile: String,
        /// The setting that needs it (`role_arn`, `sso_session`, …).
        key: &'static str,
    },
    /// Nothing in the chain.
    #[error(
        "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
         aws_access_key_id and aws_secret_access_key in the profile {0:?} of the shared \
         credentials file"
    )]
    None(String),
}

/// An access key pair, with the session token of temporary credentials. `Debug` shows only the
/// key id.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AKIA…`/`ASIA…`: not secret, it names the key.
    pub access_key_id: String,
    /// The secret half; never printed.
    pub secret_access_key: String,
    /// For temporary credentials; never printed.
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The selected profile's settings from both shared files.
#[derive(Clone, Default)]
pub struct Profile {
    /// The profile's name (`default` unless `AWS_PROFILE` says otherwise).
    pub name: String,
    values: BTreeMap<String, String>,
}

impl fmt::Debug for Profile {
    // The values include secret keys: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Profile {
    /// The profile `AWS_PROFILE` (or `AWS_DEFAULT_PROFILE`, else `default`) names. A missing
    /// default profile is empty; a missing named one is an error, as in the SDKs.
    pub fn load(env: Env<'_>) -> Result<Profile, CredentialsError> {
        let named = env("AWS_PROFILE").or_else(|| env("AWS_DEFAULT_PROFILE"));
        let name = named.clone().unwrap_or_else(|| "default".to_owned());
        let home = env("HOME").map(PathBuf::from).unwrap_or_default();
        let config_file = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".aws/config"));
        let credentials_file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".aws/credentials"));

        let mut found = false;
        let mut values = BTreeMap::new();
        // The config file names its sections `[profile x]` (and `[default]`), the credentials
        // file `[x]`; the credentials file is read second so that its values win.
        let config_section = |section: &str| {
            let section = section.trim();
            let bare = section.strip_prefix("profile ").map(str::trim);
            bare == Some(name.as_str()) || (section == name && name == "default")
        };
        for (path, is_ours) in [
            (&config_file, &config_section as &dyn Fn(&str) -> bool),
            (&credentials_file, &|s: &str| s.trim() == name),
        ] {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(CredentialsError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            };
            if let Some(section) = ini_section(&text, is_ours) {
                found = true;
                values.extend(section);
            }
        }
        if !found && named.is_some() {
            return Err(CredentialsError::NoProfile(name));
        }
        Ok(Profile { name, values })
    }

    /// A setting of the profile.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The keys of the first section `is_ours` accepts. Indented lines continue a nested setting
/// (`s3 =` followed by its own keys) and are skipped.
fn ini_section(text: &str, is_ours: &dyn Fn(&str) -> bool) -> Option<BTreeMap<String, String>> {
    let mut out: Option<BTreeMap<String, String>> = None;
    let mut inside = false;
    for line in text.lines() {
        let nested = line.starts_with([' ', '\t']);
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = is_ours(section);
            if inside {
                out.get_or_insert_with(BTreeMap::new);
            }
            continue;
        }
        if !inside || nested {
            continue;
        }
        if let (Some((k, v)), Some(map)) = (line.split_once('='), out.as_mut()) {
            map.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

/// The credentials of the chain: the environment's, else the profile's.
pub fn credentials(env: Env<'_>, profile: &Profile) -> Result<Credentials, CredentialsError> {
    // The Go SDK also takes the older AWS_ACCESS_KEY / AWS_SECRET_KEY spellings.
    let id = env("AWS_ACCESS_KEY_ID").or_else(|| env("AWS_ACCESS_KEY"));
    let secret = env("AWS_SECRET_ACCESS_KEY").or_else(|| env("AWS_SECRET_KEY"));
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => {
            return Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: env("AWS_SESSION_TOKEN"),
            })
        }
        (Some(_), None) => {
            return Err(CredentialsError::HalfEnv {
                set: "AWS_ACCESS_KEY_ID",
                unset: "AWS_SECRET_ACCESS_KEY",
            })
        }
        (None, Some(_)) => {
            return Err(CredentialsError::HalfEnv {
                set: "AWS_SECRET_ACCESS_KEY",
                unset: "AWS_ACCESS_KEY_ID",
            })
        }
        (None, None) => {}
    }
    if let (Some(id), Some(secret)) = (
        profile.get("aws_access_key_id"),
        profile.get("aws_secret_access_key"),
    ) {
        return Ok(Credentials {
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
            session_token: profile.get("aws_session_token").map(str::to_owned),
        });
    }
    for key in [
        "role_arn",
        "sso_session",
        "sso_start_url",
        "credential_process",
        "web_identity_token_file",
    ] {
        if profile.get(key).is_some() {
            return Err(CredentialsError::Unsupported {
                profile: profile.name.clone(),
                key,
            });
        }
    }
    Err(CredentialsError::None(profile.name.clone()))
}

/// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`.
pub fn region(env: Env<'_>, profile: &Profile) -> Option<String> {
    env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| profile.get("region").map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::aws::testing::env_of;

    /// A home directory with both shared files.
    fn home() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = sdefault\n\n\
             # a comment\n[work]\naws_access_key_id=AKIDWORK\naws_secret_access_key=swork\n\
             aws_session_token = twork\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".aws/config"),
            "[default]\nregion = eu-west-1\n[profile work]\nregion = ap-south-1\ns3 =\n  \
             region = nested\n[profile assumed]\nrole_arn = arn:aws:iam::1:role/x\n\
             source_profile = default\n[profile onlyconfig]\naws_access_key_id = AKIDCFG\n\
             aws_secret_access_key = scfg\n",
        )
        .unwrap();
        dir
    }

    fn resolve(pairs: &[(&str, &str)]) -> Result<(Credentials, Option<String>), CredentialsError> {
        let env = env_of(pairs);
        let profile = Profile::load(&env)?;
        Ok((credentials(&env, &profile)?, region(&env, &profile)))
    }

    #[test]
    fn the_environment_comes_before_the_files() {
        let h = home();
        let home = h.path().to_str().unwrap();
        let (c, region) = resolve(&[
            ("HOME", home),
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "senv"),
            ("AWS_SESSION_TOKEN", "tenv"),
            ("AWS_REGION", "us-west-2"),
        ])
        .unwrap();
        assert_eq!(c.access_key_id, "AKIDENV");
        assert_eq!(c.secret_access_key, "senv");
        assert_eq!(c.session_token.as_deref(), Some("tenv"));
        assert_eq!(region.as_deref(), Some("us-west-2"));
        assert!(!format!("{c:?}").contains("senv"));
    }

    #[test]
    fn the_default_profile_of_the_files() {
        let h = home();
        let (c, region) = resolve(&[("HOME", h.path().to_str().unwrap())]).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("AKIDDEFAULT", "sdefault")
        );
        assert_eq!(c.session_token, None);
        assert_eq!(region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn aws_profile_selects_a_profile_from_both_files() {
        let h = home();
        let home = h.path().to_str().unwrap();
        let (c, region) = resolve(&[("HOME", home), ("AWS_PROFILE", "work")]).unwrap();
        assert_eq!(c.access_key_id, "AKIDWORK");
        assert_eq!(c.session_token.as_deref(), Some("twork"));
        // The nested `s3 = region = …` is not the profile's region.
        assert_eq!(region.as_deref(), Some("ap-south-1"));
        let (c, _) = resolve(&[("HOME", home), ("AWS_PROFILE", "onlyconfig")]).unwrap();
        assert_eq!(c.access_key_id, "AKIDCFG");
        // AWS_DEFAULT_REGION comes before the profile's region.
        let (_, region) = resolve(&[
            ("HOME", home),
            ("AWS_PROFILE", "work"),
            ("AWS_DEFAULT_REGION", "sa-east-1"),
        ])
        .unwrap();
        assert_eq!(region.as_deref(), Some("sa-east-1"));
    }

    #[test]
    fn the_file_variables_move_the_files() {
        let h = home();
        let elsewhere = tempfile::tempdir().unwrap();
        let creds = elsewhere.path().join("c");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKIDMOVED\naws_secret_access_key = smoved\n",
        )
        .unwrap();
        let (c, region) = resolve(&[
            ("HOME", h.path().to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            (
                "AWS_CONFIG_FILE",
                elsewhere.path().join("none").to_str().unwrap(),
            ),
        ])
        .unwrap();
        assert_eq!(c.access_key_id, "AKIDMOVED");
        assert_eq!(region, None);
    }

    #[test]
    fn what_cannot_be_followed_is_named() {
        let h = home();
        let home = h.path().to_str().unwrap();
        let e = resolve(&[("HOME", home), ("AWS_PROFILE", "nope")]).unwrap_err();
        assert!(
            matches!(e, CredentialsError::NoProfile(ref p) if p == "nope"),
            "{e}"
        );
        let e = resolve(&[("HOME", home), ("AWS_PROFILE", "assumed")]).unwrap_err();
        assert!(e.to_string().contains("role_arn"), "{e}");
        let e = resolve(&[("HOME", "/nonexistent")]).unwrap_err();
        assert!(matches!(e, CredentialsError::None(_)), "{e}");
        let e = resolve(&[("HOME", home), ("AWS_ACCESS_KEY_ID", "AKID")]).unwrap_err();
        assert!(
            e.to_string().contains("AWS_SECRET_ACCESS_KEY is not"),
            "{e}"
        );
    }
}
