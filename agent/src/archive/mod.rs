//! Archiving what outlives the event: BigBlueButton's recordings, the
//! portal's database, whatever a host's system declares
//! (`/etc/venue/archive.json`, rendered by modules/archive.nix). `venue
//! archive` pulls it over the pinned SSH into `<state>/archive/<host>/…`
//! with a manifest of SHA-256 sums; `venue down` does the same first and
//! deletes a server only once its archive is verified; `venue status` says
//! what is not archived yet.
//!
//! The host hashes its files; only files whose sum the archive does not
//! already hold cross the network. Every copy is checked against the host's
//! sum before it is renamed into place and entered in the manifest, so a
//! crash at any moment leaves either a complete, recorded file, a complete
//! file the next run adopts after hashing it, or a `.part` file that is
//! copied again.

pub mod command;
pub mod declaration;
pub mod manifest;
pub mod remote;
pub mod space;

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use conference::Role;
use indicatif::ProgressBar;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cloud::types::Server;
use crate::deploy::ssh::{PinnedKey, Ssh};
use crate::deploy::{human_bytes, Host};
use crate::model::state::StateDir;
use crate::model::table::render;
use manifest::{Entry, Manifest};
use remote::{Declared, RemoteFile};

/// How to reach the hosts.
#[derive(Debug, Clone)]
pub struct Options {
    pub user: String,
    /// The event's deploy key (private key file).
    pub identity: PathBuf,
    /// How long to keep trying a host that does not answer.
    pub connect_wait: Duration,
    pub concurrency: usize,
}

