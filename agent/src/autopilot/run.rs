//! The autopilot's loop: tick, converge, sleep until the next tick or the
//! next rent or release, whichever comes first, by the venue's clock
//! (`VENUE_CLOCK`: a rehearsal plays two days in minutes). Every action is
//! journalled (`autopilot`, with the venue time) and printed. A tick that
//! fails is journalled and tried again at the next: a flaky API does not
//! stop the venue. Killed at any moment and started again, it converges
//! from what the cloud holds (the labels are the truth).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use anyhow::Result;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use conference::clock::Clock;
use conference::{Event, Role};
use serde_json::json;

use super::lead;
use super::load;
use super::schedule::Timeline;
use crate::cloud::Client;
use crate::commands::block_on;
use crate::commands::inventory::Inventory;
use crate::converge::{self, How};
use crate::model::state::StateDir;
use crate::plan::prices::PriceTable;
use crate::plan::{Plan, PlannedServer};

/// The journal's command for the autopilot's own lines.
pub const JOURNAL: &str = "autopilot";

pub struct Options {
    pub event: PathBuf,
    pub state: Option<PathBuf>,
    /// Between ticks, in venue time.
    pub interval: Duration,
    pub json: bool,
}

/// What the loop keeps between ticks.
struct Pilot {
    event: Event,
    state: StateDir,
    clock: Clock,
    plan: Plan,
    prices: PriceTable,
    json: bool,
    /// The hosts were deployed and healthy after the last change; false at
    /// start, so a run killed mid-deploy deploys again.
    healthy: bool,
    /// BigBlueButton servers the load asked for beyond the plan.
    extra: Vec<PlannedServer>,
    /// Servers the load drains (they take no new meeting).
    draining: BTreeSet<String>,
    /// The pool as last written to the portal: (server, draining).
    published: Option<Vec<(String, bool)>>,
    /// The day the load's unobserved decision was last journalled.
    unobserved_said: Option<chrono::NaiveDate>,
}

impl Pilot {
    /// Journals and prints one line, with the venue's time.
    fn say(&self, what: &str) {
        let now = self.clock.now();
        let t = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        self.state.journal(JOURNAL, &format!("{t}: {what}"));
        if self.json {
            println!("{}", json!({"time": t, "what": what}));
        } else {
            println!("{t}  {what}");
        }
    }
}

pub fn run(opts: &Options) -> Result<()> {
    let event = Event::load(&opts.event)?;
    crate::deploy::command::preflight(&event)?;
    let clock = Clock::from_env()?;
    let state = StateDir::open(StateDir::locate(
        &opts.event,
        &event.id,
        opts.state.as_deref(),
    ))?;
    let _lock = state.lock()?;
    let (prices, warning) = block_on(crate::cloud::pricing::live_or_bundled());
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    // The plan `venue plan` makes: rooms at their measured peaks where
    // measured.json has them.
    let measured = crate::plan::measured::load(&state.dir, &event)?;
    let plan = crate::plan::plan_measured(&event, &prices, measured.as_ref())?;
    let mut p = Pilot {
        event,
        state,
        clock,
        plan,
        prices,
        json: opts.json,
        healthy: false,
        extra: Vec::new(),
        draining: BTreeSet::new(),
        published: None,
        unobserved_said: None,
    };
    p.say(&format!(
        "start: {} servers planned, ticks every {} s of venue time{}",
        p.plan.server_count(),
        opts.interval.num_seconds(),
        if p.clock.is_real() {
            String::new()
        } else {
            format!(" (clock {}, {}x)", p.clock, p.clock.speed())
        }
    ));
    loop {
        let now = p.clock.now();
        // Peaks measured meanwhile (measured.json) size the plan as they
        // size `venue plan`'s.
        if let Ok(measured) = crate::plan::measured::load(&p.state.dir, &p.event) {
            if let Ok(plan) = crate::plan::plan_measured(&p.event, &p.prices, measured.as_ref()) {
                p.plan = plan;
            }
        }
        let lead = lead::from_journal(&p.state);
        let timeline = Timeline::of(&p.plan, p.event.cloud.warmup, lead.duration());
        let mut wanted = timeline.wanted(now);
        let over = timeline.end().is_none_or(|end| now >= end);
        if !over && !wanted.is_empty() {
            load_step(&mut p, now, &wanted, lead.duration());
            wanted.extend(p.extra.iter().cloned());
        } else {
            p.extra.clear();
        }
        match tick(&mut p, &wanted) {
            Ok(left) => {
                if over && left == 0 {
                    p.say("done: the event is over and nothing of it is left in the cloud");
                    return Ok(());
                }
            }
            Err(e) => p.say(&format!("tick failed, trying again: {e:#}")),
        }
        let now = p.clock.now();
        let next = timeline
            .next_change(now)
            .map_or(now + opts.interval, |c| c.min(now + opts.interval));
        // A second past it: the clock's rounding must not wake us just before.
        let venue = (next - now + Duration::seconds(1))
            .to_std()
            .unwrap_or(StdDuration::ZERO);
        std::thread::sleep(p.clock.real_duration(venue));
    }
}

