//! twilio-cli's profiles, so a cron job or a systemd unit can use the credentials an operator
//! already keeps with `twilio login` instead of exporting secrets in a wrapper script.
//!
//! twilio-cli keeps them in `config.json` in its configuration folder (`TWILIO_CONFIG_DIR`,
//! else `~/.twilio-cli`): `profiles` maps a name to `accountSid`, `apiKey`, `apiSecret` and
//! optionally `region` and `edge`; `activeProject` names the active one. (Profiles made by an
//! older twilio-cli sit in a `projects` list and keep their secret in the system keychain,
//! which this tool cannot read; they are named in the error, never used.)
//!
//! Which credentials a command uses follows twilio-cli's precedence: the profile named by
//! `--profile` (or `TWILIO_PROFILE`), then the credential variables, then the active profile.
//! A chosen profile is handed on as the variables it stands for, so everything after it
//! (checks, messages, the preflight) is the same whichever way the credentials came.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The variables that carry credentials; when any is set, the active profile is not used.
pub(crate) const CREDENTIAL_VARS: [&str; 4] = [
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
];

/// One twilio-cli profile, as its config file holds it.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredProfile {
    account_sid: Option<String>,
    api_key: Option<String>,
    api_secret: Option<String>,
    region: Option<String>,
    edge: Option<String>,
}

/// The parts of twilio-cli's `config.json` this tool reads.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, StoredProfile>,
    /// Profiles of older twilio-cli versions, whose secrets are in the system keychain.
    #[serde(default)]
    projects: Vec<LegacyProject>,
    /// The active profile's name (twilio-cli kept the historical name).
    active_project: Option<String>,
}

#[derive(Deserialize)]
struct LegacyProject {
    id: String,
}

/// The profile a command uses, ready to stand in for the credential variables.
#[derive(Clone)]
pub(crate) struct Profile {
    pub(crate) name: String,
    /// The config file it came from, for messages.
    pub(crate) path: PathBuf,
    account_sid: Option<String>,
    api_key: String,
    api_secret: String,
    region: Option<String>,
    edge: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("account_sid", &self.account_sid)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// What the credentials' source is called in messages (a 401 names it).
    pub(crate) fn source(&self) -> String {
        format!(
            "the twilio-cli profile '{}' in {}",
            self.name,
            self.path.display()
        )
    }

    /// The environment as the profile makes it: its credentials in place of the credential
    /// variables; `TWILIO_REGION` and `TWILIO_EDGE` from the environment when set there,
    /// else the profile's; every other variable as it is.
    pub(crate) fn overlay<'a>(
        &'a self,
        env: &'a impl Fn(&str) -> Option<String>,
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| match name {
            "TWILIO_API_KEY" => Some(self.api_key.clone()),
            "TWILIO_API_SECRET" => Some(self.api_secret.clone()),
            "TWILIO_ACCOUNT_SID" => self.account_sid.clone(),
            "TWILIO_AUTH_TOKEN" => None,
            "TWILIO_REGION" => env(name)
                .filter(|v| !v.is_empty())
                .or_else(|| self.region.clone()),
            "TWILIO_EDGE" => env(name)
                .filter(|v| !v.is_empty())
                .or_else(|| self.edge.clone()),
            _ => env(name),
        }
    }
}

/// twilio-cli's config file: `$TWILIO_CONFIG_DIR/config.json`, else
/// `$HOME/.twilio-cli/config.json`; `None` when neither variable is set.
pub(crate) fn config_path(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let dir = env("TWILIO_CONFIG_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| Path::new(&home).join(".twilio-cli"))
        })?;
    Some(dir.join("config.json"))
}

