//! The welcome page: what runs now, the rooms with their people and Join
//! buttons, and links. `rooms_table` is shared with the staff room.

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Utc};
use conference::{Room, RoomKind, Session};
use maud::{html, Markup};

use super::timetable::session_card;
use super::{frame, user_tz};
use crate::auth::User;
use crate::rooms::{access, kind_name, people};
use crate::state::AppState;
use crate::views::{page, post_button, times};

/// Join for a room one meets in; for a streamed room, Watch, and Join (its
/// stage) only for staff and the session's speakers; with `[chat]`, the
/// room's Chat (and Q&A while a session is on) beside them.
pub fn join_button(state: &AppState, user: &User, room: &Room, now: DateTime<Utc>) -> Markup {
    let join = || {
        post_button(
            &format!("/rooms/{}/join", room.slug),
            &user.csrf,
            "Join",
            None,
        )
    };
    let chat = || {
        html! { (crate::chat::pages::chat_link(state, room)) (crate::chat::pages::qa_link(state, room, now)) }
    };
    match access(state, &user.ticket, room, now) {
        None => html! {},
        Some(_) if !room.streamed() => html! { (join()) (chat()) },
        Some(on_stage) => html! {
            a.button href=(format!("/rooms/{}/watch", room.slug)) { "Watch" }
            @if on_stage { " " (join()) }
            (chat())
        },
    }
}

/// The stage's Join alone (the Watch page's, for those on the stage).
pub fn stage_button(user: &User, room: &Room) -> Markup {
    post_button(
        &format!("/rooms/{}/join", room.slug),
        &user.csrf,
        "Join the stage",
        None,
    )
}

pub fn rooms_table(
    state: &AppState,
    user: &User,
    now: DateTime<Utc>,
    which: impl Fn(&Room) -> bool,
) -> Markup {
    let rooms: Vec<&Room> = state
        .event
        .rooms
        .iter()
        .filter(|r| which(r))
        .filter(|r| r.kind != RoomKind::Private || access(state, &user.ticket, r, now).is_some())
        .collect();
    html! {
        div.scroll { table {
            thead { tr { th { "Room" } th { "On now" } th.n { "People" } th {} } }
            tbody {
                @for r in rooms {
                    tr id=(format!("room-{}", r.slug)) {
                        td { (r.name) br; span.muted { (kind_name(r.kind)) } }
                        td {
                            @if let Some(s) = state.event.sessions.iter().find(|s| s.room == r.name && s.is_running(now)) { (s.title) }
                            @else if r.kind == RoomKind::Hack { span.muted { "open all day" } }
                        }
                        td.n.people { @if let Some(p) = people(state, r) { (p) } @else { span.muted { "–" } } }
                        td { (join_button(state, user, r, now)) }
                    }
                }
            }
        } }
    }
}

pub async fn welcome(State(state): State<Arc<AppState>>, user: User) -> Markup {
    let now = Utc::now();
    let ev = &state.event;
    let picks = state
        .cache
        .picks(&state.store, user.ticket.id)
        .unwrap_or_default();
    let heads = state.fragments.heads(ev, user_tz(&user.ticket));
    let running: Vec<(usize, &Session)> = ev
        .sessions
        .iter()
        .enumerate()
        .filter(|(_, s)| s.start - state.config.join_early <= now && now < s.end)
        .collect();
    let next = ev.sessions.iter().find(|s| s.start > now);
    let (first, last) = ev.span();
    let f = frame(&state, &user);
    page(
        &f,
        "Welcome",
        html! {
            h1 { "Hello, " (user.ticket.display_name()) }
            @if now < first {
                p { (ev.name) " opens " (first.with_timezone(&ev.timezone).format("%A %-d %B %Y at %H:%M %Z")) " (" (first.format("%H:%M UTC")) "). "
                    "You can already try a hack room to check your microphone and camera." }
            } @else if now > last {
                p { (ev.name) " is over. Thank you for coming!" }
            }
            h2 { "Now" }
            @if running.is_empty() {
                p.muted { "No session is running right now." }
                @if let Some(n) = next { p { "Next: " strong { (n.title) } " — " (times(n.start, n.end, ev.timezone, user_tz(&user.ticket))) " · " (n.room) } }
            }
            @for (i, s) in &running { (session_card(&state, &user, &heads[*i], (*i, s), now, now, &picks)) }
            p { a href="/timetable" { "Timetable around now" } " · " a href="/schedule" { "Whole schedule" } }
            h2 { "Rooms" }
            (rooms_table(&state, &user, now, |r| matches!(r.kind, RoomKind::Session | RoomKind::Hack | RoomKind::Private)))
            h2 { "Links" }
            ul {
                @if let Some(chat) = &ev.chat { li { a href=(chat) { "Chat" } } }
                @if state.chat.is_some() { li { a href="/directory" { "Directory of attendees" } } }
                @if let Some(coc) = &ev.code_of_conduct { li { a href=(coc) { "Code of conduct" } " — it applies in every room and in the chat." } }
                @if let Some(c) = &ev.contact { li { a href=(c) { "Contact the organisers" } } }
                li { a href="/schedule.ics" { "Whole schedule (.ics)" } " · " a href="/my.ics" { "My selection (.ics)" } " · " a href="/settings#calendar" { "Subscribe in your calendar" } }
                @if state.vote_visible() { li { a href="/vote" { "Talk vote" } } }
                @if user.ticket.is_staff() { li { a href="/staff" { "Staff room" } " · " a href="/status" { "Server and room status" } " · " a href="/staff/vote" { "Talk vote results" } } }
            }
        },
    )
}
