//! Test hosts: each a network namespace with its own address, its own /nix
//! (a real, separate Nix store) and its own sshd, configured the way
//! cloud-init would configure a rented server from its `user_data`. With
//! `fake-hcloud --hosts netns`, creating a server makes one and deleting the
//! server removes it. Needs root.
//!
//! Traffic only goes to the addresses of these namespaces, on veth links this
//! module made (10.233.0.0/16, one /30 per host).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::fake::{Addresses, NewServer, ServerHook};

/// What cloud-init would apply on first boot.
#[derive(Debug, Clone)]
pub struct Provisioning {
    /// `ssh-ed25519 AAAA…` keys allowed to log in as root (the cloud's ssh_keys).
    pub authorized_keys: Vec<String>,
    /// The OpenSSH private host key from `user_data`'s `ssh_keys.ed25519_private`.
    pub host_key_private: String,
}

impl Provisioning {
    /// Reads the part of cloud-config that venue writes: `ssh_keys:` with an
    /// `ed25519_private: |` block. Anything else is an error: a test host must
    /// not silently come up with a key nobody pinned.
    pub fn from_user_data(user_data: &str, authorized_keys: Vec<String>) -> Result<Provisioning> {
        if !user_data.starts_with("#cloud-config") {
            bail!("user_data is not #cloud-config");
        }
        let mut lines = user_data.lines().peekable();
        let mut private = String::new();
        while let Some(line) = lines.next() {
            if line.trim_start().starts_with("ed25519_private: |") {
                let indent = line.len() - line.trim_start().len();
                while let Some(next) = lines.peek() {
                    let next_indent = next.len() - next.trim_start().len();
                    if next.trim().is_empty() || next_indent <= indent {
                        break;
                    }
                    private.push_str(next.trim());
                    private.push('\n');
                    lines.next();
                }
            }
        }
        if !private.contains("BEGIN OPENSSH PRIVATE KEY") {
            bail!("user_data has no ssh_keys.ed25519_private host key");
        }
        Ok(Provisioning {
            authorized_keys,
            host_key_private: private,
        })
    }
}

/// One running test host.
#[derive(Debug)]
pub struct TestHost {
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    /// Its own directory: nix/ (bound over /nix), var-lib-venue/ (over
    /// /var/lib/venue), etc/ (sshd config and keys).
    pub dir: PathBuf,
    outer: String,
}