/// The profile to use, by twilio-cli's precedence: `named` (from `--profile` or
/// `TWILIO_PROFILE`) always; else none when any credential variable is set; else the active
/// profile, if the config file names one. An explicitly named profile that cannot be used
/// is an error that says why; a missing or unreadable config file is one only then.
pub(crate) fn choose(
    named: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Profile>> {
    let path = config_path(env);
    if let Some(name) = named {
        let path = path.context(
            "--profile needs twilio-cli's config file, but neither TWILIO_CONFIG_DIR nor HOME \
             is set",
        )?;
        let file = read(&path)?.with_context(|| {
            format!(
                "--profile {name}: there is no twilio-cli config file at {}; create the profile \
                 with `twilio login`, or set TWILIO_CONFIG_DIR to the folder that holds it",
                path.display()
            )
        })?;
        return pick(&file, name, &path).map(Some);
    }
    let env_has_credentials = CREDENTIAL_VARS
        .iter()
        .any(|var| env(var).is_some_and(|v| !v.is_empty()));
    if env_has_credentials {
        return Ok(None);
    }
    let Some(path) = path else { return Ok(None) };
    // With no profile asked for, a config file that cannot be read leaves the choice to the
    // variables (whose absence is then the error the user sees), as if it were not there.
    let Ok(Some(file)) = read(&path) else {
        return Ok(None);
    };
    match file.active_project.as_deref() {
        Some(active) if file.profiles.contains_key(active) => pick(&file, active, &path).map(Some),
        _ => Ok(None),
    }
}

/// Reads the config file; `None` when there is none.
fn read(path: &Path) -> anyhow::Result<Option<ConfigFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => bail!(
            "cannot read twilio-cli's config file {}: {error}",
            path.display()
        ),
    };
    // serde_json's own message quotes a value of the wrong type (`invalid type: string
    // "..."`), which may be a secret: only what kind of fault it is and where is said.
    serde_json::from_str(&text).map(Some).map_err(|error| {
        use serde_json::error::Category;
        let what = match error.classify() {
            Category::Data => "a value of the wrong type or a missing one",
            Category::Syntax => "it is not valid JSON",
            Category::Eof => "it ends before its JSON does",
            Category::Io => "it cannot be read",
        };
        anyhow::anyhow!(
            "{} is not a twilio-cli config file: {what} at line {} column {}",
            path.display(),
            error.line(),
            error.column()
        )
    })
}

