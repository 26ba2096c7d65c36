//! The outbox: each message written as an `.eml` file (RFC 5322, as it
//! would go over SMTP) into a folder, instead of being sent.
//!
//! The files hold live set-password links, so the folder is made readable
//! by the gateway's user only, and each file too. A file appears whole:
//! it is written under a hidden temporary name and renamed, so whatever
//! watches the folder never reads half a message.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use lettre::Message;
use rand::RngCore;

use super::{Delivered, MailError, Mailer};

/// A folder that receives messages.
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// The folder is made on first use, so a gateway starts (and a
    /// configuration checks) without it.
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }
}

#[async_trait]
impl Mailer for Outbox {
    fn kind(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, message: Message) -> Result<Delivered, MailError> {
        let bytes = message.formatted();
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || write(&dir, &bytes))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match written {
            Ok(file) => Ok(Delivered { file: Some(file) }),
            Err(reason) => Err(MailError::Outbox {
                dir: self.dir.clone(),
                reason,
            }),
        }
    }
}

/// Write `bytes` as a new `.eml` file in `dir`; its path.
fn write(dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut salt = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut salt);
    let name = format!("{millis}-{}.eml", hex::encode(salt));
    let tmp = dir.join(format!(".{name}.tmp"));
    let done = dir.join(&name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let result = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, &done)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_lands_whole_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("nested/outbox");
        let path = write(&outbox, b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        assert_eq!(path.extension().unwrap(), "eml");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&outbox), 0o700);
        let names: Vec<_> = std::fs::read_dir(&outbox).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        let second = write(&outbox, b"x").unwrap();
        assert_ne!(second, path);
    }
}
