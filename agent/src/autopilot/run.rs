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

use super::extras::{self, Extras};
use super::lead;
use super::load;
use super::observe;
use super::schedule::Timeline;
use crate::cloud::inventory::Inventory;
use crate::cloud::Client;
use crate::converge::{self, How};
use crate::model::state::StateDir;
use crate::plan::prices::PriceTable;
use crate::plan::{Plan, PlannedServer};
use crate::runtime::block_on;

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
    /// event.toml, for what `venue check` reads (the meetings, directly).
    event_file: PathBuf,
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
    /// The plan's BigBlueButton servers wanted at the last tick.
    last_planned: Vec<PlannedServer>,
    /// The pool as last written to the portal: (server, draining).
    published: Option<Vec<(String, bool)>>,
    /// The day the load's unobserved decision was last journalled.
    unobserved_said: Option<chrono::NaiveDate>,
    /// Where the meetings were last read from (journalled when it changes).
    source: Option<Option<observe::Source>>,
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
        event_file: opts.event.clone(),
        state,
        clock,
        plan,
        prices,
        json: opts.json,
        healthy: false,
        extra: Vec::new(),
        draining: BTreeSet::new(),
        last_planned: Vec::new(),
        published: None,
        unobserved_said: None,
        source: None,
    };
    adopt_extras(&mut p)?;
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
            drain_what_left_the_plan(&mut p, &wanted);
            load_step(&mut p, now, &wanted, lead.duration());
        } else {
            end_of_window(&mut p);
        }
        p.last_planned = wanted
            .iter()
            .filter(|s| s.role == Role::Bbb)
            .cloned()
            .collect();
        wanted.extend(p.extra.iter().cloned());
        let result = tick(&mut p, &wanted);
        // The pool follows what the cloud holds now: a new server once it
        // is deployed, a released one once it is gone.
        if result.is_ok() && wanted.iter().any(|s| s.role == Role::Bbb) {
            let pool = pool_of(&p, &wanted);
            publish_if_changed(&mut p, pool);
        }
        match result {
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

/// The extras and drains of an earlier run: from autopilot.json, and any
/// BigBlueButton server of the event in the cloud beyond the plan (a run
/// killed between its rent and its next save). Adopted, not rented again.
fn adopt_extras(p: &mut Pilot) -> Result<()> {
    let saved = Extras::load(&p.state)?;
    let planned: BTreeSet<String> = p.plan.fleet().into_iter().map(|s| s.name).collect();
    let id = p.event.id.clone();
    // The file is written before any rent; the cloud is asked too, for a
    // file lost or older than the servers. A flaky API does not stop the
    // venue: the file alone then.
    let in_cloud = match block_on(async { Inventory::load(&Client::from_env()?, &id).await }) {
        Ok(inv) => extras::in_cloud(&id, &planned, &inv.servers),
        Err(e) => {
            p.say(&format!(
                "load: the cloud's servers not listed ({e:#}); extras from {} only",
                extras::FILE
            ));
            Vec::new()
        }
    };
    let mut names: Vec<String> = saved
        .extra
        .iter()
        .filter(|n| !planned.contains(*n))
        .cloned()
        .collect();
    for n in in_cloud {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let Some(template) = bbb_template(p) else {
        return Ok(());
    };
    for name in names {
        p.say(&format!(
            "load: {name} is an extra of an earlier run: adopted"
        ));
        p.extra.push(PlannedServer {
            name,
            ..template.clone()
        });
    }
    p.draining = saved.draining;
    save_extras(p);
    Ok(())
}

/// What an extra BigBlueButton server is rented as: the plan's.
fn bbb_template(p: &Pilot) -> Option<PlannedServer> {
    p.plan.fleet().into_iter().find(|s| s.role == Role::Bbb)
}

fn save_extras(p: &Pilot) {
    let e = Extras {
        extra: p.extra.iter().map(|s| s.name.clone()).collect(),
        draining: p.draining.clone(),
    };
    if let Err(e) = e.save(&p.state) {
        p.say(&format!("cannot save {}: {e:#}", extras::FILE));
    }
}

/// No BigBlueButton window is open: the extras go with the plan's servers
/// (archived first, by the tick), and nothing drains.
fn end_of_window(p: &mut Pilot) {
    if p.extra.is_empty() && p.draining.is_empty() {
        return;
    }
    for s in &p.extra {
        p.say(&format!(
            "load: {} goes with the plan's BigBlueButton window",
            s.name
        ));
    }
    p.extra.clear();
    p.draining.clear();
    p.published = None;
    save_extras(p);
}

/// The pool the portal should have: the BigBlueButton servers wanted now,
/// with their drains.
fn pool_of(p: &Pilot, wanted: &[PlannedServer]) -> Vec<(String, bool)> {
    wanted
        .iter()
        .filter(|s| s.role == Role::Bbb)
        .map(|s| (s.name.clone(), p.draining.contains(&s.name)))
        .collect()
}

/// A BigBlueButton server the plan let go while the window is still open
/// (peaks measured meanwhile shrank it) leaves as an extra does, by
/// draining: released once the portal says it is empty, or with the window.
/// Dropped at once, it would be archived and deleted with its meetings.
fn drain_what_left_the_plan(p: &mut Pilot, wanted: &[PlannedServer]) {
    if !wanted.iter().any(|s| s.role == Role::Bbb) {
        return;
    }
    let left = left_the_plan(&p.last_planned, wanted, &p.extra);
    if left.is_empty() {
        return;
    }
    for s in left {
        p.say(&format!(
            "load: {} left the plan (peaks measured meanwhile): draining it",
            s.name
        ));
        p.draining.insert(s.name.clone());
        p.extra.push(s);
    }
    save_extras(p);
}

/// The BigBlueButton servers planned at the last tick that the plan no
/// longer names and that are not extras already.
fn left_the_plan(
    before: &[PlannedServer],
    wanted: &[PlannedServer],
    extra: &[PlannedServer],
) -> Vec<PlannedServer> {
    let named = |list: &[PlannedServer], name: &str| list.iter().any(|s| s.name == name);
    before
        .iter()
        .filter(|s| s.role == Role::Bbb && !named(wanted, &s.name) && !named(extra, &s.name))
        .cloned()
        .collect()
}

/// The load's say, from the meetings observed: extra BigBlueButton
/// servers, drains, releases of drained extras. Servers of the schedule
/// are never released for load: the plan's window holds them.
fn load_step(p: &mut Pilot, now: DateTime<Utc>, scheduled: &[PlannedServer], lead: Duration) {
    // An extra whose name the plan took meanwhile (measured peaks grew it)
    // is the plan's now.
    let before = p.extra.len();
    let planned_again: Vec<String> = p
        .extra
        .iter()
        .filter(|e| scheduled.iter().any(|s| s.name == e.name))
        .map(|e| e.name.clone())
        .collect();
    for name in planned_again {
        // The plan's sizing wants it: it takes meetings again.
        if p.draining.remove(&name) {
            p.say(&format!(
                "load: {name} is the plan's again: takes meetings again"
            ));
        }
    }
    p.extra
        .retain(|e| !scheduled.iter().any(|s| s.name == e.name));
    if !scheduled.iter().any(|s| s.role == Role::Bbb) {
        end_of_window(p);
        return;
    }
    if p.extra.len() != before {
        save_extras(p);
    }
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
    let seen = observe::bbb(&p.event_file, &p.state.dir, &bbb_names);
    // Said when it changes; "unreadable" only once the venue is up (before,
    // nothing answers, as expected).
    if p.source != Some(seen.source) && (seen.source.is_some() || p.healthy) {
        match seen.source {
            Some(s) => p.say(&format!("load: meetings read from {}", s.as_str())),
            None => p.say(&format!(
                "load: meetings not readable: {}",
                seen.why.join("; ")
            )),
        }
        p.source = Some(seen.source);
    }
    let samples = seen.samples(&p.event.id);
    if !samples.is_empty() {
        if let Err(e) = crate::plan::measured::record(&p.state, &p.event, &samples, now) {
            p.say(&format!("load: peaks not recorded: {e:#}"));
        }
    }
    let known = |name: &str| seen.servers.get(name).cloned().unwrap_or_default();
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
                meetings: known(name).meetings,
            })
            .collect(),
        bridges: Vec::new(),
        expected,
    };
    // Draining on a guess could leave too few servers for the meetings
    // nobody sees; more servers and taking one back are never unsafe. So
    // with a server unknown, only those are done.
    let observed = !obs.bbb.is_empty() && obs.bbb.iter().all(|b| b.meetings.is_some());
    let decision = load::decide(&settings, &obs);
    let held_back = !decision.drain.is_empty() || !decision.release.is_empty();
    if !observed && held_back && p.unobserved_said != Some(now.date_naive()) {
        p.say(&format!(
            "load: not every server's meetings are known, not draining or releasing: {}",
            decision.notes.join("; ")
        ));
        p.unobserved_said = Some(now.date_naive());
    }
    let mut changed = false;
    for a in &decision.undrain {
        if p.draining.remove(&a.name) {
            p.say(&format!(
                "load: {} takes meetings again: {}",
                a.name, a.reason
            ));
            changed = true;
        }
    }
    if observed {
        let load_of = |name: &str| -> u64 {
            known(name)
                .meetings
                .unwrap_or_default()
                .iter()
                .map(load::MeetingLoad::units)
                .sum()
        };
        let mut going: Vec<String> = decision.drain.iter().map(|a| a.name.clone()).collect();
        for a in &decision.drain {
            // The plan's servers stay for their window whatever the load:
            // draining one saves nothing, draining an extra lets it go. So
            // an active extra (the least loaded) drains in its place.
            let mut name = a.name.clone();
            let mut why = a.reason.clone();
            if !p.extra.iter().any(|e| e.name == name) {
                let swap = p
                    .extra
                    .iter()
                    .map(|e| e.name.clone())
                    .filter(|e| !p.draining.contains(e) && !going.contains(e))
                    .min_by_key(|e| (load_of(e), std::cmp::Reverse(e.clone())));
                if let Some(extra) = swap {
                    going.retain(|g| *g != name);
                    going.push(extra.clone());
                    why = format!(
                        "in place of {name}, which the plan keeps for its window (load here {} units): {}",
                        load_of(&extra),
                        a.reason
                    );
                    name = extra;
                }
            }
            if p.draining.insert(name.clone()) {
                p.say(&format!("load: draining {name}: {why}"));
                changed = true;
            }
        }
        for a in &decision.release {
            let is_extra = p.extra.iter().any(|s| s.name == a.name);
            let s = known(&a.name);
            // Released only on the portal's word that it is drained (a
            // poll since the drain began found nothing there, nothing
            // placed there unconfirmed): a meeting the portal just opened
            // there is not in getMeetings yet.
            if is_extra && s.drained && s.up {
                p.extra.retain(|e| e.name != a.name);
                p.draining.remove(&a.name);
                p.say(&format!(
                    "load: releasing {} (the portal says it is drained): {}",
                    a.name, a.reason
                ));
                changed = true;
            }
        }
    }
    for add in decision.add.iter().filter(|a| a.role == Role::Bbb) {
        let Some(template) = bbb_template(p) else {
            continue;
        };
        for _ in 0..add.count {
            let taken: BTreeSet<String> = p
                .plan
                .fleet()
                .into_iter()
                .chain(p.extra.iter().cloned())
                .map(|s| s.name)
                .collect();
            let name = extras::next_name(&p.event.id, &taken);
            p.say(&format!("load: adding {name}: {}", add.reason));
            p.extra.push(PlannedServer {
                name,
                ..template.clone()
            });
            changed = true;
        }
    }
    // Journalled before the rent is asked: a restart adopts it.
    if changed {
        save_extras(p);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, role: Role) -> PlannedServer {
        PlannedServer {
            name: name.into(),
            role,
            server_type: "ccx33".into(),
            location: "fsn1".into(),
        }
    }

    #[test]
    fn a_bbb_server_the_plan_lets_go_is_found_once_and_others_are_not() {
        let before = [
            server("ev-bbb-1", Role::Bbb),
            server("ev-bbb-2", Role::Bbb),
            server("ev-bbb-3", Role::Bbb),
            server("ev-stream-1", Role::Stream),
        ];
        // The plan shrank by two BigBlueButton servers and its stream
        // server's window closed.
        let wanted = [server("ev-bbb-1", Role::Bbb)];
        let left: Vec<String> = left_the_plan(&before, &wanted, &[])
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(left, ["ev-bbb-2", "ev-bbb-3"]);
        // Once they are extras (draining), they are not found again.
        let extra = [server("ev-bbb-2", Role::Bbb), server("ev-bbb-3", Role::Bbb)];
        assert!(left_the_plan(&before, &wanted, &extra).is_empty());
        // Nothing left: nothing found.
        assert!(left_the_plan(&before, &before, &[]).is_empty());
    }
}