/// One convergence to `wanted`. Returns how many servers of the event are
/// left in the cloud.
fn tick(p: &mut Pilot, wanted: &[PlannedServer]) -> Result<usize> {
    let id = p.event.id.clone();
    let inv = block_on(async { Inventory::load(&Client::from_env()?, &id).await })?;
    let is_wanted = |name: &str| wanted.iter().any(|w| w.name == name);
    let unwanted: Vec<_> = inv
        .servers
        .iter()
        .filter(|s| !is_wanted(&s.name))
        .cloned()
        .collect();
    if wanted.is_empty() {
        // Nothing wanted: no server, and nothing else of the event
        // (firewall, SSH key, DNS records) until the next rent.
        let dns = block_on(crate::cloud::dns::publish::list(&p.event))
            .ok()
            .flatten()
            .unwrap_or_default();
        if inv.is_empty() && dns.is_empty() {
            return Ok(0);
        }
        for s in &unwanted {
            p.say(&format!("releasing {}: archive, verify, delete", s.name));
        }
        let down = block_on(async {
            let client = Client::from_env()?;
            converge::to_nothing(&client, &p.event, &p.state, &p.prices, &inv, false, p.json).await
        })?;
        report_release(p, &unwanted, &down.released.kept);
        if !down.dns_deleted.is_empty() {
            p.say(&format!(
                "deleted {} DNS record sets",
                down.dns_deleted.len()
            ));
        }
        p.healthy = false;
        return Ok(down.released.kept.len());
    }
    let mut changed = false;
    if !unwanted.is_empty() {
        for s in &unwanted {
            p.say(&format!("releasing {}: archive, verify, delete", s.name));
        }
        let how = How {
            everything: false,
            discard: false,
            json: p.json,
        };
        let released = block_on(async {
            let client = Client::from_env()?;
            converge::archive_and_release(&client, &p.event, &p.state, &p.prices, &unwanted, how)
                .await
        })?;
        report_release(p, &unwanted, &released.kept);
        changed = true;
    }
    let missing: Vec<&PlannedServer> = wanted
        .iter()
        .filter(|w| {
            !inv.servers
                .iter()
                .any(|s| s.name == w.name && s.status == "running")
        })
        .collect();
    if !missing.is_empty() || changed || !p.healthy {
        for m in &missing {
            p.say(&format!(
                "renting {} ({} {})",
                m.name, m.role, m.server_type
            ));
        }
        p.healthy = false;
        let mut rented = block_on(async {
            let client = Client::from_env()?;
            converge::rent(&client, &p.event, &p.state, wanted, &p.clock).await
        })?;
        for name in &rented.report.created {
            p.say(&format!("rented {name}"));
        }
        let ready = converge::ready(&p.event, &p.state, wanted, &mut rented, &p.clock)?;
        let unhealthy: Vec<String> = ready
            .deployed
            .iter()
            .filter(|r| {
                !matches!(
                    r.outcome,
                    crate::deploy::Outcome::Healthy | crate::deploy::Outcome::Unchanged
                )
            })
            .map(|r| format!("{} ({})", r.host, r.message))
            .collect();
        if unhealthy.is_empty() {
            p.healthy = true;
            p.say(&format!(
                "venue ready: {} hosts healthy ({} new)",
                ready.deployed.len(),
                rented.report.created.len()
            ));
        } else {
            p.say(&format!(
                "not healthy, trying again next tick: {}",
                unhealthy.join(", ")
            ));
        }
        let left = rented.report.fleet.servers.len();
        return Ok(left);
    }
    Ok(inv.servers.len() - unwanted.len())
}

fn report_release(p: &Pilot, servers: &[crate::cloud::types::Server], kept: &[String]) {
    for s in servers {
        if kept.contains(&s.name) {
            p.say(&format!(
                "kept {}: its archive is not complete (see the archive table); trying again next tick",
                s.name
            ));
        } else {
            p.say(&format!("released {} (archive verified)", s.name));
        }
    }
}

