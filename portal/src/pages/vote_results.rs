//! The talk vote for staff: open and close it, and the results per proposal
//! and per track (votes and voters), on the page and as CSV or JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::frame;
use crate::auth::User;
use crate::state::AppState;
use crate::store::Results;
use crate::views::page;

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "—".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

#[allow(clippy::result_large_err)]
fn results(state: &AppState, user: &User) -> Result<(bool, Results), Response> {
    user.require_staff()?;
    let open = crate::vote::open_now(state)
        .map_err(|e| super::internal_error("cannot read the vote state", &e))?;
    let r = state
        .store
        .vote_results()
        .map_err(|e| super::internal_error("cannot count the votes", &e))?;
    Ok((open, r))
}

pub async fn show(State(state): State<Arc<AppState>>, user: User) -> Response {
    let (open, r) = match results(&state, &user) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let (tickets, _) = state.store.ticket_count().unwrap_or((0, 0));
    let v = &state.event.vote;
    let f = frame(&state, &user);
    page(&f, "Talk vote", html! {
        h1 { "Talk vote" }
        p #vote-state { "The vote is " strong { @if open { "open" } @else { "closed" } } ". "
            "event.toml: opens " (when(v.opens)) ", closes " (when(v.closes)) "; " (v.votes_per_ticket) " votes per ticket. "
            "The latest of those times and of your Open/Close decides." }
        form.inline method="post" action="/staff/vote" {
            input type="hidden" name="csrf" value=(user.csrf);
            @if open { input type="hidden" name="action" value="close"; button type="submit" { "Close the vote" } }
            @else { input type="hidden" name="action" value="open"; button type="submit" { "Open the vote" } }
        }
        p { (r.voters) " of " (tickets) " tickets voted. Attendees never see these numbers. "
            a href="/staff/vote/results.csv" { "CSV" } " · " a href="/staff/vote/results.json" { "JSON" } }
        h2 { "Per track" }
        div.scroll { table #track-results {
            thead { tr { th { "Track" } th.n { "Votes" } th.n { "Voters" } } }
            tbody { @for t in &r.tracks { tr { td { (t.track.as_deref().unwrap_or("(no track)")) } td.n { (t.votes) } td.n { (t.voters) } } } }
        } }
        h2 { "Per proposal" }
        div.scroll { table #proposal-results {
            thead { tr { th { "Proposal" } th { "Track" } th.n { "Votes" } } }
            tbody { @for p in &r.proposals { tr {
                td { (p.proposal.title) br; span.muted { (p.proposal.id) @if !p.proposal.speakers.is_empty() { " · " (p.proposal.speakers.join(", ")) } } }
                td { (p.proposal.track.as_deref().unwrap_or("")) }
                td.n { (p.votes) }
            } } }
        } }
    }).into_response()
}

#[derive(Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
}

pub async fn switch(
    State(state): State<Arc<AppState>>,
    user: User,
    Form(form): Form<SwitchForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    if let Err(r) = user.require_staff() {
        return r;
    }
    let open = match form.action.as_str() {
        "open" => true,
        "close" => false,
        _ => return super::not_found("There is no such action."),
    };
    if let Err(e) = state.store.set_vote_switch(open) {
        return super::internal_error("cannot switch the vote", &e);
    }
    tracing::info!(ticket = user.ticket.id, open, "talk vote switched");
    Redirect::to("/staff/vote").into_response()
}

/// A spreadsheet would run a cell starting with = + - @ as a formula.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

fn download(body: String, mime: &str, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn csv(State(state): State<Arc<AppState>>, user: User) -> Response {
    let (_, r) = match results(&state, &user) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut write = || -> Result<Vec<u8>, csv::Error> {
        w.write_record(["id", "title", "track", "speakers", "votes"])?;
        for p in &r.proposals {
            w.write_record([
                cell(&p.proposal.id),
                cell(&p.proposal.title),
                cell(p.proposal.track.as_deref().unwrap_or("")),
                cell(&p.proposal.speakers.join("; ")),
                p.votes.to_string(),
            ])?;
        }
        w.flush()?;
        Ok(w.get_ref().clone())
    };
    match write() {
        Ok(bytes) => download(
            String::from_utf8_lossy(&bytes).into_owned(),
            "text/csv; charset=utf-8",
            &format!("{}-vote.csv", state.event.id),
        ),
        Err(e) => super::internal_error("cannot write the CSV", &e.into()),
    }
}

pub async fn json(State(state): State<Arc<AppState>>, user: User) -> Response {
    let (open, r) = match results(&state, &user) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let body = serde_json::json!({
        "open": open,
        "voters": r.voters,
        "tracks": r.tracks.iter().map(|t| serde_json::json!({
            "track": t.track, "votes": t.votes, "voters": t.voters,
        })).collect::<Vec<_>>(),
        "proposals": r.proposals.iter().map(|p| serde_json::json!({
            "id": p.proposal.id, "title": p.proposal.title, "track": p.proposal.track,
            "speakers": p.proposal.speakers, "votes": p.votes,
        })).collect::<Vec<_>>(),
    });
    download(
        serde_json::to_string_pretty(&body).unwrap_or_default(),
        "application/json",
        &format!("{}-vote.json", state.event.id),
    )
}
