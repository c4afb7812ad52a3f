//! A real ACME server for the tests: Debian's `pebble` (RFC 8555 test CA),
//! started as a child with `-dnsserver` pointed at the fake's DNS, so a
//! certificate is issued only after Pebble itself resolved the
//! `_acme-challenge` TXT record that venue wrote through the rrsets API.
//!
//! Debian's package ships no test certificates, so a mini CA made here
//! (rcgen) signs the certificate of Pebble's HTTPS listener: its root is what
//! a client trusts to talk to Pebble (`VENUE_ACME_ROOT`). The root that signs
//! the issued certificates is another one, which Pebble makes at start and
//! serves on its management port: it is saved as `issuer-root.pem`, for
//! clients that check the hosts' certificates.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Pebble {
    child: Child,
    /// `https://127.0.0.1:PORT/dir`
    pub directory: String,
    /// The root of Pebble's own HTTPS listener (for the ACME client).
    pub acme_root: PathBuf,
    /// The root that signs the certificates Pebble issues.
    pub issuer_root: PathBuf,
    /// Pebble's output (one line per request).
    pub log: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it (PEMs:
/// root, leaf chain, leaf key).
fn minica() -> Result<(String, String, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "venue testbed: Pebble listener CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &ca)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

impl Pebble {
    /// Starts `pebble` with its files in `dir`, resolving through `dns`, and
    /// waits until its directory answers.
    pub async fn start(dns: SocketAddr, dir: &Path) -> Result<Pebble> {
        std::fs::create_dir_all(dir)?;
        let (root, cert, key) = minica().context("making Pebble's listener certificate")?;
        let acme_root = dir.join("acme-root.pem");
        std::fs::write(&acme_root, &root)?;
        std::fs::write(dir.join("listener.pem"), &cert)?;
        std::fs::write(dir.join("listener-key.pem"), &key)?;
        let (port, mgmt) = (free_port()?, free_port()?);
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.join("listener.pem"),
            "privateKey": dir.join("listener-key.pem"),
            // Ports Pebble would connect to for HTTP-01 / TLS-ALPN-01: unused (DNS-01 only).
            "httpPort": free_port()?,
            "tlsPort": free_port()?,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_file = dir.join("pebble-config.json");
        std::fs::write(&config_file, serde_json::to_vec_pretty(&config)?)?;
        let log = dir.join("pebble.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_file)
            .arg("-dnsserver")
            .arg(dns.to_string())
            // Validate at once (no random sleep), accept every good nonce
            // (no badNonce retries), never reuse an authorization: fast and
            // the same on every run.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context(
                "starting pebble (apt-get install pebble; scripts/install-deps installs it)",
            )?;
        let mut pebble = Pebble {
            child,
            directory: format!("https://127.0.0.1:{port}/dir"),
            acme_root: acme_root.clone(),
            issuer_root: dir.join("issuer-root.pem"),
            log,
        };
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes())?)
            .timeout(Duration::from_secs(5))
            .build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = pebble.child.try_wait()? {
                bail!(
                    "pebble exited ({status}): {}",
                    std::fs::read_to_string(&pebble.log).unwrap_or_default()
                );
            }
            if let Ok(r) = http.get(&pebble.directory).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("pebble did not answer on {} within 20 s", pebble.directory);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let issuer = http
            .get(format!("https://127.0.0.1:{mgmt}/roots/0"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        std::fs::write(&pebble.issuer_root, issuer)?;
        Ok(pebble)
    }

    /// New orders Pebble has accepted so far (from its request log).
    pub fn orders(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("POST /order-plz"))
            .count()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
