//! The portal's configuration file. It names secret *files*, never secrets:
//! the agent (or the NixOS module) writes the secrets to disk with mode 0400.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use conference::protocol::bbb::Checksum;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    session_secret_file: Option<PathBuf>,
    poll_interval_seconds: Option<f64>,
    /// The portal's public URL (`https://portal.example.org`): BBB's logout
    /// URL points back here, and cookies get `Secure` when it is https.
    public_url: Option<String>,
    /// Timetable window around now.
    timetable_before_minutes: Option<u32>,
    timetable_after_minutes: Option<u32>,
    /// A session's Join button appears this long before it starts.
    join_early_minutes: Option<u32>,
    /// How long a login lasts.
    session_days: Option<u32>,
    #[serde(default)]
    bbb: Vec<BbbFile>,
    jitsi: Option<JitsiFile>,
    turn: Option<TurnFile>,
    stream: Option<StreamFile>,
    capture: Option<CaptureFile>,
    /// BBB servers beyond `[[bbb]]`, written by `venue autopilot` (crate::pool).
    pool_file: Option<PathBuf>,
    /// The bearer secret of `GET /pool/api/servers`.
    pool_api_secret_file: Option<PathBuf>,
    /// Secret files named in the pool file → the files to read instead.
    #[serde(default)]
    pool_secret_files: std::collections::BTreeMap<PathBuf, PathBuf>,
    /// The OpenID Connect provider for the homeserver (crate::oidc).
    oidc: Option<crate::oidc::config::OidcFile>,
    /// The event's Matrix homeserver, which the portal keeps in step (crate::chat).
    chat: Option<crate::chat::config::ChatFile>,
}

/// The stage captures: the capture hosts ask the portal which streamed rooms
/// should be live (`GET /capture/api/rooms`, with this shared secret).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureFile {
    secret_file: PathBuf,
    /// The origin's RTMP application, `rtmp://<origin>/live`: a room is
    /// pushed to `<rtmp_url>/<room slug>`.
    rtmp_url: String,
    /// A capture starts this long before a session and ends this long after it.
    margin_before_minutes: Option<u32>,
    margin_after_minutes: Option<u32>,
}

/// Where streamed rooms are watched: the HLS base URLs of the venue's
/// stream edges (or its origin), `<url>/<room slug>.m3u8`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamFile {
    urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BbbFile {
    name: String,
    url: String,
    secret_file: PathBuf,
    checksum: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JitsiFile {
    domain: String,
    app_id: String,
    secret_file: PathBuf,
    token_ttl_seconds: Option<i64>,
    /// prosody's mod_muc_size endpoint, `http://HOST:5280/room-size`.
    room_size_url: Option<String>,
    #[serde(default, rename = "bridge")]
    bridges: Vec<BridgeFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeFile {
    name: String,
    /// The videobridge's `/colibri/stats` (nixpkgs: colibriRestApi = true).
    stats_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnFile {
    uris: Vec<String>,
    secret_file: PathBuf,
    ttl_seconds: Option<i64>,
}

/// One BigBlueButton server.
#[derive(Clone)]
pub struct BbbServer {
    pub name: String,
    /// The API endpoint, `https://host/bigbluebutton/api`.
    pub url: String,
    pub secret: String,
    pub checksum: Checksum,
}

impl std::fmt::Debug for BbbServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BbbServer")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Jitsi {
    pub domain: String,
    pub app_id: String,
    pub secret: String,
    pub token_ttl: i64,
    pub room_size_url: Option<String>,
    pub bridges: Vec<Bridge>,
}

/// The stage captures' side of the portal.
#[derive(Clone)]
pub struct Capture {
    /// Shared with the capture hosts (the controller's bearer token).
    pub secret: String,
    pub rtmp_url: String,
    pub margin_before: chrono::Duration,
    pub margin_after: chrono::Duration,
}

/// A Jitsi videobridge whose statistics the portal reads.
#[derive(Clone, Debug)]
pub struct Bridge {
    pub name: String,
    pub stats_url: String,
}

fn http_url(what: &str, url: &str) -> Result<String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("{what}: `{url}` must start with http:// or https://");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[derive(Clone)]
pub struct Turn {
    pub uris: Vec<String>,
    pub secret: String,
    pub ttl: i64,
}

/// The resolved configuration, secrets read.
#[derive(Clone)]
pub struct Config {
    pub session_key: Vec<u8>,
    pub poll_interval: Duration,
    pub public_url: Option<String>,
    pub timetable_before: chrono::Duration,
    pub timetable_after: chrono::Duration,
    pub join_early: chrono::Duration,
    pub session_ttl: chrono::Duration,
    pub bbb: Vec<BbbServer>,
    pub jitsi: Option<Jitsi>,
    pub turn: Option<Turn>,
    /// HLS base URLs of the streams (edges, or the origin); empty: none.
    pub stream_urls: Vec<String>,
    pub capture: Option<Capture>,
    /// The pool file, if the pool may change while the portal runs.
    pub pool: Option<crate::pool::file::PoolSource>,
    /// Shared with the agent: the pool API's bearer token.
    pub pool_api_secret: Option<String>,
    /// The OpenID Connect provider, when `[oidc]` is set.
    pub oidc: Option<crate::oidc::config::Oidc>,
    /// The homeserver, when `[chat]` is set.
    pub chat: Option<crate::chat::config::ChatConfig>,
}

fn read_secret(path: &Path, what: &str) -> Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} from {}", path.display()))?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(s)
}