/// The load's say: extra BigBlueButton servers, drains, releases of
/// drained extras; then the pool goes to the portal. Servers of the
/// schedule are never released for load: the plan's window holds them.
fn load_step(p: &mut Pilot, now: DateTime<Utc>, scheduled: &[PlannedServer], lead: Duration) {
    let settings = load::Settings::new(&p.event.autopilot, &p.plan, lead);
    let measured = crate::plan::measured::load(&p.state.dir, &p.event)
        .ok()
        .flatten();
    let expected = load::expected_rooms(&p.event, now, settings.horizon(), measured.as_ref());
    let bbb_names: Vec<String> = scheduled
        .iter()
        .chain(p.extra.iter())
        .filter(|s| s.role == Role::Bbb)
        .map(|s| s.name.clone())
        .collect();
    let obs = load::Observation {
        event_id: p.event.id.clone(),
        bbb: bbb_names
            .iter()
            .map(|name| load::BbbServer {
                name: name.clone(),
                long_lived_units: None,
                state: if p.draining.contains(name) {
                    load::State::Draining
                } else {
                    load::State::Active
                },
                // Not polled here yet: unknown meetings are never released.
                meetings: None,
            })
            .collect(),
        bridges: Vec::new(),
        expected,
    };
    let pool: Vec<(String, bool)> = bbb_names
        .iter()
        .map(|n| (n.clone(), p.draining.contains(n)))
        .collect();
    // Acting on the load needs the servers' meetings: a scheduled server
    // drained on a guess could not be taken back, and a guessed-empty one
    // would be released under a live meeting. Until they are observed,
    // the schedule alone decides and the decision is only journalled.
    let observed = !obs.bbb.is_empty() && obs.bbb.iter().all(|b| b.meetings.is_some());
    let decision = load::decide(&settings, &obs);
    if !observed {
        if !decision.is_empty() && p.unobserved_said != Some(now.date_naive()) {
            p.say(&format!(
                "load: meetings not observed, not acting on: {}",
                decision.notes.join("; ")
            ));
            p.unobserved_said = Some(now.date_naive());
        }
        publish_if_changed(p, pool);
        return;
    }
    for a in &decision.undrain {
        if p.draining.remove(&a.name) {
            p.say(&format!(
                "load: {} takes meetings again: {}",
                a.name, a.reason
            ));
        }
    }
    for a in &decision.drain {
        if p.draining.insert(a.name.clone()) {
            p.say(&format!("load: draining {}: {}", a.name, a.reason));
        }
    }
    for a in &decision.release {
        let extra = p.extra.iter().any(|s| s.name == a.name);
        if extra {
            p.extra.retain(|s| s.name != a.name);
            p.draining.remove(&a.name);
            p.say(&format!("load: releasing {}: {}", a.name, a.reason));
        }
    }
    for add in decision.add.iter().filter(|a| a.role == Role::Bbb) {
        let template = p.plan.fleet().into_iter().find(|s| s.role == Role::Bbb);
        let Some(template) = template else { continue };
        for _ in 0..add.count {
            let taken: BTreeSet<String> = p
                .plan
                .fleet()
                .into_iter()
                .chain(p.extra.iter().cloned())
                .map(|s| s.name)
                .collect();
            let name = (1..)
                .map(|n| format!("{}-bbb-{n}", p.event.id))
                .find(|n| !taken.contains(n))
                .expect("a free name");
            p.say(&format!("load: adding {name}: {}", add.reason));
            p.extra.push(PlannedServer {
                name,
                ..template.clone()
            });
        }
    }
    let pool: Vec<(String, bool)> = scheduled
        .iter()
        .chain(p.extra.iter())
        .filter(|s| s.role == Role::Bbb)
        .map(|s| (s.name.clone(), p.draining.contains(&s.name)))
        .collect();
    publish_if_changed(p, pool);
}

/// Tells the portal the pool when it changed (once the venue is healthy:
/// the portal host must answer).
fn publish_if_changed(p: &mut Pilot, pool: Vec<(String, bool)>) {
    if p.published.as_ref() != Some(&pool) && p.healthy {
        match publish_pool(p, &pool) {
            Ok(()) => {
                p.say(&format!(
                    "pool: {} BigBlueButton servers to the portal",
                    pool.len()
                ));
                p.published = Some(pool);
            }
            Err(e) => p.say(&format!(
                "pool: not published, trying again next tick: {e:#}"
            )),
        }
    }
}

/// Writes the pool file on the portal host (the fleet's portal server),
/// over the pinned SSH.
fn publish_pool(p: &Pilot, pool: &[(String, bool)]) -> Result<()> {
    let fleet: crate::model::fleet::Fleet = serde_json::from_str(
        &p.state
            .read("fleet.json")
            .ok_or_else(|| anyhow::anyhow!("no fleet.json yet"))?,
    )?;
    let Some(portal) = fleet.servers.iter().find(|s| s.role == "portal") else {
        // No portal of ours (a long-lived one): its owner's business.
        return Ok(());
    };
    let address = portal
        .ipv4
        .clone()
        .or_else(|| portal.ipv6.clone())
        .ok_or_else(|| anyhow::anyhow!("{} has no address", portal.name))?;
    let key = if portal.is_static {
        crate::deploy::command::hosts(&p.event, &p.state, &fleet)?
            .into_iter()
            .find(|h| h.name == portal.name)
            .map(|h| h.host_key)
            .unwrap_or_default()
    } else {
        p.state
            .read(&format!("hosts/{}/ssh_host_ed25519_key.pub", portal.name))
            .unwrap_or_default()
    };
    let pinned = crate::deploy::ssh::PinnedKey::parse(key.trim())?;
    let ssh = crate::deploy::ssh::Ssh::connect(
        &address,
        22,
        &pinned,
        "root",
        &p.state.path("deploy_ed25519"),
        StdDuration::from_secs(30),
    )?;
    let file = super::pool::PoolFile {
        bbb: pool
            .iter()
            .map(|(name, draining)| {
                super::pool::Entry::new(
                    name,
                    &p.event.domain,
                    crate::check::setup::BBB_CHECKSUM,
                    *draining,
                )
            })
            .collect(),
        updated: p.clock.now(),
    };
    super::pool::publish(&ssh, &file)
}