/// The profile `name` of `file`, with its API key pair.
fn pick(file: &ConfigFile, name: &str, path: &Path) -> anyhow::Result<Profile> {
    let Some(stored) = file.profiles.get(name) else {
        if file.projects.iter().any(|project| project.id == name) {
            bail!(
                "the twilio-cli profile '{name}' in {} keeps its API secret in the system \
                 keychain (a profile made by an older twilio-cli), which this tool cannot read; \
                 make it again with `twilio profiles:create`, or set TWILIO_API_KEY and \
                 TWILIO_API_SECRET",
                path.display()
            );
        }
        let names: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
        let has = if names.is_empty() {
            "it has none".to_string()
        } else {
            format!("it has: {}", names.join(", "))
        };
        bail!(
            "there is no twilio-cli profile '{name}' in {} ({has})",
            path.display()
        );
    };
    let nonempty = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
    let (Some(api_key), Some(api_secret)) =
        (nonempty(&stored.api_key), nonempty(&stored.api_secret))
    else {
        bail!(
            "the twilio-cli profile '{name}' in {} has no API key and secret; make it again \
             with `twilio profiles:create`",
            path.display()
        );
    };
    Ok(Profile {
        name: name.to_string(),
        path: path.to_path_buf(),
        account_sid: nonempty(&stored.account_sid),
        api_key: api_key.trim().to_string(),
        api_secret,
        region: nonempty(&stored.region),
        edge: nonempty(&stored.edge),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "edge": null,
        "projects": [{"id": "old", "accountSid": "AC11111111111111111111111111111111"}],
        "profiles": {
            "prod": {"accountSid": "AC22222222222222222222222222222222",
                     "apiKey": "SK22222222222222222222222222222222", "apiSecret": "prod-secret",
                     "region": "ie1", "edge": "dublin"},
            "staging": {"accountSid": "AC33333333333333333333333333333333",
                        "apiKey": "SK33333333333333333333333333333333", "apiSecret": "staging-secret"}
        },
        "activeProject": "staging"
    }"#;

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), CONFIG).unwrap();
        dir
    }

    fn env_with(
        dir: &Path,
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        let dir = dir.display().to_string();
        move |name: &str| {
            if name == "TWILIO_CONFIG_DIR" {
                return Some(dir.clone());
            }
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_flag_wins_then_the_variables_then_the_active_profile() {
        let dir = folder();
        let with_vars = env_with(
            dir.path(),
            &[("TWILIO_AUTH_TOKEN", "t"), ("TWILIO_ACCOUNT_SID", "ACx")],
        );
        let named = choose(Some("prod"), &with_vars).unwrap().unwrap();
        assert_eq!(named.name, "prod");
        let overlaid = named.overlay(&with_vars);
        assert_eq!(
            overlaid("TWILIO_API_KEY").unwrap(),
            "SK22222222222222222222222222222222"
        );
        assert_eq!(overlaid("TWILIO_AUTH_TOKEN"), None);
        assert_eq!(overlaid("TWILIO_REGION").unwrap(), "ie1");
        assert!(choose(None, &with_vars).unwrap().is_none());
        let bare = env_with(dir.path(), &[]);
        assert_eq!(choose(None, &bare).unwrap().unwrap().name, "staging");
    }

    #[test]
    fn region_and_edge_from_the_environment_override_the_profiles() {
        let dir = folder();
        let env = env_with(dir.path(), &[("TWILIO_REGION", "au1")]);
        let profile = choose(Some("prod"), &env).unwrap().unwrap();
        let overlaid = profile.overlay(&env);
        assert_eq!(overlaid("TWILIO_REGION").unwrap(), "au1");
        assert_eq!(overlaid("TWILIO_EDGE").unwrap(), "dublin");
    }

    #[test]
    fn a_profile_that_cannot_be_used_says_why_and_shows_no_secret() {
        let dir = folder();
        let env = env_with(dir.path(), &[]);
        let missing = format!("{:#}", choose(Some("qa"), &env).unwrap_err());
        assert!(missing.contains("no twilio-cli profile 'qa'"), "{missing}");
        assert!(missing.contains("it has: prod, staging"), "{missing}");
        let legacy = format!("{:#}", choose(Some("old"), &env).unwrap_err());
        assert!(legacy.contains("system keychain"), "{legacy}");
        for message in [&missing, &legacy] {
            assert!(!message.contains("secret\""), "{message}");
            assert!(!message.contains("prod-secret"), "{message}");
        }
        let profile = choose(Some("prod"), &env).unwrap().unwrap();
        assert!(!format!("{profile:?}").contains("prod-secret"));
        let empty = tempfile::tempdir().unwrap();
        let none = format!(
            "{:#}",
            choose(Some("prod"), &env_with(empty.path(), &[])).unwrap_err()
        );
        assert!(none.contains("no twilio-cli config file"), "{none}");
        // Without --profile, no file is no profile.
        assert!(
            choose(None, &env_with(empty.path(), &[]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_config_file_of_the_wrong_shape_is_refused_without_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_with(dir.path(), &[]);
        for (json, what) in [
            (r#"{"profiles": {"prod": "prod-secret"}}"#, "wrong type"),
            (
                r#"{"profiles": {"prod": {"apiSecret": 73556087}}}"#,
                "wrong type",
            ),
            (
                r#"{"profiles": {"prod": {"apiSecret": "prod-secret""#,
                "ends before",
            ),
            (r#"{"profiles": prod-secret}"#, "not valid JSON"),
        ] {
            std::fs::write(dir.path().join("config.json"), json).unwrap();
            let error = format!("{:#}", choose(Some("prod"), &env).unwrap_err());
            assert!(error.contains(what) && error.contains("line 1"), "{error}");
            assert!(
                !error.contains("prod-secret") && !error.contains("73556087"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_config_folder_is_twilio_config_dir_else_home() {
        let home = |name: &str| (name == "HOME").then(|| "/home/op".to_string());
        assert_eq!(
            config_path(&home).unwrap(),
            Path::new("/home/op/.twilio-cli/config.json")
        );
        assert_eq!(config_path(&|_: &str| None), None);
    }
}
