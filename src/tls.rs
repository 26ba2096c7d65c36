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
    #[error("a development certificate needs at least one name")]
    NoNames,
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

/// How many days the development CA and certificate are valid, counted from
/// their (backdated) start. Apple platforms refuse TLS server certificates
/// valid for more than 825 days; staying a few days under keeps any client's
/// rounding of the period (RFC 5280 counts both ends) from tipping it over.
pub const DEV_CERT_DAYS: i64 = 820;

/// How far in the past the certificates start, so a client whose clock runs
/// somewhat behind the machine that made them accepts them straight away.
pub const DEV_CERT_BACKDATE: time::Duration = time::Duration::hours(1);

/// A development CA and a leaf certificate it signed.
///
/// Both are made to pass strict verifiers, not only lenient ones: OpenSSL's
/// `X509_V_FLAG_X509_STRICT` (Python 3.13's default TLS context) wants an
/// Authority Key Identifier on the leaf and critical basic constraints and
/// key usage on the CA; Apple platforms want the serverAuth extended key
/// usage, names in the Subject Alternative Name (never the common name
/// alone) and at most 825 days of validity; webpki (rustls) checks names,
/// usages and the chain the same way.
///
/// The CA's private key is dropped once the leaf is signed, so trusting the
/// CA trusts this one certificate and nothing anyone could sign later. That
/// is also why the CA lives exactly as long as its leaf: once the leaf has
/// expired the CA has no use left.
pub struct DevCerts {
    /// PEM of the CA certificate: what a client trusts.
    pub ca_pem: String,
    /// PEM of the leaf certificate followed by the CA (the served chain).
    pub chain_pem: String,
    /// PEM (PKCS#8) of the leaf's private key.
    pub key_pem: String,
}

impl DevCerts {
    /// A CA and a leaf valid for `names` (DNS names or IP addresses), both
    /// ECDSA P-256 with SHA-256.
    pub fn generate(names: &[&str]) -> Result<DevCerts, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        };

        if names.is_empty() {
            return Err(TlsError::NoNames);
        }
        let not_before = time::OffsetDateTime::now_utc() - DEV_CERT_BACKDATE;
        let not_after = not_before + time::Duration::days(DEV_CERT_DAYS);

        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dev_name("guise development CA");
        // Path length 0: the CA signs end-entity certificates only. rcgen
        // marks basic constraints and key usage critical and, for a CA,
        // adds the Subject Key Identifier the leaf's AKI points at.
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.serial_number = Some(random_serial());
        ca_params.not_before = not_before;
        ca_params.not_after = not_after;
        let ca = ca_params.self_signed(&ca_key)?;

        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        // `new` puts every name in the Subject Alternative Name, as an IP
        // address when it parses as one and as a DNS name otherwise: that is
        // the only place clients look. The common name is a label for people
        // (a host name there would be limited to 64 characters and ignored).
        let mut leaf_params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        leaf_params.distinguished_name = dev_name("guise development certificate");
        // Critical basic constraints with CA:FALSE, plus a Subject Key
        // Identifier (rcgen writes one with explicit constraints).
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        // ECDSA keys sign the handshake and never encipher a key, so
        // digitalSignature is the whole key usage (RSA would add
        // keyEncipherment).
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.serial_number = Some(random_serial());
        leaf_params.not_before = not_before;
        leaf_params.not_after = not_after;
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

/// A subject naming the development setup, so the certificates are easy to
/// find and remove in a trust store.
fn dev_name(common_name: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "guise development");
    dn.push(rcgen::DnType::CommonName, common_name);
    dn
}

