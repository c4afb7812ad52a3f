//! The command: one round (table or JSON), or `--watch N`: a round every N
//! seconds, printing the first in full and then only the probes that start
//! or stop failing, each with the time, until interrupted.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use chrono::{SecondsFormat, Utc};

use super::{run_once, summary, table, Check, Probe, Report};

/// Prints one round; returns whether every probe passed.
pub async fn once(check: &Check, json: bool, out: &mut impl Write) -> Result<bool> {
    let spinner = progress(json, check.targets.len());
    let report = run_once(check).await;
    spinner.finish_and_clear();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", table(&report))?;
        writeln!(out, "{}", summary(&report))?;
    }
    Ok(report.ok)
}

/// A spinner while a round runs (it can take seconds), only for humans.
fn progress(json: bool, hosts: usize) -> indicatif::ProgressBar {
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::new_spinner().with_message(format!("probing {hosts} host(s)"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Rounds every `every` until Ctrl-C (or SIGTERM); returns whether the last
/// round passed.
pub async fn watch(
    check: &Check,
    every: Duration,
    json: bool,
    out: &mut impl Write,
) -> Result<bool> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut last: Option<BTreeMap<(String, String), Probe>> = None;
    let mut ok = true;
    let mut next = tokio::time::Instant::now();
    loop {
        let report = tokio::select! {
            r = run_once(check) => r,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        ok = report.ok;
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        match &last {
            None => print_first(&report, &now, json, out)?,
            Some(before) => print_changes(before, &report, &now, json, out)?,
        }
        out.flush()?;
        last = Some(report.probes.iter().map(|p| (p.key(), p.clone())).collect());
        next += every;
        let now = tokio::time::Instant::now();
        if next < now {
            // A round longer than the interval: start the next one at once.
            next = now;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    Ok(ok)
}

fn print_first(report: &Report, now: &str, json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        for p in &report.probes {
            writeln!(out, "{}", line_json(now, p, "now")?)?;
        }
    } else {
        writeln!(out, "{now}")?;
        write!(out, "{}", table(report))?;
        writeln!(out, "{now}  {}", summary(report))?;
    }
    Ok(())
}

/// Probes whose result changed (failing, recovered, warning) or that came or went.
fn print_changes(
    before: &BTreeMap<(String, String), Probe>,
    report: &Report,
    now: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    for p in &report.probes {
        let change = match before.get(&p.key()) {
            None => Some("new"),
            Some(b) if b.ok && !p.ok => Some("failing"),
            Some(b) if !b.ok && p.ok => Some("recovered"),
            Some(b) if b.warning != p.warning => {
                Some(if p.warning { "warning" } else { "cleared" })
            }
            _ => None,
        };
        let Some(change) = change else { continue };
        if json {
            writeln!(out, "{}", line_json(now, p, change)?)?;
        } else {
            writeln!(
                out,
                "{now}  {:<9}  {}  {}  {}",
                change, p.host, p.probe, p.message
            )?;
        }
    }
    for (key, b) in before {
        if !report.probes.iter().any(|p| &p.key() == key) {
            if json {
                writeln!(out, "{}", line_json(now, b, "gone")?)?;
            } else {
                writeln!(out, "{now}  gone       {}  {}", b.host, b.probe)?;
            }
        }
    }
    Ok(())
}

fn line_json(now: &str, p: &Probe, change: &str) -> Result<String> {
    let mut v = serde_json::to_value(p)?;
    v["time"] = now.into();
    v["change"] = change.into();
    Ok(serde_json::to_string(&v)?)
}
