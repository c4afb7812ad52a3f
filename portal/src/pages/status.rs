//! The staff's status page: BigBlueButton servers, Jitsi bridges and every
//! room, all from the pollers' caches.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use conference::{Backend, Room};
use maud::{html, Markup};

use super::frame;
use crate::auth::User;
use crate::bbb::Health;
use crate::rooms::kind_name;
use crate::state::AppState;
use crate::views::page;

fn health(h: Health) -> Markup {
    html! { @match h {
        Health::Up => span.up { "up" },
        Health::Down => span.down { "down" },
        Health::Unknown => span.muted { "not polled yet" },
    } }
}

fn ago(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| format!("{} s ago", (now - t).num_seconds()),
    )
}

fn jitsi_section(state: &AppState, now: DateTime<Utc>) -> Markup {
    let bridges = state.jitsi.bridges();
    let rooms = state.jitsi.rooms_probe();
    if state.config.jitsi.is_none() {
        return html! {};
    }
    html! {
        h2 { "Jitsi bridges" }
        @if bridges.is_empty() { p.muted { "No videobridge statistics are configured ([[jitsi.bridge]] stats_url)." } }
        @else {
            div.scroll { table #jitsi-bridges {
                thead { tr { th { "Bridge" } th { "State" } th.n { "Conferences" } th.n { "People" } th.n { "Sending video" } th.n { "Load" } th { "Last answer" } } }
                tbody {
                    @for b in &bridges {
                        tr {
                            td { (b.name) }
                            td { (health(b.health)) @if let Some(e) = &b.last_error { br; span.muted { (e) } } }
                            @if let Some(s) = &b.value {
                                td.n { (s.conferences) } td.n { (s.participants) } td.n { (s.endpoints_sending_video) }
                                td.n { (format!("{:.0} %", s.stress_level * 100.0)) }
                            } @else { td {} td {} td {} td {} }
                            td.t { (ago(now, b.last_answer)) }
                        }
                    }
                }
            } }
        }
        @if let Some(p) = rooms {
            p.muted { "Jitsi room sizes (prosody): " (health(p.health)) ", last answer " (ago(now, p.last_answer)) @if let Some(e) = &p.last_error { " — " (e) } }
        }
    }
}

pub async fn status(State(state): State<Arc<AppState>>, user: User) -> Response {
    if let Err(r) = user.require_staff() {
        return r;
    }
    let now = Utc::now();
    let f = frame(&state, &user);
    let ev = &state.event;
    let pool = state.cluster.pool_status();
    let body = state.cluster.with_states(|servers| {
        let meeting_of = |room: &Room| {
            let id = state.meeting_id(room);
            servers.iter().find_map(|s| s.meetings.iter().find(|m| m.id == id).map(|m| (s, m)))
        };
        let total = |f: fn(&crate::bbb::Meeting) -> u64| -> u64 { servers.iter().flat_map(|s| &s.meetings).map(f).sum() };
        let known: Vec<String> = ev.rooms.iter().map(|r| state.meeting_id(r)).collect();
        let (tickets, staff_n) = state.store.ticket_count().unwrap_or((0, 0));
        html! {
            h1 { "Status" }
            p.muted { "BigBlueButton is polled every " (state.config.poll_interval.as_secs_f64()) " s per server (" (state.cluster.polls()) " polls so far); this page shows the last answers. " (tickets) " tickets, " (staff_n) " staff." }
            h2 { "Servers" }
            @if let Some(path) = &pool.path {
                p.muted { "Servers marked (pool) come from " code { (path.display()) } @if let Some(u) = pool.updated { ", updated " (u.format("%Y-%m-%d %H:%M:%S UTC")) } ". A draining server gets no new meeting; its running meetings stay until they end." }
                @if let Some(e) = &pool.error { p.down { "The latest pool file was refused, the pool is as before: " (e) } }
            }
            @if servers.is_empty() { p { "No BigBlueButton server is configured." } }
            @else {
                div.scroll { table {
                    thead { tr { th { "Server" } th { "State" } th.n { "Rooms" } th.n { "People" } th.n { "Listen-only" } th.n { "Voice" } th.n { "Video" } th { "Last answer" } } }
                    tbody {
                        @for s in servers {
                            tr {
                                td { (s.name) @if s.pooled { " " span.muted { "(pool)" } } }
                                td {
                                    (health(s.health))
                                    @if s.draining { ", " span.draining { "draining" } @if let Some(t) = s.draining_since { " " span.muted { "since " (ago(now, Some(t))) } } }
                                    @if let Some(e) = &s.last_error { br; span.muted { (e) } }
                                }
                                td.n { (s.meetings.len()) }
                                td.n { (s.participants()) }
                                td.n { (s.meetings.iter().map(|m| m.listeners).sum::<u64>()) }
                                td.n { (s.meetings.iter().map(|m| m.voice).sum::<u64>()) }
                                td.n { (s.meetings.iter().map(|m| m.video).sum::<u64>()) }
                                td.t { @if let Some(t) = s.last_answer { (format!("{} s ago", (now - t).num_seconds())) } @else { "never" } }
                            }
                        }
                        tr {
                            th { "Total" } td { (servers.iter().filter(|s| s.health == Health::Up).count()) " of " (servers.len()) " up" @let d = servers.iter().filter(|s| s.draining).count(); @if d > 0 { ", " (d) " draining" } }
                            td.n { (servers.iter().map(|s| s.meetings.len()).sum::<usize>()) }
                            td.n { (total(|m| m.participants)) } td.n { (total(|m| m.listeners)) } td.n { (total(|m| m.voice)) } td.n { (total(|m| m.video)) } td {}
                        }
                    }
                } }
            }
            (jitsi_section(&state, now))
            h2 { "Rooms" }
            div.scroll { table {
                thead { tr { th { "Room" } th { "Server" } th.n { "People" } th.n { "Listen-only" } th.n { "Voice" } th.n { "Video" } th.n { "Moderators" } th { "On now" } } }
                tbody {
                    @for r in &ev.rooms {
                        @let m = meeting_of(r);
                        tr {
                            td { (r.name) br; span.muted { (kind_name(r.kind)) ", " (match r.backend { Backend::Bbb => "BBB", Backend::Jitsi => "Jitsi" }) } }
                            @if let Some((s, m)) = m {
                                td { (s.name) }
                                td.n { (m.participants) } td.n { (m.listeners) } td.n { (m.voice) } td.n { (m.video) }
                                td.n { (m.moderators) @let names = m.attendees.iter().filter(|a| a.moderator).map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "); @if !names.is_empty() { br; span.muted { (names) } } }
                            } @else if r.backend == Backend::Jitsi {
                                td { "Jitsi" }
                                td.n { @if let Some(n) = state.jitsi.room_people(&state.meeting_id(r)) { (n) } @else { span.muted { "–" } } }
                                td {} td {} td {} td {}
                            } @else {
                                td.muted { "not running" } td {} td {} td {} td {} td {}
                            }
                            td { @if let Some(s) = ev.sessions.iter().find(|s| s.room == r.name && s.is_running(now)) { (s.title) } }
                        }
                    }
                    @for s in servers { @for m in s.meetings.iter().filter(|m| !known.contains(&m.id)) {
                        tr.muted {
                            td { (m.name) " (not an event room)" } td { (s.name) }
                            td.n { (m.participants) } td.n { (m.listeners) } td.n { (m.voice) } td.n { (m.video) } td.n { (m.moderators) } td {}
                        }
                    } }
                }
            } }
        }
    });
    page(&f, "Status", body).into_response()
}