impl Config {
    /// Reads `config` (or the development defaults without one); the session
    /// key comes from the config's `session_secret_file`, else from
    /// `state/session-key`, generated on first start.
    pub fn load(config: Option<&Path>, state: &Path) -> Result<Config> {
        let raw: ConfigFile = match config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end())
                })?
            }
            None => ConfigFile::default(),
        };
        let session_key = match &raw.session_secret_file {
            Some(p) => {
                let s = read_secret(p, "session secret")?;
                if s.len() < 16 {
                    bail!(
                        "the session secret in {} is too short (at least 16 characters)",
                        p.display()
                    );
                }
                s.into_bytes()
            }
            None => state_key(state)?,
        };
        let poll = raw.poll_interval_seconds.unwrap_or(10.0);
        if !(0.05..=3600.0).contains(&poll) {
            bail!("poll_interval_seconds must be between 0.05 and 3600, not {poll}");
        }
        let mut bbb = Vec::new();
        for b in raw.bbb {
            if !(b.url.starts_with("http://") || b.url.starts_with("https://")) {
                bail!("BBB server {}: url must start with https://", b.name);
            }
            if bbb.iter().any(|o: &BbbServer| o.name == b.name) {
                bail!("BBB server {} is listed twice", b.name);
            }
            let checksum = match &b.checksum {
                None => Checksum::Sha256,
                Some(c) => c
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("BBB server {}: {e}", b.name))?,
            };
            bbb.push(BbbServer {
                secret: read_secret(&b.secret_file, &format!("BBB secret of {}", b.name))?,
                name: b.name,
                url: b.url.trim_end_matches('/').to_owned(),
                checksum,
            });
        }
        let jitsi = match raw.jitsi {
            Some(j) => {
                let mut bridges: Vec<Bridge> = Vec::new();
                for b in j.bridges {
                    if bridges.iter().any(|o| o.name == b.name) {
                        bail!("Jitsi bridge {} is listed twice", b.name);
                    }
                    bridges.push(Bridge {
                        stats_url: http_url(
                            &format!("Jitsi bridge {} stats_url", b.name),
                            &b.stats_url,
                        )?,
                        name: b.name,
                    });
                }
                Some(Jitsi {
                    secret: read_secret(&j.secret_file, "Jitsi JWT secret")?,
                    domain: j.domain,
                    app_id: j.app_id,
                    token_ttl: j.token_ttl_seconds.unwrap_or(300).clamp(30, 86400),
                    room_size_url: j
                        .room_size_url
                        .map(|u| http_url("[jitsi] room_size_url", &u))
                        .transpose()?,
                    bridges,
                })
            }
            None => None,
        };
        let turn = match raw.turn {
            Some(t) => Some(Turn {
                secret: read_secret(&t.secret_file, "TURN secret")?,
                uris: t.uris,
                ttl: t.ttl_seconds.unwrap_or(86400).clamp(60, 7 * 86400),
            }),
            None => None,
        };
        let minutes =
            |m: Option<u32>, default: i64| chrono::Duration::minutes(m.map_or(default, i64::from));
        let capture = match raw.capture {
            Some(c) => {
                if !(c.rtmp_url.starts_with("rtmp://") || c.rtmp_url.starts_with("rtmps://")) {
                    bail!(
                        "[capture] rtmp_url: `{}` must start with rtmp:// or rtmps://",
                        c.rtmp_url
                    );
                }
                let secret = read_secret(&c.secret_file, "capture secret")?;
                if secret.len() < 16 {
                    bail!(
                        "the capture secret in {} is too short (at least 16 characters)",
                        c.secret_file.display()
                    );
                }
                Some(Capture {
                    secret,
                    rtmp_url: c.rtmp_url.trim_end_matches('/').to_owned(),
                    margin_before: minutes(c.margin_before_minutes, 5),
                    margin_after: minutes(c.margin_after_minutes, 10),
                })
            }
            None => None,
        };
        if raw.pool_file.is_none() && !raw.pool_secret_files.is_empty() {
            bail!("pool_secret_files is set but pool_file is not");
        }
        let pool_api_secret = match &raw.pool_api_secret_file {
            Some(p) => {
                let s = read_secret(p, "pool API secret")?;
                if s.len() < 16 {
                    bail!(
                        "the pool API secret in {} is too short (at least 16 characters)",
                        p.display()
                    );
                }
                Some(s)
            }
            None => None,
        };
        let oidc = raw
            .oidc
            .map(|o| crate::oidc::config::Oidc::resolve(o, raw.public_url.as_deref(), state))
            .transpose()?;
        let chat = raw
            .chat
            .map(|c| crate::chat::config::ChatConfig::resolve(c, state))
            .transpose()?;
        Ok(Config {
            oidc,
            chat,
            session_key,
            poll_interval: Duration::from_secs_f64(poll),
            public_url: raw.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            timetable_before: minutes(raw.timetable_before_minutes, 30),
            timetable_after: minutes(raw.timetable_after_minutes, 180),
            join_early: minutes(raw.join_early_minutes, 10),
            session_ttl: chrono::Duration::days(i64::from(raw.session_days.unwrap_or(14))),
            bbb,
            jitsi,
            turn,
            stream_urls: match raw.stream {
                None => Vec::new(),
                Some(st) => st
                    .urls
                    .iter()
                    .map(|u| http_url("[stream] urls", u))
                    .collect::<Result<_>>()?,
            },
            capture,
            pool: raw.pool_file.map(|path| crate::pool::file::PoolSource {
                path,
                secret_files: raw.pool_secret_files,
            }),
            pool_api_secret,
        })
    }
}

/// The development session key: 32 random bytes in `state/session-key`.
fn state_key(state: &Path) -> Result<Vec<u8>> {
    let path = state.join("session-key");
    if let Ok(k) = std::fs::read(&path) {
        if k.len() >= 32 {
            return Ok(k);
        }
    }
    let key = crate::random_bytes::<32>().to_vec();
    write_private(&path, &key)?;
    Ok(key)
}

pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}
