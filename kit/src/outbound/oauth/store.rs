//! The file each remote server's logins are kept in:
//! `<state dir>/oauth/NAME.json`, readable by the user alone (the folder
//! 0700, the file 0600), replaced whole by a rename so a reader never sees
//! half of it. Its tokens are never logged.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use mcp_provider_core::oauth::Logins;

pub use crate::private_file::FileError;

/// The largest file read: logins are a few kilobytes.
const MAX_FILE: u64 = 1 << 20;

/// Where logins are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    dir: PathBuf,
}

/// How a file looked (size, modification time, inode): a change of it
/// means another process wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64, i64, i64, u64);

/// Why logins could not be kept, read or forgotten.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not a bridged server's name: it names no file.
    #[error("`{name}`: {why}")]
    BadName { name: String, why: &'static str },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{} cannot be read as logins: {source}", path.display())]
    NotLogins {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("{}: {source}", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Store {
    /// Logins kept in `dir` (`<state dir>/oauth`).
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    /// The state directory's store, if there is a state directory.
    pub fn default_location() -> Option<Store> {
        crate::agent::dial::state_dir().map(|d| Store::new(d.join("oauth")))
    }

    /// The file of the server `name` (a bridged server's name: letters,
    /// digits, `-`, `_`, `.`; anything else is refused).
    pub fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        if let Some(why) = mcp_provider_core::bridge::bad_server_name(name) {
            return Err(StoreError::BadName {
                name: name.to_owned(),
                why,
            });
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// How the file of `name` looks now (`None`: there is none).
    pub fn stamp(&self, name: &str) -> Option<Stamp> {
        let meta = std::fs::metadata(self.path(name).ok()?).ok()?;
        Some(Stamp(
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino(),
        ))
    }

    /// The logins kept for `name`, if any.
    pub fn read(&self, name: &str) -> Result<Option<Logins>, StoreError> {
        let path = self.path(name)?;
        let Some(text) = crate::private_file::read(&path, MAX_FILE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| StoreError::NotLogins { path, source })
    }

    /// Keeps `logins` for `name`, replacing what was kept.
    pub fn write(&self, name: &str, logins: &Logins) -> Result<(), StoreError> {
        self.path(name)?;
        let text = serde_json::to_vec_pretty(logins).map_err(StoreError::Encode)?;
        Ok(crate::private_file::replace(
            &self.dir,
            &format!("{name}.json"),
            &text,
        )?)
    }

    /// Forgets the logins of `name`: whether there were any.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Remove { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_provider_core::http::Url;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    #[test]
    fn logins_are_kept_for_the_user_alone_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("oauth-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::new(dir.join("oauth"));
        assert_eq!(store.read("gh").unwrap(), None);
        assert_eq!(store.stamp("gh"), None);
        let logins = Logins::new(&Url::parse("https://mcp.example.com/mcp").unwrap());
        store.write("gh", &logins).unwrap();
        let path = store.path("gh").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("oauth")), 0o700);
        assert_eq!(store.read("gh").unwrap(), Some(logins.clone()));
        let before = store.stamp("gh");
        let mut other = logins;
        other.active = Some("https://as.example.com".into());
        store.write("gh", &other).unwrap();
        assert_ne!(store.stamp("gh"), before);
        assert_eq!(std::fs::read_dir(dir.join("oauth")).unwrap().count(), 1);
        assert!(store.remove("gh").unwrap());
        assert!(!store.remove("gh").unwrap());
        assert!(store.path("../etc/passwd").is_err());
        std::fs::write(dir.join("oauth/bad.json"), "{").unwrap();
        assert!(store
            .read("bad")
            .unwrap_err()
            .to_string()
            .contains("cannot be read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
