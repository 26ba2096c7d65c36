//! Certificates: checking configured files before serving, and making
//! development ones.
//!
//! pingora accepts any path in `add_tls` and only fails when the service
//! starts, panicking inside the service while the process exits 0. So guise
//! loads the files itself first and refuses to start with a clear message.

use std::path::{Path, PathBuf};

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} and {} do not hold a PEM certificate chain and a private key (PKCS#8, PKCS#1 or SEC1)", cert.display(), key.display())]
    NoPem { cert: PathBuf, key: PathBuf },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Load `cert` and `key` as the listener will, so bad files stop start-up.
pub fn check_pair(cert: &Path, key: &Path) -> Result<(), TlsError> {
    for p in [cert, key] {
        std::fs::File::open(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })?;
    }
    let loaded =
        pingora::tls::load_certs_and_key_files(&cert.to_string_lossy(), &key.to_string_lossy());
    match loaded {
        Ok(Some(_)) => Ok(()),
        _ => Err(TlsError::NoPem {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
    }
}

/// A development CA and a leaf certificate it signed.
pub struct DevCerts {
    /// PEM of the CA certificate: what a client trusts.
    pub ca_pem: String,
    /// PEM of the leaf certificate followed by the CA (the served chain).
    pub chain_pem: String,
    /// PEM (PKCS#8) of the leaf's private key.
    pub key_pem: String,
}

impl DevCerts {
    /// A CA and a leaf valid for `names` (DNS names or IP addresses).
    pub fn generate(names: &[&str]) -> Result<DevCerts, TlsError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "guise development CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "guise development certificate");
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

        Ok(DevCerts {
            ca_pem: ca.pem(),
            chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
            key_pem: leaf_key.serialize_pem(),
        })
    }

    /// Write `dev-ca.pem`, `dev-cert.pem` and `dev-key.pem` into `dir`; the
    /// key file is readable by its owner only.
    pub fn write_to(&self, dir: &Path) -> Result<[PathBuf; 3], TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = [
            (dir.join("dev-ca.pem"), &self.ca_pem),
            (dir.join("dev-cert.pem"), &self.chain_pem),
            (dir.join("dev-key.pem"), &self.key_pem),
        ];
        for (path, body) in &files {
            write_private(path, body).map_err(|source| TlsError::Write {
                path: path.clone(),
                source,
            })?;
        }
        let [a, b, c] = files.map(|(p, _)| p);
        Ok([a, b, c])
    }
}

fn write_private(path: &Path, body: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_pass_the_start_up_check() {
        let dir = tempfile::tempdir().unwrap();
        let certs = DevCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
        let [_, cert, key] = certs.write_to(dir.path()).unwrap();
        check_pair(&cert, &key).unwrap();
    }

    #[test]
    fn missing_and_garbage_files_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = check_pair(&missing, &missing).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a pem").unwrap();
        let err = check_pair(&junk, &junk).unwrap_err().to_string();
        assert!(err.contains("junk.pem"), "{err}");
    }
}
