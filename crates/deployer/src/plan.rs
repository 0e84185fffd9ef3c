//! Pure decisions, kept apart from any I/O so they are unit-tested: which names are valid, which
//! version and port a deploy uses, what the deployer is about to do.

use std::cmp::Ordering;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::facts::{DEFAULT_HOST_PORT, PRODUCT};
/// Environments offered first; any name of the same shape is accepted.
pub const SUGGESTED_ENVS: [&str; 3] = ["dev", "qa", "prod"];

/// An environment name: lowercase letters, digits and `-`, starting with a letter, at most 40
/// characters (it becomes part of Compose project, container and volume names).
pub fn parse_env(name: &str) -> Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(Error::usage(format!(
            "invalid environment name {name:?}: use lowercase letters, digits and '-', starting with a letter \
             (e.g. {})",
            SUGGESTED_ENVS.join(", ")
        )))
    }
}

/// An image version: a valid Docker tag (letters, digits, `_`, `.`, `-`; at most 128 characters,
/// not starting with `.` or `-`).
pub fn parse_version(version: &str) -> Result<String> {
    let valid = !version.is_empty()
        && version.len() <= 128
        && !version.starts_with(['.', '-'])
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(version.to_string())
    } else {
        Err(Error::usage(format!(
            "invalid version {version:?}: it must be a Docker tag (letters, digits, '_', '.', '-'), e.g. 1.2.0"
        )))
    }
}

/// A release version is plain `MAJOR.MINOR.PATCH`; anything else (`1.2.0-rc.1`, `dev`) is a
/// pre-release that may be built from a dirty tree.
pub fn is_release_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// The Compose project of an environment: stable, so every command finds the same containers.
pub fn project_name(env: &str) -> String {
    format!("{PRODUCT}-{env}")
}

/// `--port`, else the port the environment's last release used, else the default. A port 0 (only a
/// hand-edited ledger holds one: `--port` refuses it) is no port to publish on and is skipped.
pub fn choose_port(flag: Option<u16>, last_release_port: Option<u16>) -> u16 {
    flag.or(last_release_port.filter(|port| *port != 0))
        .unwrap_or(DEFAULT_HOST_PORT)
}

/// Parses a timeout: humantime's forms (`90s`, `2m`, `1m30s`, `1.5m`, `500ms`) or a bare number of
/// seconds (`90`, as Compose and Kubernetes users write it). Zero is refused: nothing is healthy at once.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err(format!(
            "invalid duration {text:?}: it must be longer than zero, e.g. 90s, 2m, 1m30s"
        )),
        Err(why) => Err(format!(
            "invalid duration {text:?} ({why}): use e.g. 90s, 2m, 1m30s"
        )),
    }
}

/// Orders versions the way a person expects: numeric parts as numbers (`1.10.0` after `1.9.0`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let key = |v: &str| -> Vec<(u64, String)> {
        v.split(['.', '-', '_'])
            .map(|part| match part.parse::<u64>() {
                Ok(n) => (n, String::new()),
                Err(_) => (0, part.to_string()),
            })
            .collect()
    };
    key(a).cmp(&key(b))
}

/// The versions the interactive mode offers: the running one first (the default), then the
/// locally available ones, newest first. `sha-*` tags are aliases of other versions and `latest`
/// says nothing, so both are left out.
pub fn version_choices(running: Option<&str>, local: &[String]) -> Vec<String> {
    let mut others: Vec<String> = local
        .iter()
        .filter(|v| Some(v.as_str()) != running)
        .filter(|v| !v.starts_with("sha-") && v.as_str() != "latest" && v.as_str() != "<none>")
        .cloned()
        .collect();
    others.sort_by(|a, b| compare_versions(b, a));
    others.dedup();
    running
        .map(str::to_string)
        .into_iter()
        .chain(others)
        .collect()
}

/// The image a Compose stack service runs, and whether it is the air-gapped stand-in chosen because
/// the default image is not in the local engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackImage {
    pub image: String,
    pub standin: bool,
}

