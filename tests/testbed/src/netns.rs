//! Test hosts: each a network namespace with its own address, its own /nix
//! (a real, separate Nix store) and its own sshd, configured the way
//! cloud-init would configure a rented server from its `user_data`. With
//! `fake-hcloud --hosts netns`, creating a server makes one and deleting the
//! server removes it. Needs root.
//!
//! A host boots what it "is" (see [`TestHost`]): the stock OS of a public
//! image (no Nix), the NixOS installer after the toy kexec, or the NixOS on
//! its disk (installed, preinstalled, or a snapshot's copy).
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

/// What a test host runs when it starts: the testbed's stand-in for the
/// image a server is created from.
#[derive(Debug, Clone)]
pub enum Boot {
    /// A public image (`ubuntu-24.04`, `debian-12`): no Nix store, an
    /// os-release naming that system, the host key where cloud-init puts it.
    /// `os` is the image's name.
    Public { os: String },
    /// NixOS already on its disk (today's static test hosts): an empty
    /// store that `venue deploy` fills.
    Installed,
    /// A copy of this disk (a venue snapshot, see [`NetnsHosts::snapshot_disk`]),
    /// with the host key and root's keys of the new server's own user_data
    /// and ssh_keys, as the first-boot unit of modules/hetzner.nix does.
    FromDisk(PathBuf),
}

/// One running test host.
///
/// The host "boots" in a loop (a supervisor shell in its network namespace):
/// each boot is a fresh mount namespace in which boot.sh binds what the
/// host's mode file (`hw/mode`: ubuntu, installer, nixos) says it runs over
/// /nix, /etc/ssh, /root, /var/lib/venue, /etc/os-release and a
/// private /run, then runs sshd in the foreground. The toy kexec and reboot
/// (hosts/testbed/installer.nix) write the next mode and stop sshd; the
/// supervisor then kills what the boot left and boots again. Layout of
/// `dir`:
/// - `hw/`: mode, faults/ (written by tests), kexec/ (what the toy kexec
///   loaded: the installer's files and the keys it carried); seen by the host
///   at /run/venue-testbed/hw.
/// - `disk/`: the installed system's files (nix/, etc/ssh/, root/.ssh/,
///   var/lib/venue/); seen at /run/venue-testbed/disk (the block device)
///   and, when the mode is nixos, at /nix, /etc/ssh, /root, … .
/// - `ubuntu/`, `ram/`: the other two modes' root files (`ram/` is refilled
///   from `hw/kexec/` at each installer boot).
/// - `nix` and `var-lib-venue`: links into `disk/`.
#[derive(Debug)]
pub struct TestHost {
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    pub dir: PathBuf,
    outer: String,
    supervisor: Mutex<Option<std::process::Child>>,
}

/// os-release of the installed system (as NixOS writes it) and of the kexec
/// installer (nixos-images sets VARIANT_ID=installer).
const NIXOS_RELEASE: &str =
    "NAME=NixOS\nID=nixos\nVERSION_ID=\"26.05\"\nPRETTY_NAME=\"NixOS 26.05 (venue testbed)\"\n";
pub const INSTALLER_RELEASE: &str = "NAME=NixOS\nID=nixos\nVARIANT_ID=installer\nVARIANT=\"Installer\"\nVERSION_ID=\"26.05\"\nPRETTY_NAME=\"NixOS 26.05 installer (venue testbed)\"\n";

fn public_release(os: &str) -> String {
    let (id, version) = os.split_once('-').unwrap_or((os, ""));
    let name = match id {
        "ubuntu" => "Ubuntu",
        "debian" => "Debian GNU/Linux",
        "fedora" => "Fedora Linux",
        "rocky" => "Rocky Linux",
        "alma" => "AlmaLinux",
        other => other,
    };
    format!("NAME=\"{name}\"\nID={id}\nVERSION_ID=\"{version}\"\nPRETTY_NAME=\"{name} {version} (venue testbed)\"\n")
}