/// A positive 126-bit serial from a CSPRNG (rand's `thread_rng`, as for
/// session tokens). rcgen's default serial is a hash of the public key;
/// certificate policy (and clients' caches keyed by issuer and serial)
/// expect serials to be unpredictable and never reused.
fn random_serial() -> rcgen::SerialNumber {
    use rand::RngCore;
    let mut serial = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut serial);
    // Clear the sign bit and set the next one: positive, never zero, and
    // always 16 bytes long once DER-encoded.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    rcgen::SerialNumber::from_slice(&serial)
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

    use std::sync::Arc;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::CertificateError;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

    const NAMES: [&str; 4] = ["localhost", "127.0.0.1", "::1", "app.guise.test"];
    const DAY: i64 = 24 * 60 * 60;

    fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn parse<'a>(der: &'a CertificateDer<'_>) -> X509Certificate<'a> {
        let (rest, cert) = X509Certificate::from_der(der).unwrap();
        assert!(rest.is_empty());
        cert
    }

    /// The Subject Key Identifier, which must not be critical (RFC 5280).
    fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
        let ext = cert
            .extensions()
            .iter()
            .find(|e| {
                matches!(
                    e.parsed_extension(),
                    ParsedExtension::SubjectKeyIdentifier(_)
                )
            })
            .expect("subject key identifier");
        assert!(!ext.critical);
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => id.0.to_vec(),
            _ => unreachable!(),
        }
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// Start and end are sane for a certificate made a moment ago: begun
    /// about an hour back, valid now, and not longer than Apple's 825 days.
    fn check_validity(cert: &X509Certificate<'_>, what: &str) {
        let from = cert.validity().not_before.timestamp();
        let to = cert.validity().not_after.timestamp();
        let backdate = DEV_CERT_BACKDATE.whole_seconds();
        assert!(now() - from >= backdate - 60, "{what} starts too late");
        assert!(now() - from <= backdate + 600, "{what} starts too early");
        assert!(to > now() + 800 * DAY, "{what} ends too soon");
        assert!(to - from <= 825 * DAY, "{what} lives more than 825 days");
    }

    /// Positive, 16 bytes, different every time.
    fn check_serial(cert: &X509Certificate<'_>, what: &str) -> Vec<u8> {
        let serial = cert.raw_serial().to_vec();
        assert_eq!(serial.len(), 16, "{what} serial {serial:02x?}");
        assert!(
            serial[0] < 0x80 && serial[0] != 0,
            "{what} serial {serial:02x?}"
        );
        serial
    }

    #[test]
    fn the_ca_is_a_strict_ca_and_the_leaf_a_strict_server_certificate() {
        let certs = DevCerts::generate(&NAMES).unwrap();
        let ca_der = ders(&certs.ca_pem);
        assert_eq!(ca_der.len(), 1);
        let chain = ders(&certs.chain_pem);
        assert_eq!(chain.len(), 2, "leaf then CA");
        assert_eq!(chain[1], ca_der[0], "the chain ends with the CA");
        let ca = parse(&ca_der[0]);
        let leaf = parse(&chain[0]);

        // CA: self-issued v3, basicConstraints CA:TRUE (critical, no CAs
        // below it), keyUsage keyCertSign + cRLSign (critical), an SKI.
        assert_eq!(ca.version(), X509Version::V3);
        assert_eq!(ca.subject().as_raw(), ca.issuer().as_raw());
        let bc = ca
            .basic_constraints()
            .unwrap()
            .expect("CA basicConstraints");
        assert!(bc.critical);
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let ku = ca.key_usage().unwrap().expect("CA keyUsage");
        assert!(ku.critical);
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.digital_signature() && !ku.value.key_encipherment());
        assert!(ca.extended_key_usage().unwrap().is_none());
        let ca_ski = ski(&ca);
        assert_eq!(ca_ski.len(), 20);
        check_validity(&ca, "CA");
        let ca_serial = check_serial(&ca, "CA");

        // Leaf: issued by the CA, basicConstraints CA:FALSE (critical),
        // keyUsage digitalSignature only (an ECDSA key), EKU serverAuth.
        assert_eq!(leaf.version(), X509Version::V3);
        assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
        let bc = leaf
            .basic_constraints()
            .unwrap()
            .expect("leaf basicConstraints");
        assert!(bc.critical);
        assert!(!bc.value.ca);
        let ku = leaf.key_usage().unwrap().expect("leaf keyUsage");
        assert!(ku.critical);
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
        let eku = leaf.extended_key_usage().unwrap().expect("leaf EKU");
        assert!(eku.value.server_auth);
        assert!(!eku.value.any);

        // Every name is in the SAN, typed: DNS names as dNSName, addresses
        // as iPAddress; the common name is not the only place a name is.
        let san = leaf
            .subject_alternative_name()
            .unwrap()
            .expect("leaf subjectAltName");
        assert!(!san.critical, "the subject is not empty");
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
                other => panic!("unexpected SAN entry {other:?}"),
            }
        }
        assert_eq!(dns, ["localhost", "app.guise.test"]);
        assert_eq!(
            ips,
            [
                [127, 0, 0, 1].to_vec(),
                std::net::Ipv6Addr::LOCALHOST.octets().to_vec()
            ]
        );

        // AKI names the CA's SKI (not critical); the leaf has its own SKI.
        let aki = leaf
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => Some((e.critical, aki)),
                _ => None,
            })
            .expect("leaf authorityKeyIdentifier");
        assert!(!aki.0);
        let aki_id = aki.1.key_identifier.as_ref().expect("AKI keyIdentifier");
        assert_eq!(aki_id.0, ca_ski.as_slice());
        let leaf_ski = ski(&leaf);
        assert_ne!(leaf_ski, ca_ski);

        // No extension the parser does not understand, none twice.
        for cert in [&ca, &leaf] {
            assert!(cert.extensions_map().is_ok(), "duplicate extension");
            for e in cert.extensions() {
                assert!(
                    !matches!(
                        e.parsed_extension(),
                        ParsedExtension::UnsupportedExtension { .. }
                    ),
                    "unexpected extension {}",
                    e.oid
                );
            }
        }

        check_validity(&leaf, "leaf");
        let leaf_serial = check_serial(&leaf, "leaf");
        assert_ne!(leaf_serial, ca_serial);
        let again = DevCerts::generate(&NAMES).unwrap();
        let again = ders(&again.chain_pem);
        assert_ne!(parse(&again[0]).raw_serial(), leaf_serial.as_slice());
    }

    #[test]
    fn webpki_accepts_the_leaf_for_its_names_only_under_its_own_ca() {
        let certs = DevCerts::generate(&["localhost", "127.0.0.1", "::1"]).unwrap();
        let verifier_for = |ca_pem: &str| {
            let mut roots = rustls::RootCertStore::empty();
            for ca in ders(ca_pem) {
                roots.add(ca).unwrap();
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .unwrap()
        };
        let verifier = verifier_for(&certs.ca_pem);
        let chain = ders(&certs.chain_pem);
        let (leaf, served) = chain.split_first().unwrap();
        let verify = |name: &str, at: UnixTime| {
            let name = ServerName::try_from(name).unwrap();
            verifier.verify_server_cert(leaf, served, &name, &[], at)
        };

        for name in ["localhost", "127.0.0.1", "::1"] {
            verify(name, UnixTime::now()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for name in ["example.com", "sub.localhost", "127.0.0.2", "::2"] {
            match verify(name, UnixTime::now()) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => {}
                other => panic!("{name}: {other:?}"),
            }
        }

        // Not yet valid before its backdated start, expired after its days.
        let at = |secs: i64| {
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.unsigned_abs()))
        };
        let early = at(now() - DEV_CERT_BACKDATE.whole_seconds() - 600);
        assert!(matches!(
            verify("localhost", early),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            ))
        ));
        let late = at(now() + (DEV_CERT_DAYS + 1) * DAY);
        assert!(matches!(
            verify("localhost", late),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ));

        // Another run's CA does not vouch for this leaf: it has the same
        // name, so webpki tries it and finds the signature is not its own.
        let other = DevCerts::generate(&["localhost"]).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let err = verifier_for(&other.ca_pem)
            .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature | CertificateError::UnknownIssuer
                )
            ),
            "{err:?}"
        );
    }

    #[test]
    fn no_names_is_refused() {
        assert!(matches!(DevCerts::generate(&[]), Err(TlsError::NoNames)));
    }

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