/// The image of a stack service (database, proxy): the one the user chose (flag or variable), else
/// `default`, except that the air-gapped `standin` replaces a `default` the engine lacks when the
/// engine holds the stand-in (`present`: `Some(here)`, `None` when the engine cannot tell; the
/// default stays then, and its absence is reported where it is needed).
pub fn stack_image(
    chosen: Option<&str>,
    default: &str,
    standin: &str,
    present: &dyn Fn(&str) -> Option<bool>,
) -> StackImage {
    if let Some(image) = chosen.filter(|image| !image.trim().is_empty()) {
        return StackImage {
            image: image.to_string(),
            standin: false,
        };
    }
    let standin_instead = present(default) == Some(false) && present(standin) == Some(true);
    StackImage {
        image: if standin_instead { standin } else { default }.to_string(),
        standin: standin_instead,
    }
}

/// The one line saying which stand-ins replace which missing default images, if any.
pub fn standin_note(chosen: &[(&str, &str, &StackImage)]) -> Option<String> {
    let used: Vec<String> = chosen
        .iter()
        .filter(|(_, _, choice)| choice.standin)
        .map(|(what, default, choice)| format!("{} instead of {default} ({what})", choice.image))
        .collect();
    (!used.is_empty()).then(|| {
        format!(
            "using the air-gapped stand-in of an image not in the local engine: {} \
             (--db-image / --proxy-image choose others)",
            used.join(", ")
        )
    })
}

/// An environment, whatever runs in it: where it lives and what it is made of. `status`, `down`,
/// `logs` and `doctor` need only this; a deploy adds a [`Release`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// The app image repository (`infra-challenge`, or `registry/infra-challenge`).
    pub app_repository: String,
    pub db_image: String,
    /// The reverse proxy's image (Compose).
    pub proxy_image: String,
    /// The host port the app is published on (Compose).
    pub port: u16,
    /// Where the environment's generated secrets live on this machine (Compose).
    pub secrets_dir: PathBuf,
}

impl Environment {
    /// The Compose project of the environment.
    pub fn project(&self) -> String {
        project_name(&self.name)
    }

    /// The URL the app is published on (Compose).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A release of `version` in this environment.
    pub fn release(&self, version: &str) -> Release {
        Release {
            version: version.to_string(),
            image: format!("{}:{version}", self.app_repository),
            manifests: None,
            replicas: None,
        }
    }
}