impl TestHost {
    /// Starts host `index` of this process, on the first /30 of
    /// 10.233.0.0/16 that no link of this machine uses, as NixOS with an
    /// empty store (a preinstalled host).
    pub fn start(
        root: &Path,
        index: u32,
        name: &str,
        provisioning: &Provisioning,
    ) -> Result<TestHost> {
        Self::start_as(root, index, name, provisioning, &Boot::Installed)
    }

    /// Starts a host that boots `boot`.
    pub fn start_as(
        root: &Path,
        index: u32,
        name: &str,
        provisioning: &Provisioning,
        boot: &Boot,
    ) -> Result<TestHost> {
        let id = std::process::id() % 0xffff;
        let netns = format!("venue-{id:x}-{index}");
        // Interface names are at most 15 characters.
        let outer = format!("vo{id:x}x{index}");
        let inner = format!("vi{id:x}x{index}");
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || name.is_empty() {
            bail!("test host name {name:?}: only letters, digits and '-' (it names a directory and goes into a shell command)");
        }
        // Other test processes pick links too: one at a time, from the scan
        // until the link's address is on this machine for the next scan to see.
        let links = links_lock()?;
        // Set here, where hosts are made, not by whichever test or stage ran
        // before: a new machine forwards nothing.
        enable_forwarding()?;
        let (outer_ip, address) = free_link()?;
        // Made before the host exists: if the name is taken (another test
        // process), fail without Drop touching the other's namespace.
        run("ip", &["netns", "add", &netns])?;
        let dir = root.join(name);
        let host = TestHost {
            name: name.to_owned(),
            netns: netns.clone(),
            address,
            dir: dir.clone(),
            outer: outer.clone(),
            supervisor: Mutex::new(None),
        };
        // From here on, Drop cleans up whatever part was made.
        host.lay_out(provisioning, boot)?;
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
        drop(links);
        let in_ns = |args: &[&str]| -> Result<()> {
            let mut all = vec!["netns", "exec", &netns];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        in_ns(&["ip", "addr", "add", &format!("{address}/30"), "dev", &inner])?;
        in_ns(&["ip", "link", "set", &inner, "up"])?;
        in_ns(&["ip", "link", "set", "lo", "up"])?;
        // Hosts reach each other (the portal polls the BBB hosts) through
        // the machine, which forwards between the links; nothing beyond.
        in_ns(&[
            "ip",
            "route",
            "add",
            "10.233.0.0/16",
            "via",
            &outer_ip.to_string(),
        ])?;

        std::fs::write(
            dir.join("etc/sshd_config"),
            format!(
                "ListenAddress {address}:22\nHostKey /etc/ssh/ssh_host_ed25519_key\nPidFile /run/sshd.pid\n\
                 AuthorizedKeysFile /root/.ssh/authorized_keys\n\
                 StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nSetEnv NIX_CONF_DIR={}\n",
                dir.join("etc/nix").display(),
            ),
        )?;
        // No binary cache can be reached from here: without this, every
        // substitution attempt would retry against cache.nixos.org.
        std::fs::create_dir_all(dir.join("etc/nix"))?;
        std::fs::write(dir.join("etc/nix/nix.conf"), "sandbox = false\nbuild-users-group =\nsubstituters =\nexperimental-features = nix-command\n")?;
        // Mount points the boots bind over (harmless on the machine).
        for d in ["/var/lib/venue", "/etc/ssh", "/mnt", "/nix"] {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(dir.join("boot.sh"), boot_script(&dir, name))?;
        let missing = dir.join("etc/not-installed");
        std::fs::write(
            &missing,
            "#!/bin/sh\necho \"sh: $(basename \"$0\"): command not found\" >&2\nexit 127\n",
        )?;
        std::fs::set_permissions(
            &missing,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let supervisor = format!(
            "while [ ! -e {d}/hw/off ]; do \
               unshare --mount --uts --propagation private sh {d}/boot.sh >>{d}/boot.log 2>&1; \
               for p in $(ip netns pids {netns}); do [ \"$p\" = $$ ] || kill -KILL \"$p\" 2>/dev/null; done; \
               sleep 0.1; \
             done",
            d = dir.display(),
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &netns, "sh", "-c", &supervisor])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start the host's boot loop")?;
        *host.supervisor.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        wait_listening(SocketAddr::from((address, 22)), Duration::from_secs(5)).with_context(
            || {
                format!(
                    "sshd of test host {name}: {}",
                    std::fs::read_to_string(dir.join("boot.log")).unwrap_or_default()
                )
            },
        )?;
        Ok(host)
    }

    /// Writes the host's files for its first boot.
    fn lay_out(&self, provisioning: &Provisioning, boot: &Boot) -> Result<()> {
        let dir = &self.dir;
        for d in ["etc", "hw/faults", "hw/kexec", "ubuntu", "ram", "mnt-empty"] {
            let d = dir.join(d);
            std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
        }
        let disk = dir.join("disk");
        let mode = match boot {
            Boot::Public { os } => {
                let u = dir.join("ubuntu");
                for d in ["nix", "etc/ssh", "root/.ssh", "var/lib/venue"] {
                    std::fs::create_dir_all(u.join(d))?;
                }
                std::fs::write(dir.join("etc/os-release-ubuntu"), public_release(os))?;
                write_keys(&u, provisioning)?;
                std::fs::create_dir_all(&disk)?;
                "ubuntu"
            }
            Boot::Installed => {
                write_keys(&disk, provisioning)?;
                "nixos"
            }
            Boot::FromDisk(image) => {
                copy_tree(image, &disk)?;
                write_keys(&disk, provisioning)?;
                "nixos"
            }
        };
        for d in ["nix", "var/lib/venue"] {
            std::fs::create_dir_all(disk.join(d))?;
        }
        std::fs::write(dir.join("etc/os-release-nixos"), NIXOS_RELEASE)?;
        std::fs::write(dir.join("hw/mode"), format!("{mode}\n"))?;
        // Tests read a host's store and state where they always were.
        std::os::unix::fs::symlink("disk/nix", dir.join("nix"))?;
        std::os::unix::fs::symlink("disk/var/lib/venue", dir.join("var-lib-venue"))?;
        Ok(())
    }

    /// What the host runs now: `ubuntu`, `installer` or `nixos`.
    pub fn mode(&self) -> String {
        std::fs::read_to_string(self.dir.join("hw/mode"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Arms a fault of the toy installer (hosts/testbed/installer.nix):
    /// `kexec-silent` (content: how many times; empty: always),
    /// `kexec-new-key`, `block-<step>-before|after`.
    pub fn set_fault(&self, fault: &str, content: &str) -> Result<()> {
        std::fs::write(self.dir.join("hw/faults").join(fault), content)?;
        Ok(())
    }

    pub fn clear_fault(&self, fault: &str) {
        let _ = std::fs::remove_file(self.dir.join("hw/faults").join(fault));
    }

    /// True once a toy step blocked on the fault `block-…`.
    pub fn reached(&self, fault: &str) -> bool {
        self.dir
            .join("hw")
            .join(format!("reached-{fault}"))
            .exists()
    }

    /// The installed system's files (the "disk").
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk")
    }

    /// The installer's RAM: its store and what the toy kexec carried.
    pub fn ram(&self) -> PathBuf {
        self.dir.join("ram")
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
        // The boot loop first, so that it boots nothing more.
        let _ = std::fs::write(self.dir.join("hw/off"), "");
        if let Some(mut child) = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
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
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(sweep_orphans);
        Ok(NetnsHosts {
            root: root.to_path_buf(),
            hosts: Mutex::new(BTreeMap::new()),
        })
    }

    /// A host with NixOS already installed (an empty store): a static host.
    pub fn create(&self, name: &str, provisioning: &Provisioning) -> Result<Ipv4Addr> {
        self.create_as(name, provisioning, &Boot::Installed)
    }

    /// A host that boots `boot` (a public image, an installed system, or a
    /// copy of a snapshot's disk).
    pub fn create_as(
        &self,
        name: &str,
        provisioning: &Provisioning,
        boot: &Boot,
    ) -> Result<Ipv4Addr> {
        let index = NEXT_HOST.fetch_add(1, Ordering::SeqCst);
        let host = TestHost::start_as(&self.root, index, name, provisioning, boot)?;
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

    /// Copies the disk of host `name` (what its installed system wrote)
    /// to `dest`, which must not exist; returns its size in bytes.
    pub fn snapshot_disk(&self, name: &str, dest: &Path) -> Result<u64> {
        let disk = self
            .with_host(name, |h| h.disk())
            .with_context(|| format!("no test host named {name}"))?;
        if dest.exists() {
            bail!("{} exists already", dest.display());
        }
        copy_tree(&disk, dest)?;
        disk_usage(dest)
    }

    /// Where the disk of the snapshot image `id` is kept.
    pub fn image_dir(&self, id: u64) -> PathBuf {
        self.root.join("images").join(id.to_string())
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
/// A server of a public image boots that system (no Nix); one of a snapshot
/// boots a copy of the snapshot's disk.
impl ServerHook for NetnsHosts {
    fn create(&self, server: &NewServer) -> Result<Addresses, String> {
        let provisioning = Provisioning::from_user_data(
            server.user_data.as_deref().unwrap_or(""),
            server.authorized_keys.clone(),
        )
        .map_err(|e| format!("test host {}: {e:#}", server.name))?;
        let boot = match server.snapshot {
            Some(id) => Boot::FromDisk(self.image_dir(id)),
            None => Boot::Public {
                os: server.image.clone(),
            },
        };
        let ipv4 = self
            .create_as(&server.name, &provisioning, &boot)
            .map_err(|e| format!("test host {}: {e:#}", server.name))?;
        Ok(Addresses {
            ipv4: ipv4.to_string(),
            ipv6_net: format!("2001:db8:0:{:x}::", server.serial),
        })
    }

    fn deleted(&self, name: &str) {
        self.delete(name);
    }

    fn snapshot(&self, server: &str, image: u64) -> Result<Option<u64>, String> {
        let dest = self.image_dir(image);
        std::fs::create_dir_all(self.root.join("images")).map_err(|e| e.to_string())?;
        self.snapshot_disk(server, &dest)
            .map(Some)
            .map_err(|e| format!("snapshot of test host {server}: {e:#}"))
    }

    fn image_deleted(&self, image: u64) {
        let _ = std::fs::remove_dir_all(self.image_dir(image));
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

/// Hosts reach each other (the portal polls the BBB hosts, a bridge logs in
/// to its Jitsi host) only through this machine, which routes between their
/// links: that needs IPv4 forwarding, and a FORWARD chain that lets the
/// testbed's own range through where a firewall (Docker's, say) drops by
/// default.
pub fn enable_forwarding() -> Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path)
        .map(|v| v.trim() != "1")
        .unwrap_or(true)
    {
        std::fs::write(path, "1\n")
            .with_context(|| format!("turn on {path} (test hosts route through this machine)"))?;
    }
    let forward_drops = Command::new("iptables")
        .args(["-S", "FORWARD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("-P FORWARD DROP"))
        .unwrap_or(false);
    if forward_drops {
        let rule = [
            "FORWARD",
            "-s",
            "10.233.0.0/16",
            "-d",
            "10.233.0.0/16",
            "-j",
            "ACCEPT",
        ];
        let present = Command::new("iptables")
            .arg("-C")
            .args(rule)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !present {
            let mut args = vec!["-I"];
            args.extend(rule);
            run("iptables", &args)?;
        }
    }
    Ok(())
}

/// Removes the test hosts of test processes that are gone: a process killed
/// before its hosts' Drop leaves their namespaces, links and services (sshd,
/// nginx, the toy services) running. A host is `venue-<id>-<n>`, `<id>` its
/// maker's pid modulo 0xffff in hex; it is left alone while any process has
/// a pid with that remainder (another test's hosts, or a pid that came back).
pub fn sweep_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let live: std::collections::BTreeSet<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .map(|pid| pid % 0xffff)
                .collect()
        })
        .unwrap_or_default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some((id, index)) = name
            .strip_prefix("venue-")
            .and_then(|rest| rest.split_once('-'))
        else {
            continue;
        };
        let (Ok(id_value), Ok(_)) = (u32::from_str_radix(id, 16), index.parse::<u32>()) else {
            continue;
        };
        if live.contains(&id_value) {
            continue;
        }
        tracing::warn!(
            netns = name,
            "removing a test host whose test process is gone"
        );
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = run("ip", &["netns", "del", name]);
        // Deleting the namespace deletes the pair; a link left without one goes too.
        let _ = Command::new("ip")
            .args(["link", "del", &format!("vo{id}x{index}")])
            .output();
    }
}

/// A lock shared by every process on the machine that makes test hosts.
fn links_lock() -> Result<std::fs::File> {
    let path = std::env::temp_dir().join("venue-testbed-links.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("lock {}", path.display()))?;
    Ok(file)
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

/// One boot of a test host: see [`TestHost`].
fn boot_script(dir: &Path, name: &str) -> String {
    format!(
        r#"# One boot of test host {name}: what hw/mode says it runs.
set -e
D={d}
mode=$(cat $D/hw/mode)
echo "$(date +%T.%N) booting $mode"
case $mode in
  ubuntu) root=$D/ubuntu ;;
  installer)
    # RAM is empty at boot; the kexec'd initrd fills it.
    rm -rf $D/ram && cp -a $D/hw/kexec $D/ram
    root=$D/ram ;;
  nixos) root=$D/disk ;;
  *) echo "unknown mode $mode"; sleep 1; exit 1 ;;
esac
mkdir -p $root/nix $root/etc/ssh $root/root/.ssh $root/var/lib/venue
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/sshd /run/venue-testbed/hw /run/venue-testbed/disk
mount --bind $D/hw /run/venue-testbed/hw
mount --bind $D/disk /run/venue-testbed/disk
mount --bind $root/nix /nix
mount --bind $root/etc/ssh /etc/ssh
mount --bind $root/root /root
mount --bind $root/var/lib/venue /var/lib/venue
mount --bind $D/mnt-empty /mnt
case $mode in
  ubuntu)
    # No Nix on a stock image: the machine's nix commands are not found.
    for f in /usr/bin/nix /usr/bin/nix-*; do
      [ -e "$f" ] && mount --bind $D/etc/not-installed "$f"
    done
    mount --bind $D/etc/os-release-$mode /etc/os-release ;;
  installer)
    mount --bind $root/etc/os-release /etc/os-release
    ln -s $root/system /run/current-system ;;
  *)
    mount --bind $D/etc/os-release-$mode /etc/os-release
    # The boot loader starts what the system profile names, and the system
    # starts its services as systemd would (a toy system's bin/boot).
    if [ -e /nix/var/nix/profiles/system ]; then
      ln -s "$(readlink -f /nix/var/nix/profiles/system)" /run/current-system
      if [ -x /run/current-system/bin/boot ]; then
        setsid sh /run/current-system/bin/boot </dev/null >>$D/services.log 2>&1 &
      fi
    fi ;;
esac
hostname {name}
exec /usr/sbin/sshd -D -e -f $D/etc/sshd_config
"#,
        d = dir.display(),
    )
}

/// The host key from user_data and root's keys from the cloud's ssh_keys,
/// where the system's sshd reads them, under `root`.
fn write_keys(root: &Path, provisioning: &Provisioning) -> Result<()> {
    std::fs::create_dir_all(root.join("etc/ssh"))?;
    std::fs::create_dir_all(root.join("root/.ssh"))?;
    write_private(
        &root.join("etc/ssh/ssh_host_ed25519_key"),
        &provisioning.host_key_private,
    )?;
    std::fs::write(
        root.join("root/.ssh/authorized_keys"),
        provisioning.authorized_keys.join("\n") + "\n",
    )?;
    Ok(())
}

/// `cp -a`: modes, links and the store's read-only files as they are.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if !from.is_dir() {
        bail!("{} is not a directory", from.display());
    }
    std::fs::create_dir_all(to)?;
    let out = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .context("run cp")?;
    if !out.status.success() {
        bail!(
            "cp -a {} {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn disk_usage(dir: &Path) -> Result<u64> {
    let out = Command::new("du")
        .args(["-sb"])
        .arg(dir)
        .output()
        .context("run du")?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du -sb {}", dir.display()))
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
