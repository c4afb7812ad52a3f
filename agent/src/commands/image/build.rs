//! `venue image build`: one small server becomes a venue snapshot. Rent the
//! cheapest server type of the architecture in the location (Ubuntu, with a
//! host key venue generated and pins, as `venue up` does), install the base
//! system on it (the install phase, over the pinned SSH), power it off,
//! `create_image` (type snapshot, labelled with the profile hash), wait
//! until the image is available, delete the server.
//!
//! The build server and its SSH key carry `venue/image-build` and no
//! `venue/event`: `venue down` of an event never sees them, and a build
//! that crashed is cleaned up by the next one (it deletes every server with
//! that label before renting a new one).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cloud::labels::Labels;
use crate::cloud::types::{Server, SshKey};
use crate::cloud::{actions, Client};
use crate::images::profile::{Arch, Source};
use crate::images::snapshots::{self, ARCH, BUILD, IMAGE};
use crate::model::keys::{self, KeyPair};
use crate::model::state::StateDir;

/// The public image the build server starts from.
use crate::images::PUBLIC_IMAGE;
const WAIT: Duration = Duration::from_secs(20 * 60);

/// What the install step gets: a freshly rented Ubuntu server, reachable
/// with the pinned host key, and the system to install on it.
pub struct Target<'a> {
    pub name: &'a str,
    pub address: &'a str,
    /// `ssh-ed25519 AAAA…`: the only key the server may present.
    pub host_key: &'a str,
    /// The private key root accepts (the build's deploy key).
    pub identity: PathBuf,
    pub system: PathBuf,
    pub state: &'a StateDir,
    /// What the base comes from (and so what installs it).
    pub source: &'a Source,
    pub arch: Arch,
}

/// Installs `target.system` on the server: the install phase's function.
pub type Install<'a> = &'a (dyn Fn(&Target) -> Result<()> + Sync);

pub struct BuildOptions<'a> {
    pub source: Source,
    pub arch: Arch,
    pub location: String,
    pub state: &'a StateDir,
    /// Build even when an image of this profile exists.
    pub force: bool,
}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub image: u64,
    pub profile: String,
    pub arch: &'static str,
    /// False when an image of this profile existed already.
    pub built: bool,
    pub server_type: Option<String>,
    pub image_size_gb: Option<f64>,
    /// (step, seconds), in order.
    pub steps: Vec<(String, f64)>,
}

/// One progress line per step, with its time when done.
struct Steps {
    done: Vec<(String, f64)>,
    total: usize,
}