impl TestHost {
    /// Starts host `index` of this process, on the first /30 of
    /// 10.233.0.0/16 that no link of this machine uses.
    pub fn start(
        root: &Path,
        index: u32,
        name: &str,
        provisioning: &Provisioning,
    ) -> Result<TestHost> {
        let id = std::process::id() % 0xffff;
        let netns = format!("venue-{id:x}-{index}");
        // Interface names are at most 15 characters.
        let outer = format!("vo{id:x}x{index}");
        let inner = format!("vi{id:x}x{index}");
        let (outer_ip, address) = free_link()?;
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || name.is_empty() {
            bail!("test host name {name:?}: only letters, digits and '-' (it names a directory and goes into a shell command)");
        }
        // Made before the host exists: if the name is taken (another test
        // process), fail without Drop touching the other's namespace.
        run("ip", &["netns", "add", &netns])?;
        let dir = root.join(name);
        let etc = dir.join("etc");
        for d in [dir.join("nix"), dir.join("var-lib-venue"), etc.clone()] {
            std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
        }
        let host = TestHost {
            name: name.to_owned(),
            netns: netns.clone(),
            address,
            dir: dir.clone(),
            outer: outer.clone(),
        };
        // From here on, Drop cleans up whatever part was made.
        run(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
        )?;
        run("ip", &["link", "set", &inner, "netns", &netns])?;
        run(
            "ip",
            &["addr", "add", &format!("{outer_ip}/30"), "dev", &outer],
        )?;
        run("ip", &["link", "set", &outer, "up"])?;
        let in_ns = |args: &[&str]| -> Result<()> {
            let mut all = vec!["netns", "exec", &netns];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        in_ns(&["ip", "addr", "add", &format!("{address}/30"), "dev", &inner])?;
        in_ns(&["ip", "link", "set", &inner, "up"])?;
        in_ns(&["ip", "link", "set", "lo", "up"])?;

        write_private(
            &etc.join("ssh_host_ed25519_key"),
            &provisioning.host_key_private,
        )?;
        std::fs::write(
            etc.join("authorized_keys"),
            provisioning.authorized_keys.join("\n") + "\n",
        )?;
        let pid_file = dir.join("sshd.pid");
        std::fs::write(
            etc.join("sshd_config"),
            format!(
                "ListenAddress {address}:22\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nSetEnv NIX_CONF_DIR={}\n",
                etc.join("ssh_host_ed25519_key").display(),
                pid_file.display(),
                etc.join("authorized_keys").display(),
                etc.join("nix").display(),
            ),
        )?;
        // No binary cache can be reached from here: without this, every
        // substitution attempt would retry against cache.nixos.org.
        std::fs::create_dir_all(etc.join("nix"))?;
        std::fs::write(etc.join("nix/nix.conf"), "sandbox = false\nbuild-users-group =\nsubstituters =\nexperimental-features = nix-command\n")?;
        std::fs::create_dir_all("/run/sshd")?;
        std::fs::create_dir_all("/var/lib/venue")?;
        let script = format!(
            "mount --bind {nix} /nix && mount --bind {lib} /var/lib/venue && hostname {name} && exec /usr/sbin/sshd -f {conf}",
            nix = dir.join("nix").display(),
            lib = dir.join("var-lib-venue").display(),
            conf = etc.join("sshd_config").display(),
        );
        in_ns(&[
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])?;
        wait_listening(SocketAddr::from((address, 22)), Duration::from_secs(5))
            .with_context(|| format!("sshd of test host {name}"))?;
        Ok(host)
    }

    /// Bytes the machine has sent to this host over its link.
    pub fn bytes_received(&self) -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{}/statistics/tx_bytes", self.outer))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Bytes this host has sent to the machine over its link.
    pub fn bytes_sent(&self) -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{}/statistics/rx_bytes", self.outer))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn stop(&self) {
        // Everything the host started (sshd, its services) lives in its namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.netns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.outer])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The test hosts of one fake cloud, by server name.
/// Host numbers are unique in the process: several fakes may run at once in
/// one test binary, and names and addresses derive from the number.
static NEXT_HOST: AtomicU32 = AtomicU32::new(0);

pub struct NetnsHosts {
    root: PathBuf,
    hosts: Mutex<BTreeMap<String, TestHost>>,
}

impl NetnsHosts {
    /// Hosts keep their files under `root` (created; removed on drop).
    pub fn new(root: &Path) -> Result<NetnsHosts> {
        if !is_root() {
            bail!("test hosts need root (network namespaces, bind mounts)");
        }
        std::fs::create_dir_all(root)?;
        Ok(NetnsHosts {
            root: root.to_path_buf(),
            hosts: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn create(&self, name: &str, provisioning: &Provisioning) -> Result<Ipv4Addr> {
        let index = NEXT_HOST.fetch_add(1, Ordering::SeqCst);
        let host = TestHost::start(&self.root, index, name, provisioning)?;
        let address = host.address;
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), host);
        Ok(address)
    }

    pub fn delete(&self, name: &str) {
        // Dropping the host stops it.
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Runs `f` on the host named `name`, if it runs.
    pub fn with_host<T>(&self, name: &str, f: impl FnOnce(&TestHost) -> T) -> Option<T> {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(f)
    }

    /// Stops every host.
    pub fn clear(&self) {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn names(&self) -> Vec<String> {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// `fake-hcloud --hosts netns`: every created server becomes a test host,
/// provisioned from its user_data and ssh_keys; deleting it removes the host.
impl ServerHook for NetnsHosts {
    fn create(&self, server: &NewServer) -> Result<Addresses, String> {
        let provisioning = Provisioning::from_user_data(
            server.user_data.as_deref().unwrap_or(""),
            server.authorized_keys.clone(),
        )
        .map_err(|e| format!("test host {}: {e:#}", server.name))?;
        let ipv4 = self
            .create(&server.name, &provisioning)
            .map_err(|e| format!("test host {}: {e:#}", server.name))?;
        Ok(Addresses {
            ipv4: ipv4.to_string(),
            ipv6_net: format!("2001:db8:0:{:x}::", server.serial),
        })
    }

    fn deleted(&self, name: &str) {
        self.delete(name);
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The first /30 of 10.233.0.0/16 (from .4 on) whose addresses no interface
/// of this machine has. Serialised within the process; across processes the
/// chance of two picking the same link between scan and use is small.
fn free_link() -> Result<(Ipv4Addr, Ipv4Addr)> {
    static PICK: Mutex<()> = Mutex::new(());
    let _guard = PICK.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .context("run ip addr")?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    for n in 1u32..16384 {
        let base = n * 4;
        let outer = Ipv4Addr::new(10, 233, (base >> 8) as u8, (base & 0xff) as u8 + 1);
        let inner = Ipv4Addr::new(10, 233, (base >> 8) as u8, (base & 0xff) as u8 + 2);
        if !used.contains(&format!(" {outer}/"))
            && !RESERVED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&base)
        {
            RESERVED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(base);
            return Ok((outer, inner));
        }
    }
    bail!("no free /30 left in 10.233.0.0/16")
}

/// Links handed out by this process but perhaps not configured yet.
static RESERVED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn write_private(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

fn wait_listening(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("{addr} is not listening after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
