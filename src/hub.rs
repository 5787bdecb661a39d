//! Hugging Face Hub ids (`org/name`, optionally `org/name@revision`) resolved offline from the
//! local Hub cache, as transformers resolves them with `HF_HUB_OFFLINE=1`: nothing is downloaded.
//!
//! The cache is the one the Hub client writes: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else
//! `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. A model
//! lives in `models--org--name/`: `refs/<revision>` holds a commit hash, `snapshots/<hash>/` the
//! files of that commit (symlinks into `blobs/`). A revision may also be a commit hash that names
//! a snapshot directly. Written by hand rather than with the `hf-hub` crate: the lookup is a few
//! path joins, and that crate brings an HTTP client this offline lookup never uses.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A model on the Hub: `org/name` and the revision asked for (`main` when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// A branch, tag or commit hash, if one was given after `@`.
    pub revision: Option<String>,
}

impl HubId {
    /// Parses `org/name` or `org/name@revision`; `None` when `spec` is not of that form (an
    /// absolute path, `./x`, `a/b/c`, a name with characters the Hub does not allow).
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, revision)) if !revision.is_empty() => (repo, Some(revision.to_string())),
            Some(_) => return None,
            None => (spec, None),
        };
        let (org, name) = repo.split_once('/')?;
        let valid = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid(org) || !valid(name) || revision.as_deref().is_some_and(|r| r.contains("..")) {
            return None;
        }
        Some(Self {
            repo: repo.to_string(),
            revision,
        })
    }

    /// The model a snapshot directory of the Hub cache (`.../models--org--name/snapshots/<hash>`)
    /// holds, pinned to that commit; `None` for any other directory.
    pub fn from_snapshot_dir(dir: &Path) -> Option<Self> {
        let commit = dir.file_name()?.to_str()?;
        let snapshots = dir.parent()?;
        if snapshots.file_name()? != "snapshots" {
            return None;
        }
        let folder = snapshots.parent()?.file_name()?.to_str()?;
        let (org, name) = folder.strip_prefix("models--")?.split_once("--")?;
        Self::parse(&format!("{org}/{name}@{commit}"))
    }

    /// The revision looked up: the one given, else `main`.
    pub fn revision_or_main(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The model's folder in the cache: `models--org--name`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }

    /// The command that downloads this model (and revision) into the cache.
    pub fn download_command(&self) -> String {
        let revision = self
            .revision
            .as_ref()
            .map(|r| format!(" --revision {r}"))
            .unwrap_or_default();
        format!(
            "`huggingface-cli download {repo}{revision}` (or `hf download {repo}{revision}`)",
            repo = self.repo
        )
    }

    /// The snapshot directory of this model in the Hub cache `cache`.
    pub fn snapshot_in(&self, cache: &Path) -> Result<PathBuf> {
        let model = cache.join(self.cache_folder());
        if !model.is_dir() {
            return Err(Error::Input(format!(
                "Hub model `{}` is not in the local Hugging Face cache {} (no {}); download it with {}",
                self.repo,
                cache.display(),
                self.cache_folder(),
                self.download_command()
            )));
        }
        let revision = self.revision_or_main();
        let reference = model.join("refs").join(revision);
        let commit = if reference.is_file() {
            let text = std::fs::read_to_string(&reference).map_err(|e| Error::io(&reference, e))?;
            text.trim().to_string()
        } else {
            // A commit hash names its snapshot directly, with no file under refs/.
            revision.to_string()
        };
        let snapshot = model.join("snapshots").join(&commit);
        if snapshot.is_dir() && !commit.is_empty() {
            return Ok(snapshot);
        }
        let what = if reference.is_file() {
            format!("refs/{revision} names commit {commit}, whose snapshot is missing")
        } else {
            format!(
                "no revision `{revision}` (cached refs: {})",
                self.cached_refs(&model)
            )
        };
        Err(Error::Input(format!(
            "Hub model `{}` in {}: {what}; download it with {}",
            self.repo,
            model.display(),
            self.download_command()
        )))
    }

    /// The names under `refs/`, for the error of a missing revision.
    fn cached_refs(&self, model: &Path) -> String {
        let mut names: Vec<String> = std::fs::read_dir(model.join("refs"))
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// The Hub cache directory named by the environment, as the Hub client finds it; `var` reads one
/// environment variable (tests pass their own).
pub fn hub_cache_dir_from(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(cache) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
        return cache;
    }
    let home = set("HF_HOME").unwrap_or_else(|| {
        set("XDG_CACHE_HOME")
            .unwrap_or_else(|| set("HOME").unwrap_or_default().join(".cache"))
            .join("huggingface")
    });
    home.join("hub")
}

/// The Hub cache directory of this process's environment.
pub fn hub_cache_dir() -> PathBuf {
    hub_cache_dir_from(|name| std::env::var(name).ok())
}

/// Where a model given as `spec` lives: `spec` itself when it is a directory, else the cached
/// snapshot of the Hub id `spec` (`org/name[@revision]`). The error says which it tried and how
/// to get the model.
pub fn resolve_model_dir(spec: &Path) -> Result<PathBuf> {
    if spec.is_dir() {
        return Ok(spec.to_path_buf());
    }
    match spec.to_str().and_then(HubId::parse) {
        Some(id) => id.snapshot_in(&hub_cache_dir()).map_err(|e| {
            Error::Input(format!("{} is not a directory, and {e}", spec.display()))
        }),
        None => Err(Error::Input(format!(
            "model directory {} does not exist or is not a directory, and it is not a Hub id of the form org/name[@revision]",
            spec.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids_and_rejects_paths() {
        let id = HubId::parse("Qwen/Qwen2.5-Math-1.5B-Instruct").unwrap();
        assert_eq!(id.repo, "Qwen/Qwen2.5-Math-1.5B-Instruct");
        assert_eq!(id.revision_or_main(), "main");
        assert_eq!(
            id.cache_folder(),
            "models--Qwen--Qwen2.5-Math-1.5B-Instruct"
        );
        let pinned = HubId::parse("Qwen/Qwen2.5-Math-RM-72B@v1.0").unwrap();
        assert_eq!(pinned.revision.as_deref(), Some("v1.0"));
        assert!(pinned
            .download_command()
            .contains("huggingface-cli download Qwen/Qwen2.5-Math-RM-72B --revision v1.0"));
        for path in [
            "/abs/model",
            "./model",
            "a/b/c",
            "model",
            "a/",
            "../x",
            "a/b@",
            "a/b@../c",
        ] {
            assert_eq!(HubId::parse(path), None, "{path}");
        }
    }

    fn lookup(pairs: Vec<(&'static str, &'static str)>) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn the_cache_directory_follows_the_hub_clients_precedence() {
        let all = [
            ("HF_HUB_CACHE", "/a"),
            ("HUGGINGFACE_HUB_CACHE", "/b"),
            ("HF_HOME", "/c"),
            ("XDG_CACHE_HOME", "/d"),
            ("HOME", "/e"),
        ];
        for (skip, expected) in [
            (0, "/a"),
            (1, "/b"),
            (2, "/c/hub"),
            (3, "/d/huggingface/hub"),
            (4, "/e/.cache/huggingface/hub"),
        ] {
            let dir = hub_cache_dir_from(lookup(all[skip..].to_vec()));
            assert_eq!(dir, PathBuf::from(expected), "without the first {skip}");
        }
        // An empty variable counts as unset, as in the Hub client.
        let dir = hub_cache_dir_from(lookup(vec![("HF_HUB_CACHE", ""), ("HF_HOME", "/c")]));
        assert_eq!(dir, PathBuf::from("/c/hub"));
    }

    #[test]
    fn finds_snapshots_by_ref_and_by_commit_and_names_what_is_missing() {
        let cache = tempfile::tempdir().unwrap();
        let model = cache.path().join("models--org--name");
        std::fs::create_dir_all(model.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(model.join("refs")).unwrap();
        std::fs::write(model.join("refs/main"), "abc123").unwrap();
        let snapshot = model.join("snapshots/abc123");

        let id = |s: &str| HubId::parse(s).unwrap();
        assert_eq!(id("org/name").snapshot_in(cache.path()).unwrap(), snapshot);
        assert_eq!(
            id("org/name@abc123").snapshot_in(cache.path()).unwrap(),
            snapshot
        );

        let err = id("org/other")
            .snapshot_in(cache.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`huggingface-cli download org/other`"),
            "{err}"
        );
        assert!(
            err.contains("models--org--other") && !err.contains('\n'),
            "{err}"
        );

        let err = id("org/name@v2")
            .snapshot_in(cache.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no revision `v2`") && err.contains("cached refs: main"),
            "{err}"
        );
        assert!(
            err.contains("huggingface-cli download org/name --revision v2"),
            "{err}"
        );

        let pinned = HubId::from_snapshot_dir(&snapshot).unwrap();
        assert_eq!(
            (pinned.repo.as_str(), pinned.revision_or_main()),
            ("org/name", "abc123")
        );
        assert_eq!(HubId::from_snapshot_dir(cache.path()), None);

        std::fs::write(model.join("refs/main"), "def456\n").unwrap();
        let err = id("org/name")
            .snapshot_in(cache.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("commit def456"), "{err}");
    }

    #[test]
    fn a_directory_is_taken_as_it_is_and_a_missing_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_model_dir(dir.path()).unwrap(), dir.path());
        let err = resolve_model_dir(Path::new("/no/such/model"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/no/such/model") && err.contains("not a Hub id"),
            "{err}"
        );
    }
}
