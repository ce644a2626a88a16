//! Files this program keeps for the user alone in its state directory
//! (logins, lazy servers' listings): the folder 0700, the file 0600,
//! replaced whole by a rename so a reader never sees half of one, and
//! read no further than a bound.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a private file could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no OS random source: {0}")]
    NoRandom(getrandom::Error),
    #[error("{} is larger than {max} bytes", path.display())]
    TooLarge { path: PathBuf, max: u64 },
}

/// The failure `source` of reading or writing `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Puts `bytes` in `dir/name` in place of what it held (the folder made
/// when missing).
pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), FileError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(FileError::NoRandom)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let temporary = dir.join(format!(".{name}.{suffix}"));
    let path = dir.join(name);
    let written = write_new(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(io(&path)(e));
    }
    Ok(())
}

/// What `path` holds, when it is there and no larger than `max` bytes
/// (`None`: there is no such file).
pub(crate) fn read(path: &Path, max: u64) -> Result<Option<Vec<u8>>, FileError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(Some(bytes))
}

/// A new file holding `bytes`, readable by its owner only, on disk.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