impl Steps {
    async fn run<T>(
        &mut self,
        what: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let n = self.done.len() + 1;
        let bar = ProgressBar::new_spinner()
            .with_style(
                ProgressStyle::with_template("{spinner} [{prefix}] {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            )
            .with_prefix(format!("{n}/{}", self.total))
            .with_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(150));
        let started = Instant::now();
        let out = f.await;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        match &out {
            Ok(_) => eprintln!("[{n}/{}] {what}: done in {secs:.1}s", self.total),
            Err(_) => eprintln!("[{n}/{}] {what}: failed after {secs:.1}s", self.total),
        }
        self.done
            .push((what.to_owned(), (secs * 10.0).round() / 10.0));
        out
    }
}

pub async fn build(
    client: &Client,
    opts: &BuildOptions<'_>,
    install: Install<'_>,
) -> Result<BuildReport> {
    let arch = opts.arch;
    let mut steps = Steps {
        done: Vec::new(),
        total: 7,
    };
    let source = opts.source.clone();
    let (system, profile) = steps
        .run(
            &format!("building the base system ({})", source.describe()),
            async { tokio::task::block_in_place(|| source.build(arch)) },
        )
        .await?;
    if !opts.force {
        if let Some(s) = snapshots::newest(client, &profile, arch).await? {
            eprintln!(
                "image {} already holds this base system ({profile}, {}): nothing to build (--force builds another)",
                s.id,
                arch.label()
            );
            return Ok(BuildReport {
                image: s.id,
                profile,
                arch: arch.label(),
                built: false,
                server_type: None,
                image_size_gb: s.image_size,
                steps: steps.done,
            });
        }
    }
    steps
        .run("removing what a crashed build left", clean_up(client))
        .await?;
    let deploy = keys::deploy_key(opts.state, "image-build")?;
    let rented = steps
        .run(
            "renting the build server",
            rent(client, opts, &profile, &deploy),
        )
        .await;
    let (server, server_type) = match rented {
        Ok(r) => r,
        Err(e) => {
            // rent() deleted a server that failed to come up; the key goes too.
            delete_build_key(client, &deploy).await.ok();
            return Err(e);
        }
    };
    let host_key = keys::host_key(opts.state, &server.name)?;
    let address = server
        .ipv4()
        .ok_or_else(|| anyhow!("build server {} has no IPv4 address", server.name))?;
    let target = Target {
        name: &server.name,
        address: &address,
        host_key: &host_key.public,
        identity: opts.state.path("deploy_ed25519"),
        system: system.clone(),
        state: opts.state,
        source: &opts.source,
        arch,
    };
    // A failure from here on leaves a server that costs money: delete it
    // now (a build killed outright is cleaned up by the next one).
    let image = match snapshot_of(
        client, &server, &target, &profile, arch, &mut steps, install,
    )
    .await
    {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "image build failed: deleting the build server {}",
                server.name
            );
            if let Err(d) = delete_server(client, server.id).await {
                eprintln!(
                    "deleting {} failed too ({d:#}): the next build removes it",
                    server.name
                );
            }
            delete_build_key(client, &deploy).await.ok();
            return Err(e);
        }
    };
    steps
        .run(
            "deleting the build server",
            delete_server(client, server.id),
        )
        .await?;
    delete_build_key(client, &deploy).await?;
    Ok(BuildReport {
        image: image.id,
        profile,
        arch: arch.label(),
        built: true,
        server_type: Some(server_type),
        image_size_gb: image.image_size,
        steps: steps.done,
    })
}

/// Install, power off, snapshot: the image, once available.
async fn snapshot_of(
    client: &Client,
    server: &Server,
    target: &Target<'_>,
    profile: &str,
    arch: Arch,
    steps: &mut Steps,
    install: Install<'_>,
) -> Result<snapshots::Snapshot> {
    let system = &target.system;
    steps
        .run(
            &format!("installing {} on {}", system.display(), server.name),
            async { tokio::task::block_in_place(|| install(target)) },
        )
        .await?;
    steps
        .run(
            "powering off",
            server_action(client, server.id, "poweroff", None),
        )
        .await?;
    let labels = Labels::from([
        (IMAGE.to_owned(), profile.to_owned()),
        (ARCH.to_owned(), arch.label().to_owned()),
    ]);
    let body = json!({
        "type": "snapshot",
        "description": format!("venue base {profile} ({})", arch.label()),
        "labels": labels,
    });
    let image = steps
        .run("creating the snapshot", async {
            let v = server_action(client, server.id, "create_image", Some(&body)).await?;
            let id = v["image"]["id"]
                .as_u64()
                .ok_or_else(|| anyhow!("create_image answered no image id: {v}"))?;
            let image: snapshots::Snapshot =
                client.get(&format!("/images/{id}"), &[], "image").await?;
            if image.status != "available" {
                bail!("image {id} is {} after its action finished", image.status);
            }
            Ok(image)
        })
        .await?;
    Ok(image)
}

/// Deletes every server a previous build left (crashed before its end).
async fn clean_up(client: &Client) -> Result<()> {
    let left: Vec<Server> = client
        .list(
            "/servers",
            &[("label_selector", BUILD.to_owned())],
            "servers",
        )
        .await?;
    for s in left.iter().filter(|s| s.labels.contains_key(BUILD)) {
        eprintln!(
            "deleting {} (id {}), left by an unfinished image build",
            s.name, s.id
        );
        delete_server(client, s.id).await?;
    }
    Ok(())
}

