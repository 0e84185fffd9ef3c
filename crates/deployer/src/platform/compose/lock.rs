//! One operation at a time per Compose environment: an advisory lock (`flock`) on the file `lock`
//! in the environment's state directory. The kernel releases it when the holding process exits,
//! however it exits (SIGKILL included), so a Compose lock is never stale and never needs repair.
//! The holder writes who it is into the same file for the others to read; the content alone proves
//! nothing (a killed holder leaves it behind), the kernel's lock does.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::platform::{LockGuard, LockInfo, Locking};

/// The lock file's name in the environment's state directory.
pub const LOCK_FILE: &str = "lock";

/// How often a taken lock is tried again before it counts as held: `status` takes it shared for
/// an instant to learn whether it is held, and must not make a deployer give up.
const ATTEMPTS: u32 = 3;
const RETRY: Duration = Duration::from_millis(50);

/// The held lock: the open file (closing it releases the lock).
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl LockGuard for FileLock {
    fn release(self: Box<Self>) -> Option<String> {
        // Empty first, so nobody reads this holder's details once the kernel lock is gone.
        let emptied = self.file.set_len(0);
        let unlocked = self.file.unlock();
        match (emptied, unlocked) {
            (Ok(()), Ok(())) => None,
            (Err(e), _) | (_, Err(e)) => Some(format!(
                "releasing the lock {}: {e} (the kernel releases it when the deployer exits)",
                self.path.display()
            )),
        }
    }
}

/// Takes the lock in `env_dir` for `request`, or says who holds it.
pub fn try_lock(env_dir: &Path, request: &LockInfo) -> Result<Locking> {
    crate::state::create_private_dir(env_dir)?;
    let path = env_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(Error::io(format!("opening {}", path.display())))?;
    for attempt in 1..=ATTEMPTS {
        match file.try_lock() {
            Ok(()) => {
                write_holder(&mut file, request)
                    .map_err(Error::io(format!("writing {}", path.display())))?;
                return Ok(Locking::Taken(Box::new(FileLock { file, path })));
            }
            Err(TryLockError::WouldBlock) if attempt < ATTEMPTS => thread::sleep(RETRY),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()))(e));
            }
        }
    }
    Ok(Locking::Held(read_holder(&mut file)))
}

/// Who holds the lock in `env_dir`, if anyone.
pub fn holder(env_dir: &Path) -> Result<Option<LockInfo>> {
    let path = env_dir.join(LOCK_FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()))(e)),
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(None)
        }
        Err(TryLockError::WouldBlock) => Ok(Some(read_holder(&mut file))),
        Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()))(e)),
    }
}

fn write_holder(file: &mut File, request: &LockInfo) -> std::io::Result<()> {
    let text = serde_json::to_string(request).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_data()
}

/// The holder's details; a holder that has just taken the lock may not have written them yet.
fn read_holder(file: &mut File) -> LockInfo {
    for _ in 0..ATTEMPTS {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        if let Ok(info) = read
            .ok()
            .and_then(|_| serde_json::from_str::<LockInfo>(text.trim()).ok())
            .ok_or(())
        {
            return info;
        }
        thread::sleep(RETRY);
    }
    LockInfo {
        holder: "another deployer (its details are not written yet)".into(),
        operation: "unknown".into(),
        version: "unknown".into(),
        since: time::OffsetDateTime::now_utc(),
        renewed: None,
        expires: None,
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn request(holder: &str) -> LockInfo {
        LockInfo {
            holder: holder.into(),
            operation: "deploy".into(),
            version: "1.2.3".into(),
            since: OffsetDateTime::UNIX_EPOCH,
            renewed: None,
            expires: None,
        }
    }

    fn taken(locking: Locking) -> Box<dyn LockGuard> {
        match locking {
            Locking::Taken(guard) => guard,
            Locking::Held(info) => panic!("held by {info:?}"),
        }
    }

    #[test]
    fn a_second_taker_is_told_who_holds_the_lock_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = taken(try_lock(dir.path(), &request("alice@a:1")).unwrap());
        match try_lock(dir.path(), &request("bob@b:2")).unwrap() {
            Locking::Held(info) => assert_eq!(info, request("alice@a:1")),
            Locking::Taken(_) => panic!("two holders of one lock"),
        }
        assert_eq!(
            holder(dir.path()).unwrap().map(|i| i.holder).as_deref(),
            Some("alice@a:1")
        );
        assert_eq!(first.release(), None);
        assert_eq!(holder(dir.path()).unwrap(), None);
        let second = taken(try_lock(dir.path(), &request("bob@b:2")).unwrap());
        assert_eq!(holder(dir.path()).unwrap().unwrap().holder, "bob@b:2");
        drop(second);
    }

    #[test]
    fn a_dropped_guard_releases_the_lock_as_a_dead_process_would() {
        let dir = tempfile::tempdir().unwrap();
        let guard = taken(try_lock(dir.path(), &request("alice@a:1")).unwrap());
        // Closing the file is what the kernel does for a killed process: the details stay behind.
        drop(guard);
        assert!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE))
                .unwrap()
                .contains("alice@a:1")
        );
        assert_eq!(holder(dir.path()).unwrap(), None);
        taken(try_lock(dir.path(), &request("bob@b:2")).unwrap());
    }

    #[test]
    fn nobody_holds_the_lock_of_an_environment_never_deployed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(&dir.path().join("never")).unwrap(), None);
    }
}