impl Options {
    /// The event's deploy identity in `state`; `VENUE_ARCHIVE_CONNECT_SECONDS`
    /// overrides `connect_wait` (tests of unreachable hosts).
    pub fn new(state: &StateDir, connect_wait: Duration, concurrency: usize) -> Options {
        let connect_wait = std::env::var("VENUE_ARCHIVE_CONNECT_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(connect_wait);
        Options {
            user: "root".into(),
            identity: state.path("deploy_ed25519"),
            connect_wait,
            concurrency: concurrency.max(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every declared file is in the archive, verified against the manifest.
    Archived,
    /// The host holds nothing to archive (never deployed).
    Nothing,
    /// The archive is incomplete: the server must be kept.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub outcome: Outcome,
    /// Files and bytes the host holds, all now in the archive.
    pub files: usize,
    pub bytes: u64,
    /// Of those, sent over the network by this run.
    pub copied_files: usize,
    pub copied_bytes: u64,
    pub message: String,
}

impl HostReport {
    pub fn failed(host: &str, message: String) -> HostReport {
        HostReport {
            host: host.to_owned(),
            outcome: Outcome::Failed,
            files: 0,
            bytes: 0,
            copied_files: 0,
            copied_bytes: 0,
            message,
        }
    }
}

/// Journals one archive or delete step; tests crash the process there
/// (`VENUE_TEST_CRASH_AFTER`, see [`StateDir::step`]).
pub fn step(state: &StateDir, command: &str, what: &str) {
    state.step(command, what);
}

/// The manifest, shared by the hosts' threads.
struct Book {
    dir: PathBuf,
    manifest: Mutex<(Manifest, Instant)>,
}

impl Book {
    fn get(&self, host: &str, path: &str) -> Option<Entry> {
        self.lock().0.get(host, path).cloned()
    }

    /// Records an entry; saves at most about once a second (and always at
    /// the end of a host): an entry lost to a crash is adopted again by
    /// hashing the file on disk.
    fn put(&self, entry: Entry) -> Result<()> {
        let mut m = self.lock();
        m.0.put(entry);
        if m.1.elapsed() > Duration::from_secs(1) {
            m.0.save(&self.dir)?;
            m.1 = Instant::now();
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let mut m = self.lock();
        m.0.save(&self.dir)?;
        m.1 = Instant::now();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Manifest, Instant)> {
        self.manifest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `<state>/archive`, private like the rest of the state directory (the
/// portal's database holds attendees' addresses).
pub fn archive_dir(state: &StateDir) -> Result<PathBuf> {
    let dir = state.path("archive");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Archives every host, a bounded number at a time, with one progress line
/// per host (bytes, files). One host's failure does not stop the others.
pub fn archive(hosts: &[Host], state: &StateDir, opts: &Options) -> Result<Vec<HostReport>> {
    let dir = archive_dir(state)?;
    let book = Book {
        manifest: Mutex::new((Manifest::load(&dir)?, Instant::now())),
        dir,
    };
    let mut reports = crate::parallel::per_host(
        hosts,
        opts.concurrency,
        "{spinner} {prefix:<24} {bytes:>10}/{total_bytes:<10} {wide_msg}",
        || ProgressBar::new(0),
        |h| h.name.clone(),
        |host, bar| {
            let report = match archive_host(host, state, &book, opts, bar) {
                Ok(r) => r,
                Err(e) => HostReport::failed(&host.name, format!("{e:#}")),
            };
            // What was copied before a failure stays recorded.
            if let Err(e) = book.save() {
                tracing::error!(error = %format!("{e:#}"), "cannot save the manifest");
            }
            bar.finish_with_message(format!("{:?}: {}", report.outcome, report.message));
            state.journal(
                "archive",
                &format!("{}: {:?}: {}", report.host, report.outcome, report.message),
            );
            report
        },
    );
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(reports)
}

/// One file the host holds, where it goes in the archive.
struct Found {
    item: String,
    rel: String,
    file: RemoteFile,
}

fn connect(host: &Host, opts: &Options) -> Result<Ssh> {
    let pinned = PinnedKey::parse(&host.host_key)
        .with_context(|| format!("the pinned host key of {}", host.name))?;
    wait_for_banner(host, opts.connect_wait)?;
    Ok(Ssh::connect(
        &host.address,
        host.port,
        &pinned,
        &opts.user,
        &opts.identity,
        opts.connect_wait,
    )?)
}

/// Waits until the host's sshd greets (`SSH-…`). A dead address behind a
/// middlebox can accept TCP and then say nothing, and the SSH handshake
/// would wait for the session's long command timeout.
fn wait_for_banner(host: &Host, wait: Duration) -> Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = (|| -> Result<()> {
            let addr = (host.address.as_str(), host.port)
                .to_socket_addrs()?
                .next()
                .context("no address")?;
            let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut banner = [0u8; 4];
            tcp.read_exact(&mut banner)
                .context("no SSH greeting within 5 s")?;
            if &banner != b"SSH-" {
                bail!("it does not speak SSH");
            }
            Ok(())
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() + delay > wait => bail!(
                "{} ({}) did not accept SSH connections within {:.0} s: {e:#}",
                host.name,
                host.address,
                started.elapsed().as_secs_f64()
            ),
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn declaration(ssh: &Ssh, host: &Host) -> Result<Option<declaration::Declaration>> {
    match remote::read_declaration(ssh)? {
        Declared::NeverDeployed => Ok(None),
        Declared::Missing => bail!(
            "its system declares nothing to archive ({} is missing), so venue cannot tell what {} holds; save what matters by hand, then `venue down --discard`",
            declaration::PATH,
            host.name
        ),
        Declared::Items(d) => Ok(Some(d)),
    }
}

fn archive_host(
    host: &Host,
    state: &StateDir,
    book: &Book,
    opts: &Options,
    bar: &ProgressBar,
) -> Result<HostReport> {
    bar.set_message(format!("connecting to {}", host.address));
    let ssh = connect(host, opts)?;
    let Some(decl) = declaration(&ssh, host)? else {
        return Ok(HostReport {
            outcome: Outcome::Nothing,
            message: "never deployed: nothing to archive".into(),
            ..HostReport::failed(&host.name, String::new())
        });
    };
    // Dumps first, then one listing with sums per item.
    let mut found = Vec::new();
    for (name, item) in &decl.items {
        if let Some(command) = &item.dump {
            bar.set_message(format!("dumping {name}"));
            remote::dump(&ssh, name, command)?;
        }
        bar.set_message(format!("hashing {name} on the host"));
        let files = remote::list(&ssh, &item.path, true)?;
        if item.dump.is_some() && files.is_empty() {
            bail!("the dump of {name} did not write {}", item.path);
        }
        for file in files {
            found.push(Found {
                item: name.clone(),
                rel: declaration::local_rel(name, &item.path, &file.remote)?,
                file,
            });
        }
    }
    let host_dir = book.dir.join(&host.name);
    let mut to_copy = Vec::new();
    for f in &found {
        let sha = f.file.sha256.as_deref().context("listing without sums")?;
        let local = host_dir.join(&f.rel);
        let on_disk = std::fs::metadata(&local)
            .map(|m| m.is_file() && m.len() == f.file.size)
            .unwrap_or(false);
        let recorded = book
            .get(&host.name, &f.rel)
            .filter(|e| e.sha256 == sha && e.size == f.file.size);
        if let Some(old) = recorded.filter(|_| on_disk) {
            if old.mtime != f.file.mtime || old.remote != f.file.remote {
                // The same content under another time (the event ran again,
                // the host was rebuilt from a snapshot): the archive holds
                // it; the manifest takes the host's time, which `verify`
                // compares with, instead of a copy.
                book.put(Entry {
                    mtime: f.file.mtime,
                    remote: f.file.remote.clone(),
                    ..old
                })?;
                step(
                    state,
                    "archive",
                    &format!(
                        "{}: {} holds the archived content under a new time: recorded",
                        host.name, f.rel
                    ),
                );
            }
            continue;
        }
        if on_disk && sha256_file(&local)? == sha {
            // Copied by a run that crashed before it could record it.
            book.put(entry(&host.name, f))?;
            step(
                state,
                "archive",
                &format!("{}: {} was on disk already: recorded", host.name, f.rel),
            );
            continue;
        }
        to_copy.push(f);
    }
    let sizes: Vec<u64> = to_copy.iter().map(|f| f.file.size).collect();
    let _room = space::reserve(&book.dir, &sizes)
        .with_context(|| format!("{} files of {} to copy", to_copy.len(), host.name))?;
    bar.set_length(sizes.iter().sum());
    let (mut copied_files, mut copied_bytes) = (0, 0);
    for (i, f) in to_copy.iter().enumerate() {
        bar.set_message(format!("file {}/{}: {}", i + 1, to_copy.len(), f.rel));
        copy_one(&ssh, f, &host_dir.join(&f.rel), bar)?;
        book.put(entry(&host.name, f))?;
        copied_files += 1;
        copied_bytes += f.file.size;
        step(
            state,
            "archive",
            &format!("{}: copied {} ({} bytes)", host.name, f.rel, f.file.size),
        );
    }
    book.save()?;
    bar.set_message("verifying");
    let (files, bytes) = verify(&ssh, host, &decl, book, &found)?;
    step(
        state,
        "archive",
        &format!("{}: verified {files} files, {bytes} bytes", host.name),
    );
    Ok(HostReport {
        host: host.name.clone(),
        outcome: Outcome::Archived,
        files,
        bytes,
        copied_files,
        copied_bytes,
        message: format!(
            "{files} files ({}) archived and verified; {copied_files} copied now ({})",
            human_bytes(bytes),
            human_bytes(copied_bytes)
        ),
    })
}

fn entry(host: &str, f: &Found) -> Entry {
    Entry {
        host: host.to_owned(),
        path: f.rel.clone(),
        remote: f.file.remote.clone(),
        size: f.file.size,
        mtime: f.file.mtime,
        sha256: f.file.sha256.clone().unwrap_or_default(),
        archived: Utc::now(),
    }
}

/// Copies one file into `<local>.part`, checks size and sum against what the
/// host computed, syncs, and renames it into place.
fn copy_one(ssh: &Ssh, f: &Found, local: &Path, bar: &ProgressBar) -> Result<()> {
    let parent = local.parent().context("archive path without a parent")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .with_context(|| format!("creating {}", parent.display()))?;
    let part = local.with_file_name(format!(
        ".{}.part",
        local.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let result = (|| -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .with_context(|| format!("creating {}", part.display()))?;
        let mut w = Hashing {
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            sha: Sha256::new(),
            n: 0,
            bar,
        };
        remote::fetch(ssh, &f.file.remote, &mut w)
            .with_context(|| format!("writing {}", part.display()))?;
        let file = w
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", part.display()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", part.display()))?;
        let sha = conference::protocol::hex(&w.sha.finalize());
        if w.n != f.file.size || Some(&sha) != f.file.sha256.as_ref() {
            bail!(
                "{}:{} changed while it was copied ({} bytes, sha256 {sha}; the host had said {} bytes, {}); run again",
                ssh.host,
                f.file.remote,
                w.n,
                f.file.size,
                f.file.sha256.as_deref().unwrap_or("-")
            );
        }
        std::fs::rename(&part, local)
            .with_context(|| format!("moving {} into place", part.display()))
    })();
    if result.is_err() {
        // Frees the space at once (a full disk) and leaves nothing half-copied.
        let _ = std::fs::remove_file(&part);
    }
    result
}

struct Hashing<'a, W: Write> {
    out: W,
    sha: Sha256,
    n: u64,
    bar: &'a ProgressBar,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.out.write(buf)?;
        self.sha.update(&buf[..k]);
        self.n += k as u64;
        self.bar.inc(k as u64);
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    Ok(conference::protocol::hex(&sha.finalize()))
}

/// The host's archive is complete: a fresh listing finds no file the
/// manifest lacks or holds with another size or time (a recording published
/// meanwhile), each dump is recorded with the sum it had in this run, and
/// every local copy still hashes to its manifest sum. Returns (files, bytes).
fn verify(
    ssh: &Ssh,
    host: &Host,
    decl: &declaration::Declaration,
    book: &Book,
    found: &[Found],
) -> Result<(usize, u64)> {
    let mut entries = Vec::new();
    for (name, item) in &decl.items {
        if item.dump.is_some() {
            for f in found.iter().filter(|f| &f.item == name) {
                match book.get(&host.name, &f.rel) {
                    Some(e) if Some(&e.sha256) == f.file.sha256.as_ref() => entries.push(e),
                    _ => bail!("the dump {} is not in the manifest", f.rel),
                }
            }
            continue;
        }
        for file in remote::list(ssh, &item.path, false)? {
            let rel = declaration::local_rel(name, &item.path, &file.remote)?;
            match book.get(&host.name, &rel) {
                Some(e) if e.size == file.size && e.mtime == file.mtime => entries.push(e),
                Some(_) => bail!(
                    "{} changed after it was archived; run again to archive it",
                    file.remote
                ),
                None => bail!(
                    "{} appeared after the archive was made; run again to archive it",
                    file.remote
                ),
            }
        }
    }
    let host_dir = book.dir.join(&host.name);
    let mut bytes = 0;
    for e in &entries {
        let local = host_dir.join(&e.path);
        let sha = sha256_file(&local)?;
        if sha != e.sha256 {
            bail!(
                "the archived copy {} does not match the manifest (sha256 {sha}, manifest {}): it was changed or damaged; move it away and run again",
                local.display(),
                e.sha256
            );
        }
        bytes += e.size;
    }
    Ok((entries.len(), bytes))
}

/// The servers `venue down` is about to delete, as hosts to archive, with
/// the host key pinned when the server was created. A server whose key the
/// state directory does not hold cannot be archived safely: it is reported
/// as failed (and kept).
pub fn hosts_of_servers(servers: &[Server], state: &StateDir) -> (Vec<Host>, Vec<HostReport>) {
    let mut hosts = Vec::new();
    let mut failed = Vec::new();
    for s in servers {
        let key_file = format!("hosts/{}/ssh_host_ed25519_key.pub", s.name);
        let role = s.labels.get(crate::cloud::labels::ROLE).and_then(|r| {
            serde_json::from_value::<Role>(serde_json::Value::String(r.clone())).ok()
        });
        match (state.read(&key_file), s.ipv4(), role) {
            (Some(key), Some(address), Some(role)) => hosts.push(Host {
                name: s.name.clone(),
                roles: vec![role],
                address,
                port: 22,
                host_key: key.trim().to_owned(),
            }),
            (None, _, _) => failed.push(HostReport::failed(
                &s.name,
                format!(
                    "no pinned host key ({} is missing), so venue will not log in to it",
                    state.path(&key_file).display()
                ),
            )),
            (_, None, _) => {
                failed.push(HostReport::failed(&s.name, "it has no IPv4 address".into()))
            }
            (_, _, None) => failed.push(HostReport::failed(
                &s.name,
                "it has no known venue/role label".into(),
            )),
        }
    }
    (hosts, failed)
}

/// The summary table of an archive run.
pub fn table(reports: &[HostReport]) -> String {
    let mut rows = vec![["HOST", "ARCHIVE", "FILES", "SIZE", "COPIED", "MESSAGE"]
        .map(String::from)
        .to_vec()];
    for r in reports {
        rows.push(vec![
            r.host.clone(),
            serde_json::to_value(r.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            r.files.to_string(),
            human_bytes(r.bytes),
            human_bytes(r.copied_bytes),
            r.message.clone(),
        ]);
    }
    render(&rows)
}

/// What a host holds that the archive does not (yet), for `venue status`.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub host: String,
    /// Files not in the manifest, or there with another size or time.
    pub files: usize,
    pub bytes: u64,
    /// Dumps (the portal's database) never archived; their size is known
    /// only once dumped.
    pub dumps: usize,
    /// Why the host could not be asked.
    pub error: Option<String>,
}

/// Asks every host what it holds and compares with the manifest by path,
/// size and modification time (no hashing: status stays cheap on a busy
/// server; `venue archive` and `venue down` compare sums).
pub fn pending(hosts: &[Host], state: &StateDir, opts: &Options) -> Result<Vec<Pending>> {
    let manifest = Manifest::load(&state.path("archive"))?;
    let out = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for host in hosts {
            let (manifest, out) = (&manifest, &out);
            scope.spawn(move || {
                let mut p = Pending {
                    host: host.name.clone(),
                    files: 0,
                    bytes: 0,
                    dumps: 0,
                    error: None,
                };
                let r = (|| -> Result<()> {
                    let ssh = connect(host, opts)?;
                    let Some(decl) = declaration(&ssh, host)? else {
                        return Ok(());
                    };
                    for (name, item) in &decl.items {
                        if item.dump.is_some() {
                            if manifest.get(&host.name, name).is_none() {
                                p.dumps += 1;
                            }
                            continue;
                        }
                        for f in remote::list(&ssh, &item.path, false)? {
                            let rel = declaration::local_rel(name, &item.path, &f.remote)?;
                            let done = manifest
                                .get(&host.name, &rel)
                                .is_some_and(|e| e.size == f.size && e.mtime == f.mtime);
                            if !done {
                                p.files += 1;
                                p.bytes += f.size;
                            }
                        }
                    }
                    Ok(())
                })();
                if let Err(e) = r {
                    p.error = Some(format!("{e:#}"));
                }
                out.lock().unwrap_or_else(|e| e.into_inner()).push(p);
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|e| e.into_inner());
    out.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(out)
}

/// The pending table for `venue status`.
pub fn pending_text(pending: &[Pending]) -> String {
    let mut rows = vec![["HOST", "NOT ARCHIVED YET"].map(String::from).to_vec()];
    for p in pending {
        let what = match &p.error {
            Some(e) => format!("unknown: {e}"),
            None if p.files == 0 && p.dumps == 0 => "nothing".into(),
            None => {
                let mut s = format!("{} files, {}", p.files, human_bytes(p.bytes));
                if p.dumps > 0 {
                    s.push_str(&format!(" and {} database dump(s)", p.dumps));
                }
                s
            }
        };
        rows.push(vec![p.host.clone(), what]);
    }
    render(&rows)
}

/// `venue down`'s archive step: archives the servers about to be deleted
/// (all but those already deleting) and prints the outcome (on stderr with
/// `json`, which keeps stdout for the JSON report). Returns the names of the
/// servers to keep: their archive failed or could not be made.
pub fn before_down(
    event: &conference::Event,
    state: &StateDir,
    servers: &[Server],
    json: bool,
) -> Result<Vec<String>> {
    let servers: Vec<Server> = servers
        .iter()
        .filter(|s| s.status != "deleting")
        .cloned()
        .collect();
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    let (hosts, mut reports) = hosts_of_servers(&servers, state);
    // A server venue never gave a system (`venue up --no-deploy`, a snapshot
    // that was never deployed) holds nothing of the event's: it goes
    // without being asked, which it may not even answer.
    let (hosts, never): (Vec<Host>, Vec<Host>) = hosts.into_iter().partition(|h| {
        servers.iter().any(|s| {
            s.name == h.name
                && s.ipv4()
                    .into_iter()
                    .chain(s.ipv6_host())
                    .any(|a| state.ran_system(&s.name, &a))
        })
    });
    reports.extend(never.iter().map(|h| HostReport {
        outcome: Outcome::Nothing,
        message: "venue never put a system on it (state journal): nothing to archive".into(),
        ..HostReport::failed(&h.name, String::new())
    }));
    let say = |text: String| {
        if json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    say(format!(
        "archiving {} server(s) before deleting them\n",
        servers.len()
    ));
    let opts = Options::new(
        state,
        Duration::from_secs(30),
        event.deploy.concurrency as usize,
    );
    reports.extend(archive(&hosts, state, &opts)?);
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    say(table(&reports));
    Ok(reports
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| r.host.clone())
        .collect())
}

/// The command to run again once the cause is fixed.
pub fn retry_command(event_file: &Path, state: Option<&Path>, yes: bool) -> String {
    let mut cmd = format!(
        "venue down {}",
        remote::quote_if_needed(&event_file.display().to_string())
    );
    if let Some(s) = state {
        cmd.push_str(&format!(
            " --state {}",
            remote::quote_if_needed(&s.display().to_string())
        ));
    }
    if yes {
        cmd.push_str(" --yes");
    }
    cmd
}