/// One release: the version and image to run, and when it is a return to an earlier release on a
/// target that records what it applied, exactly that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    /// `repository:version`.
    pub image: String,
    /// What an earlier release applied (from its record): re-applied as is instead of rendering.
    pub manifests: Option<String>,
    /// How many app containers it runs (Compose: `--replicas`, or the count its record kept); `None`
    /// until the target chose (its default), and where the target does not set it (Kubernetes).
    pub replicas: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_become_compose_project_names() {
        assert_eq!(parse_env("dev").unwrap(), "dev");
        assert_eq!(
            project_name(&parse_env("e2e-42-a").unwrap()),
            "infra-challenge-e2e-42-a"
        );
        for bad in ["", "Dev", "1dev", "dev-", "de v", "dev_x", &"a".repeat(41)] {
            assert!(parse_env(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions_must_be_docker_tags() {
        for good in ["1.2.3", "1.2.3-rc.1", "sha-abc1234", "V1", "e2e_2"] {
            assert!(parse_version(good).is_ok(), "{good:?} rejected");
        }
        for bad in ["", "-1", ".1", "1.2/3", "a:b", &"1".repeat(129)] {
            assert!(parse_version(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn release_versions_are_plain_semver() {
        assert!(is_release_version("1.2.3"));
        assert!(is_release_version("0.10.0"));
        for pre in ["1.2.3-rc.1", "1.2", "dev", "1.2.x", "sha-abc"] {
            assert!(!is_release_version(pre), "{pre}");
        }
    }

    #[test]
    fn port_comes_from_flag_then_last_release_then_default() {
        assert_eq!(choose_port(Some(9000), Some(8081)), 9000);
        assert_eq!(choose_port(None, Some(8081)), 8081);
        assert_eq!(choose_port(None, None), DEFAULT_HOST_PORT);
        assert_eq!(choose_port(None, Some(0)), DEFAULT_HOST_PORT);
    }

    #[test]
    fn durations_accept_bare_seconds_and_humantime_forms_but_not_zero() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration(" 2m 5s ").unwrap(), Duration::from_secs(125));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        for bad in ["", "0", "0s", "m", "1x", "5s3", "-5s", "1 minute ago"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn running_version_is_offered_first_then_newest() {
        let local = [
            "1.9.0",
            "1.10.0",
            "sha-abc",
            "latest",
            "2.0.0-rc.1",
            "1.9.0",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            version_choices(Some("1.9.0"), &local),
            ["1.9.0", "2.0.0-rc.1", "1.10.0"]
        );
        assert_eq!(version_choices(None, &local)[0], "2.0.0-rc.1");
        assert_eq!(version_choices(Some("0.1.0"), &[]), ["0.1.0"]);
    }

    #[test]
    fn a_missing_default_image_is_replaced_by_its_standin_only_when_the_standin_is_here() {
        let engine = |here: &'static [&'static str]| move |image: &str| Some(here.contains(&image));
        let standin = StackImage {
            image: "infra-challenge/mariadb:10.11".into(),
            standin: true,
        };
        let default = StackImage {
            image: "mysql:8.4".into(),
            standin: false,
        };
        let choose = |chosen, present: &dyn Fn(&str) -> Option<bool>| {
            stack_image(
                chosen,
                "mysql:8.4",
                "infra-challenge/mariadb:10.11",
                present,
            )
        };
        assert_eq!(
            choose(None, &engine(&["infra-challenge/mariadb:10.11"])),
            standin
        );
        // The default when it is here, when neither is (the error then names it and the fix), and
        // when the engine cannot tell.
        assert_eq!(
            choose(
                None,
                &engine(&["mysql:8.4", "infra-challenge/mariadb:10.11"])
            ),
            default
        );
        assert_eq!(choose(None, &engine(&[])), default);
        assert_eq!(choose(None, &|_| None), default);
        // A chosen image is never replaced, even by the stand-in.
        assert_eq!(
            choose(
                Some("mysql:8.4"),
                &engine(&["infra-challenge/mariadb:10.11"])
            ),
            default
        );
        assert_eq!(choose(Some("mariadb:11"), &engine(&[])).image, "mariadb:11");
    }

    #[test]
    fn the_standin_note_names_each_standin_and_what_it_replaces() {
        let db = StackImage {
            image: "infra-challenge/mariadb:10.11".into(),
            standin: true,
        };
        let proxy = StackImage {
            image: "haproxy:2.8".into(),
            standin: false,
        };
        assert_eq!(
            standin_note(&[
                ("database", "mysql:8.4", &db),
                ("proxy", "haproxy:2.8", &proxy)
            ])
            .as_deref(),
            Some(
                "using the air-gapped stand-in of an image not in the local engine: \
                 infra-challenge/mariadb:10.11 instead of mysql:8.4 (database) (--db-image / \
                 --proxy-image choose others)"
            )
        );
        assert_eq!(standin_note(&[("proxy", "haproxy:2.8", &proxy)]), None);
    }

    #[test]
    fn a_release_of_an_environment_names_its_image_by_version() {
        let env = Environment {
            name: "dev".into(),
            app_repository: "registry.example/team/infra-challenge".into(),
            db_image: crate::facts::DEFAULT_DB_IMAGE.into(),
            proxy_image: crate::facts::DEFAULT_PROXY_IMAGE.into(),
            port: 8080,
            secrets_dir: "/s".into(),
        };
        let release = env.release("1.2.3");
        assert_eq!(release.image, "registry.example/team/infra-challenge:1.2.3");
        assert_eq!(release.manifests, None);
        assert_eq!(env.project(), "infra-challenge-dev");
        assert_eq!(env.url(), "http://127.0.0.1:8080");
    }
}
