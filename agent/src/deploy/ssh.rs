//! The control channel: an SSH session (libssh2 through `ssh2`) to a host
//! whose key we know in advance. The host key is compared before we
//! authenticate, so a host that presents any other key learns nothing and
//! receives nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use ssh2::Session;

/// Why a connection was not made. The caller branches on `WrongHostKey`:
/// it is never retried.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{host} presented host key {presented}, not the pinned key {pinned}: refusing to talk to it")]
    WrongHostKey {
        host: String,
        presented: String,
        pinned: String,
    },
    #[error("{host} did not accept SSH connections within {waited:?}: {last}")]
    Unreachable {
        host: String,
        waited: Duration,
        last: String,
    },
    #[error("{1}: {0:#}")]
    Other(anyhow::Error, String),
}

/// A host key in OpenSSH's public form, `ssh-ed25519 AAAA…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    pub algorithm: String,
    pub blob: Vec<u8>,
}

impl PinnedKey {
    pub fn parse(openssh: &str) -> Result<PinnedKey> {
        let mut parts = openssh.split_whitespace();
        let (Some(algorithm), Some(b64)) = (parts.next(), parts.next()) else {
            bail!("not an SSH public key: {openssh:?}");
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("host key is not base64")?;
        Ok(PinnedKey {
            algorithm: algorithm.to_owned(),
            blob,
        })
    }

    pub fn openssh(&self) -> String {
        format!(
            "{} {}",
            self.algorithm,
            base64::engine::general_purpose::STANDARD.encode(&self.blob)
        )
    }

    /// `SHA256:…` as ssh-keygen -l prints it.
    pub fn fingerprint(blob: &[u8]) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(blob);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }
}

pub struct Ssh {
    session: Session,
    pub host: String,
}