/// The cheapest non-deprecated server type of `arch` sold in `location`.
async fn cheapest_type(client: &Client, arch: Arch, location: &str) -> Result<String> {
    let types: Vec<Value> = client.list("/server_types", &[], "server_types").await?;
    types
        .iter()
        .filter(|t| t["architecture"] == arch.label() && t["deprecation"].is_null())
        .filter_map(|t| {
            let price = t["prices"]
                .as_array()?
                .iter()
                .find(|p| p["location"] == location)?;
            let monthly =
                crate::cloud::pricing::micro_eur(price["price_monthly"]["net"].as_str()?)?;
            Some((monthly, t["name"].as_str()?.to_owned()))
        })
        .min()
        .map(|(_, name)| name)
        .ok_or_else(|| anyhow!("no {} server type is sold in {location}", arch.label()))
}

async fn rent(
    client: &Client,
    opts: &BuildOptions<'_>,
    profile: &str,
    deploy: &KeyPair,
) -> Result<(Server, String)> {
    let server_type = cheapest_type(client, opts.arch, &opts.location).await?;
    let key = ensure_key(client, deploy).await?;
    let name = format!("venue-image-{}-{}", opts.arch.label(), &profile[..12]);
    let host = keys::host_key(opts.state, &name)?;
    let body = json!({
        "name": name,
        "server_type": server_type,
        "location": opts.location,
        "image": PUBLIC_IMAGE,
        "labels": {BUILD: profile, ARCH: opts.arch.label()},
        "ssh_keys": [key.name],
        "user_data": keys::user_data(&name, &host),
        "start_after_create": true,
        "public_net": {"enable_ipv4": true, "enable_ipv6": true},
    });
    let v = client
        .request(Method::POST, "/servers", &[], Some(&body))
        .await
        .with_context(|| format!("creating the build server {name}"))?;
    let server: Server = crate::cloud::client::decode(&v, "server", "POST", "/servers")?;
    let mut ids: Vec<u64> = v["action"]["id"].as_u64().into_iter().collect();
    ids.extend(
        v["next_actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["id"].as_u64()),
    );
    let done = actions::wait_all(client, &ids, "creating the build server", WAIT).await?;
    if let Some(e) = actions::first_error(&done) {
        // A broken build server is no use: the next build's clean-up would
        // find it, but deleting it now costs nothing.
        delete_server(client, server.id).await.ok();
        return Err(anyhow!(e).context(format!("creating the build server {name}")));
    }
    let server: Server = client
        .get(&format!("/servers/{}", server.id), &[], "server")
        .await?;
    if server.status != "running" {
        bail!("build server {name} is {} after its start", server.status);
    }
    Ok((server, server_type))
}

/// The build's SSH key in the cloud (root's authorized key on the build
/// server): found by fingerprint, else created with the build label.
async fn ensure_key(client: &Client, deploy: &KeyPair) -> Result<SshKey> {
    let fp = keys::md5_fingerprint(&deploy.public)
        .ok_or_else(|| anyhow!("cannot fingerprint the image build's deploy key"))?;
    let found: Vec<SshKey> = client
        .list("/ssh_keys", &[("fingerprint", fp)], "ssh_keys")
        .await?;
    if let Some(k) = found.into_iter().next() {
        return Ok(k);
    }
    let name = "venue-image-build";
    // A key of that name from a lost state directory: ours (labelled), replace it.
    let same: Vec<SshKey> = client
        .list("/ssh_keys", &[("name", name.to_owned())], "ssh_keys")
        .await?;
    if let Some(old) = same.into_iter().next() {
        if !old.labels.contains_key(BUILD) {
            bail!("an SSH key named {name} exists without the label {BUILD}: rename or delete it");
        }
        client
            .request(Method::DELETE, &format!("/ssh_keys/{}", old.id), &[], None)
            .await?;
    }
    let body = json!({"name": name, "public_key": deploy.public, "labels": {BUILD: "key"}});
    let v = client
        .request(Method::POST, "/ssh_keys", &[], Some(&body))
        .await?;
    Ok(crate::cloud::client::decode(
        &v,
        "ssh_key",
        "POST",
        "/ssh_keys",
    )?)
}

async fn delete_build_key(client: &Client, deploy: &KeyPair) -> Result<()> {
    let Some(fp) = keys::md5_fingerprint(&deploy.public) else {
        return Ok(());
    };
    let found: Vec<SshKey> = client
        .list("/ssh_keys", &[("fingerprint", fp)], "ssh_keys")
        .await?;
    for k in found.iter().filter(|k| k.labels.contains_key(BUILD)) {
        match client
            .request(Method::DELETE, &format!("/ssh_keys/{}", k.id), &[], None)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Runs a server action and waits for it; an action that fails is an error.
async fn server_action(
    client: &Client,
    server: u64,
    action: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let path = format!("/servers/{server}/actions/{action}");
    let v = client.request(Method::POST, &path, &[], body).await?;
    let id = v["action"]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("POST {path} answered no action"))?;
    let done = actions::wait_all(client, &[id], action, WAIT).await?;
    if let Some(e) = actions::first_error(&done) {
        return Err(anyhow!(e).context(format!("{action} of server {server}")));
    }
    Ok(v)
}

async fn delete_server(client: &Client, id: u64) -> Result<()> {
    let v = match client
        .request(Method::DELETE, &format!("/servers/{id}"), &[], None)
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let ids: Vec<u64> = v["action"]["id"].as_u64().into_iter().collect();
    let done = actions::wait_all(client, &ids, "deleting the build server", WAIT).await?;
    if let Some(e) = actions::first_error(&done) {
        return Err(anyhow!(e).context(format!("deleting server {id}")));
    }
    Ok(())
}

/// The install phase on the build server (agent/src/install): kexec into
/// the installer, disko, nixos-install of the base, reboot, checked with the
/// pinned key at every step. Its phases are printed.
pub fn install_base(target: &Target) -> Result<()> {
    use crate::install::{self, artifacts, How};
    // The installer's artifacts take a fleet: this one server, of no event.
    let fleet = json!({
        "event": "venue-image", "domain": "venue-image.invalid",
        "servers": [{"name": target.name, "role": "base", "server_type": "", "location": "",
                     "ipv4": target.address, "ipv6": null, "static": false}],
    });
    let fleet_json = target.state.write(
        &format!("{}.fleet.json", target.name),
        fleet.to_string().as_bytes(),
        0o644,
    )?;
    let (kexec, disko) = target
        .source
        .build_installer(target.arch, target.name, &fleet_json)?;
    let built = artifacts::Lazy::ready(artifacts::Artifacts {
        kexec: artifacts::tarball(&kexec)?,
        disko: [(target.name.to_owned(), disko)].into(),
    });
    let deploy = keys::deploy_key(target.state, "image-build")?;
    let host = install::Target {
        host: crate::deploy::Host {
            name: target.name.to_owned(),
            roles: Vec::new(),
            address: target.address.to_owned(),
            port: 22,
            host_key: target.host_key.to_owned(),
        },
        host_key_private: keys::host_key(target.state, target.name)?.private,
        authorized_key: deploy.public,
        system: target.system.clone(),
        from_snapshot: false,
    };
    let opts = install::Options {
        user: "root".into(),
        identity: target.identity.clone(),
        work_dir: target.state.dir.clone(),
        concurrency: 1,
        boot_wait: Duration::from_secs(10 * 60),
        kexec_wait: install::kexec_wait_from_env(),
        reboot: true,
    };
    // The build's own progress line is the one shown; no second bar.
    let bar = ProgressBar::hidden();
    let report = install::install_one(&host, &built, &opts, None, &bar);
    let phases: Vec<String> = report
        .phases
        .iter()
        .map(|(p, s)| format!("{p} {s:.1}s"))
        .collect();
    eprintln!("    install phases: {}", phases.join(", "));
    let expected = target.system.display().to_string();
    match report.install {
        How::Installed | How::Already if report.system.as_deref() == Some(expected.as_str()) => {
            Ok(())
        }
        How::Installed | How::Already => bail!(
            "{} runs {} after the install, not the base system {expected}",
            target.name,
            report.system.as_deref().unwrap_or("no system")
        ),
        _ => bail!("installing {}: {}", target.name, report.message),
    }
}
