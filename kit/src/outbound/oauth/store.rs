//! The file each remote server's logins are kept in:
//! `<state dir>/oauth/NAME.json`, readable by the user alone (the folder
//! 0700, the file 0600), replaced whole by a rename so a reader never sees
//! half of it. Its tokens are never logged.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use mcp_provider_core::oauth::Logins;

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
    pub fn path(&self, name: &str) -> Result<PathBuf, String> {
        if let Some(why) = mcp_provider_core::bridge::bad_server_name(name) {
            return Err(format!("`{name}`: {why}"));
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
    pub fn read(&self, name: &str) -> Result<Option<Logins>, String> {
        let path = self.path(name)?;
        let Some(text) = crate::private_file::read(&path, MAX_FILE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| format!("{} cannot be read as logins: {e}", path.display()))
    }

    /// Keeps `logins` for `name`, replacing what was kept.
    pub fn write(&self, name: &str, logins: &Logins) -> Result<(), String> {
        self.path(name)?;
        let text = serde_json::to_vec_pretty(logins).map_err(|e| e.to_string())?;
        crate::private_file::replace(&self.dir, &format!("{name}.json"), &text)
    }

    /// Forgets the logins of `name`: whether there were any.
    pub fn remove(&self, name: &str) -> Result<bool, String> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("{}: {e}", path.display())),
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
        assert!(store.read("bad").unwrap_err().contains("cannot be read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
