//! The talk vote as an attendee sees it: the proposals in the ticket's own
//! order, track filters, and a vote button per proposal. No totals.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::frame;
use crate::auth::User;
use crate::state::AppState;
use crate::store::Cast;
use crate::views::{self, page};

#[derive(Deserialize)]
pub struct TrackQuery {
    track: Option<String>,
}

fn vote_path(track: Option<&str>) -> String {
    match track.filter(|t| !t.is_empty()) {
        Some(t) => format!(
            "/vote?track={}",
            conference::protocol::bbb::encode_component(t)
        ),
        None => "/vote".to_owned(),
    }
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    user: User,
    Query(q): Query<TrackQuery>,
) -> Response {
    let (open, mut proposals, mine) = match (
        crate::vote::open_now(&state),
        state.store.proposals(),
        state.store.my_votes(user.ticket.id),
    ) {
        (Ok(o), Ok(p), Ok(m)) => (o, p, m),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return super::internal_error("cannot read the vote", &e)
        }
    };
    crate::vote::order_for(&state, user.ticket.id, &mut proposals);
    let mut tracks: Vec<&str> = proposals
        .iter()
        .filter_map(|p| p.track.as_deref())
        .collect();
    tracks.sort_unstable();
    tracks.dedup();
    let track = q.track.as_deref().filter(|t| !t.is_empty());
    let limit = state.event.vote.votes_per_ticket;
    let left = (limit as usize).saturating_sub(mine.len());
    let shown = proposals
        .iter()
        .filter(|p| track.is_none() || p.track.as_deref() == track);
    let f = frame(&state, &user);
    page(&f, "Talk vote", html! {
        h1 { "Talk vote" }
        @if proposals.is_empty() {
            p { "There are no proposals to vote on." }
        } @else if open {
            p { "Which of these proposed talks would you like to hear? You have " strong { (limit) } " votes, at most one per talk, and can change them until the vote closes. "
                "The programme committee sees the results; they inform its choice, they do not make it. Everyone sees the proposals in another order." }
            p.banner #votes-left { "You have used " (mine.len()) " of your " (limit) " votes." }
        } @else {
            p.banner #vote-closed { "The vote is closed." @if !mine.is_empty() { " You voted for " (mine.len()) " talks (marked ✓)." } }
        }
        @if tracks.len() > 1 {
            p.muted #tracks { "Tracks: "
                @if track.is_none() { strong { "all" } } @else { a href="/vote" { "all" } }
                @for t in &tracks { " · " @if track == Some(*t) { strong { (t) } } @else { a href=(vote_path(Some(t))) { (t) } } }
            }
        }
        @for p in shown {
            @let voted = mine.contains(&p.id);
            div.card.proposal id=(format!("p-{}", p.id)) {
                div.row {
                    div.grow {
                        @if voted { span.live { "✓ " } }
                        strong { (p.title) }
                        div.muted { @if let Some(t) = &p.track { (t) } @if !p.speakers.is_empty() { @if p.track.is_some() { " · " } (p.speakers.join(", ")) } }
                        @if !p.abstract_.is_empty() { p { (p.abstract_) } }
                    }
                    @if open {
                        div {
                            @if voted || left > 0 {
                                form.inline method="post" action="/vote" {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    input type="hidden" name="proposal" value=(p.id);
                                    input type="hidden" name="vote" value=(if voted { "0" } else { "1" });
                                    @if let Some(t) = track { input type="hidden" name="track" value=(t); }
                                    @if voted { button.quiet type="submit" { "Take back" } }
                                    @else { button type="submit" { "Vote" } }
                                }
                            } @else {
                                span.muted { "no votes left" }
                            }
                        }
                    }
                }
            }
        }
    }).into_response()
}

#[derive(Deserialize)]
pub struct VoteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    proposal: String,
    #[serde(default)]
    vote: String,
    track: Option<String>,
}

pub async fn cast(
    State(state): State<Arc<AppState>>,
    user: User,
    Form(form): Form<VoteForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    match crate::vote::open_now(&state) {
        Ok(true) => {}
        Ok(false) => {
            return (
                StatusCode::FORBIDDEN,
                views::message_page(
                    "The vote is closed",
                    "Votes can no longer be cast or changed.",
                ),
            )
                .into_response()
        }
        Err(e) => return super::internal_error("cannot read the vote state", &e),
    }
    let on = form.vote == "1";
    match state.store.cast_vote(
        user.ticket.id,
        &form.proposal,
        on,
        state.event.vote.votes_per_ticket,
    ) {
        Ok(Cast::Done) => {
            tracing::info!(ticket = user.ticket.id, on, "vote");
            Redirect::to(&format!(
                "{}#p-{}",
                vote_path(form.track.as_deref()),
                conference::protocol::bbb::encode_component(&form.proposal)
            ))
            .into_response()
        }
        Ok(Cast::NoVotesLeft) => (
            StatusCode::CONFLICT,
            views::message_page(
                "No votes left",
                &format!(
                    "You have used all your {} votes. Take one back to vote for another talk.",
                    state.event.vote.votes_per_ticket
                ),
            ),
        )
            .into_response(),
        Ok(Cast::UnknownProposal) => super::not_found("There is no such proposal."),
        Err(e) => super::internal_error("cannot store a vote", &e),
    }
}