/// Output of a remote command.
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ssh {
    /// Connects to `host:port`, checks its key against `pinned`, and logs in as
    /// `user` with `identity`. Retries refused and timed-out connections with
    /// bounded backoff until `wait` has passed (a fresh server is still booting);
    /// a wrong host key is final.
    pub fn connect(
        host: &str,
        port: u16,
        pinned: &PinnedKey,
        user: &str,
        identity: &Path,
        wait: Duration,
    ) -> Result<Ssh, ConnectError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match Self::try_connect(host, port, pinned, user, identity) {
                Ok(s) => return Ok(s),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(last)) => {
                    if started.elapsed() + delay > wait {
                        return Err(ConnectError::Unreachable {
                            host: host.to_owned(),
                            waited: started.elapsed(),
                            last,
                        });
                    }
                    tracing::debug!(host, ?delay, error = %last, "host not reachable yet");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn try_connect(
        host: &str,
        port: u16,
        pinned: &PinnedKey,
        user: &str,
        identity: &Path,
    ) -> Result<Ssh, Attempt> {
        let addr: SocketAddr = (host, port)
            .to_socket_addrs()
            .map_err(|e| Attempt::Retry(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| Attempt::Retry("no address".into()))?;
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| Attempt::Retry(e.to_string()))?;
        let mut session = Session::new()
            .map_err(|e| Attempt::Final(ConnectError::Other(e.into(), host.to_owned())))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(COMMAND_TIMEOUT_MS);
        // Ask for the pinned key's algorithm: a host with several host keys
        // (ed25519 and ECDSA, as Debian has) would otherwise offer the one
        // libssh2 prefers, and be refused although it holds the pinned key.
        session
            .method_pref(ssh2::MethodType::HostKey, &pinned.algorithm)
            .map_err(|e| Attempt::Final(ConnectError::Other(e.into(), host.to_owned())))?;
        // sshd may accept TCP before it is ready to speak SSH: retry the handshake too.
        session
            .handshake()
            .map_err(|e| Attempt::Retry(format!("handshake: {e}")))?;
        let (key, _) = session
            .host_key()
            .ok_or_else(|| Attempt::Retry("no host key offered".into()))?;
        if key != pinned.blob.as_slice() {
            let _ = session.disconnect(None, "host key mismatch", None);
            return Err(Attempt::Final(ConnectError::WrongHostKey {
                host: host.to_owned(),
                presented: PinnedKey::fingerprint(key),
                pinned: PinnedKey::fingerprint(&pinned.blob),
            }));
        }
        session
            .userauth_pubkey_file(user, None, identity, None)
            .map_err(|e| {
                Attempt::Final(ConnectError::Other(
                    anyhow!("login as {user} with {}: {e}", identity.display()),
                    host.to_owned(),
                ))
            })?;
        Ok(Ssh {
            session,
            host: host.to_owned(),
        })
    }

    /// Runs `command` through the remote shell.
    pub fn run(&self, command: &str) -> Result<Output> {
        self.run_with_input(command, &[])
    }

    /// Runs `command` and fails with its stderr when it fails.
    pub fn check(&self, command: &str) -> Result<String> {
        let out = self.run(command)?;
        if out.status != 0 {
            bail!(
                "{}: `{command}` exited with {}: {}",
                self.host,
                out.status,
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }

    /// Runs `command` with `input` on its standard input: how files reach a
    /// host without their content ever being part of a command line.
    pub fn run_with_input(&self, command: &str, input: &[u8]) -> Result<Output> {
        let mut channel = self
            .session
            .channel_session()
            .with_context(|| format!("{}: open a channel", self.host))?;
        channel
            .exec(command)
            .with_context(|| format!("{}: run a command", self.host))?;
        channel.write_all(input)?;
        channel.send_eof()?;
        let mut stdout = String::new();
        channel.read_to_string(&mut stdout)?;
        let mut stderr = String::new();
        channel.stderr().read_to_string(&mut stderr)?;
        channel.wait_close()?;
        Ok(Output {
            status: channel.exit_status()?,
            stdout,
            stderr,
        })
    }
}

impl Ssh {
    /// Runs `command` with everything `input` yields on its standard input,
    /// streamed (the install phase's kexec tarball is hundreds of MiB).
    pub fn run_with_reader(&self, command: &str, input: &mut dyn Read) -> Result<Output> {
        let mut channel = self
            .session
            .channel_session()
            .with_context(|| format!("{}: open a channel", self.host))?;
        channel
            .exec(command)
            .with_context(|| format!("{}: run a command", self.host))?;
        std::io::copy(input, &mut channel)
            .with_context(|| format!("{}: send to `{command}`", self.host))?;
        channel.send_eof()?;
        let mut stdout = String::new();
        channel.read_to_string(&mut stdout)?;
        let mut stderr = String::new();
        channel.stderr().read_to_string(&mut stderr)?;
        channel.wait_close()?;
        Ok(Output {
            status: channel.exit_status()?,
            stdout,
            stderr,
        })
    }

    /// Runs `command` and streams its standard output into `out` (files too
    /// big to hold in memory: archived recordings). Returns the exit status
    /// and standard error.
    pub fn run_to_writer(&self, command: &str, out: &mut dyn Write) -> Result<(i32, String)> {
        let mut channel = self
            .session
            .channel_session()
            .with_context(|| format!("{}: open a channel", self.host))?;
        channel
            .exec(command)
            .with_context(|| format!("{}: run a command", self.host))?;
        channel.send_eof()?;
        std::io::copy(&mut channel, out)?;
        let mut stderr = String::new();
        channel.stderr().read_to_string(&mut stderr)?;
        channel.wait_close()?;
        Ok((channel.exit_status()?, stderr))
    }
}

/// How long one remote command may stay silent: switching a system can
/// start many services (BigBlueButton's containers) without printing.
const COMMAND_TIMEOUT_MS: u32 = 15 * 60 * 1000;

enum Attempt {
    Retry(String),
    Final(ConnectError),
}
