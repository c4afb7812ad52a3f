//! The chat in the portal's pages: the Chat link beside Join and Watch,
//! the Watch page's messages and post form, the Q&A of the session on now
//! (and its top questions for the stage), and the opt-in directory of
//! attendees. Forms only, no JavaScript; what an attendee posts goes to the
//! room through the bot, attributed to them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use conference::{Room, RoomKind, Session};
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::{self, User};
use crate::pages::{back_to, frame, internal_error, not_found};
use crate::rooms::{access, joinable_sessions};
use crate::state::AppState;
use crate::views::{self, page};

/// The longest message or question, in characters.
const MAX_TEXT: usize = 1000;
/// Messages shown beside the player.
const RECENT: u32 = 30;

/// "Chat" (Element, that room) beside a room's Join or Watch; nothing
/// without `[chat]`.
pub fn chat_link(state: &AppState, room: &Room) -> Markup {
    match &state.chat {
        Some(chat) => html! {
            " " a.button href=(chat.element_room(&room.slug)) { "Chat" }
        },
        None => html! {},
    }
}

/// The Q&A link of a session room while a session runs in it.
pub fn qa_link(state: &AppState, room: &Room, now: DateTime<Utc>) -> Markup {
    if state.chat.is_none()
        || room.kind != RoomKind::Session
        || joinable_sessions(state, room, now).next().is_none()
    {
        return html! {};
    }
    html! { " " a href=(format!("/rooms/{}/questions", room.slug)) { "Q&A" } }
}

/// The Watch page's chat: the room's latest messages (read through the
/// bot, server-rendered), a form to post, and the room in Element.
pub async fn panel(state: &AppState, user: &User, room: &Room) -> Markup {
    let Some(chat) = &state.chat else {
        return html! {};
    };
    let lines = chat.recent(&room.slug, RECENT).await;
    html! {
        section #chat {
            h2 { "Chat" }
            @match &lines {
                Ok(lines) if lines.is_empty() => { p.muted { "No messages yet." } }
                Ok(lines) => {
                    ol.chat {
                        @for l in lines.iter() {
                            li {
                                span.t.muted { (DateTime::<Utc>::from_timestamp_millis(l.ts).map(|t| t.format("%H:%M").to_string()).unwrap_or_default()) }
                                " " strong.who { (l.sender) } " " span.msg { (l.body) }
                            }
                        }
                    }
                }
                Err(e) => {
                    p.muted { "The chat cannot be shown right now." }
                    (log_once(e))
                }
            }
            form method="post" action=(format!("/rooms/{}/chat", room.slug)) {
                input type="hidden" name="csrf" value=(user.csrf);
                label for="chat-text" { "Say something (shown as " (user.ticket.display_name()) " (via portal))" }
                input id="chat-text" name="text" type="text" maxlength=(MAX_TEXT) required;
                p { button type="submit" { "Send" } " " a href=(chat.element_room(&room.slug)) { "Open in Element" } }
            }
        }
    }
}

fn log_once(e: &anyhow::Error) -> Markup {
    tracing::warn!(error = %format!("{e:#}"), "chat: cannot read a room's messages");
    html! {}
}

#[derive(Deserialize)]
pub struct TextForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    guid: String,
}

fn bad(title: &str, msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, views::message_page(title, msg)).into_response()
}

/// The room of `slug` if the ticket holder may be in it now.
#[allow(clippy::result_large_err)]
fn room_for<'a>(
    state: &'a AppState,
    user: &User,
    slug: &str,
    now: DateTime<Utc>,
) -> Result<&'a Room, Response> {
    let Some(room) = state.event.rooms.iter().find(|r| r.slug == slug) else {
        return Err(not_found("There is no such room."));
    };
    if access(state, &user.ticket, room, now).is_none() {
        return Err(auth::forbidden("This room is not open to you now."));
    }
    Ok(room)
}

fn clean(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && t.chars().count() <= MAX_TEXT).then(|| t.to_owned())
}

/// `POST /rooms/{slug}/chat`: the bot posts for the ticket holder.
pub async fn post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    user: User,
    Form(form): Form<TextForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    let Some(chat) = &state.chat else {
        return not_found("This portal has no chat.");
    };
    let room = match room_for(&state, &user, &slug, Utc::now()) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(text) = clean(&form.text) else {
        return bad(
            "Cannot send",
            &format!("A message is 1 to {MAX_TEXT} characters."),
        );
    };
    if let Err(e) = chat
        .post_for(&room.slug, &user.ticket.display_name(), &text)
        .await
    {
        tracing::warn!(error = %format!("{e:#}"), room = %room.slug, "chat: cannot post for a ticket holder");
        return crate::pages::unavailable(
            "Chat unavailable",
            "The message could not be sent. Try again in a moment.",
        );
    }
    let back = back_to(&headers, &format!("/rooms/{}/watch", room.slug));
    Redirect::to(&format!("{back}#chat")).into_response()
}

/// The Q&A of the session on now in `room`: questions by votes, Upvote
/// buttons, and the form to ask.
pub fn qa_block(state: &AppState, user: &User, session: &Session) -> Markup {
    let questions = match state.store.questions(&session.guid, Some(user.ticket.id)) {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(error = %e, "cannot read questions");
            return html! { p.error { "The questions cannot be shown." } };
        }
    };
    let slug = state
        .event
        .room(&session.room)
        .map(|r| r.slug.as_str())
        .unwrap_or_default();
    html! {
        section #questions {
            h2 { "Questions for " (session.title) }
            @if questions.is_empty() { p.muted { "No questions yet." } }
            ol.questions {
                @for q in &questions {
                    li id=(format!("q-{}", q.id)) {
                        span.votes { (q.votes) } " "
                        span.text { (q.text) } " "
                        span.muted { "— " (q.name) } " "
                        @if q.mine { span.muted { "(you voted)" } }
                        @else {
                            form.inline method="post" action=(format!("/rooms/{slug}/questions/{}/vote", q.id)) {
                                input type="hidden" name="csrf" value=(user.csrf);
                                button.quiet type="submit" { "▲ Upvote" }
                            }
                        }
                    }
                }
            }
            form method="post" action=(format!("/rooms/{slug}/questions")) {
                input type="hidden" name="csrf" value=(user.csrf);
                input type="hidden" name="guid" value=(session.guid);
                label for="question" { "Ask a question (the speakers see the top questions; it is also posted in the room's chat)" }
                input id="question" name="text" type="text" maxlength=(MAX_TEXT) required;
                p { button type="submit" { "Ask" } }
            }
        }
    }
}

/// How many questions the stage and the backstage's notice list.
pub const TOP_QUESTIONS: usize = 10;

/// The stage's "Top questions" of `session` (the one on now in `room`), in
/// the order of the backstage's notice: the same query, most votes first.
/// Read-only, for a speaker to answer from; nothing without `[chat]` or
/// outside a session room (there is no Q&A, and no backstage, there).
pub fn top_block(state: &AppState, room: &Room, session: &Session) -> Markup {
    if state.chat.is_none() || room.kind != RoomKind::Session {
        return html! {};
    }
    let questions = match state.store.questions(&session.guid, None) {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), session = %session.guid, "cannot read the top questions");
            return html! { section #top-questions { p.error { "The top questions cannot be shown." } } };
        }
    };
    html! {
        section #top-questions {
            h2 { "Top questions" }
            p.muted { "For you on the stage: " (session.title) ", most votes first. "
                a href=(format!("/rooms/{}/questions", room.slug)) { "All questions" } }
            @if questions.is_empty() { p.muted { "No questions yet." } }
            ol.questions {
                @for q in questions.iter().take(TOP_QUESTIONS) {
                    li {
                        span.votes { (q.votes) } " " (if q.votes == 1 { "vote" } else { "votes" }) " · "
                        span.text { (q.text) } " "
                        span.muted { "— " (q.name) }
                    }
                }
            }
        }
    }
}

/// `GET /rooms/{slug}/questions`.
pub async fn questions(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    user: User,
) -> Response {
    if state.chat.is_none() {
        return not_found("This portal has no chat.");
    }
    let now = Utc::now();
    let room = match room_for(&state, &user, &slug, now) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let f = frame(&state, &user);
    let session = joinable_sessions(&state, room, now).next();
    page(
        &f,
        &format!("Q&A · {}", room.name),
        html! {
            h1 { "Q&A · " (room.name) }
            @match session {
                Some(s) => { (qa_block(&state, &user, s)) }
                None => { p.muted { "No session is on in this room now." } }
            }
            p { (chat_link(&state, room)) }
        },
    )
    .into_response()
}

/// `POST /rooms/{slug}/questions`: ask, during the session.
pub async fn ask(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    user: User,
    Form(form): Form<TextForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    let Some(chat) = &state.chat else {
        return not_found("This portal has no chat.");
    };
    let now = Utc::now();
    let room = match room_for(&state, &user, &slug, now) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !joinable_sessions(&state, room, now).any(|s| s.guid == form.guid) {
        return bad(
            "Not now",
            "Questions can be asked while their session is on.",
        );
    }
    let Some(text) = clean(&form.text) else {
        return bad(
            "Cannot ask",
            &format!("A question is 1 to {MAX_TEXT} characters."),
        );
    };
    match state.store.ask(&form.guid, &user.ticket, &text) {
        Ok(id) => {
            chat.wake();
            let back = back_to(&headers, &format!("/rooms/{}/questions", room.slug));
            Redirect::to(&format!("{back}#q-{id}")).into_response()
        }
        Err(e) => internal_error("cannot store a question", &e),
    }
}

/// `POST /rooms/{slug}/questions/{id}/vote`: one vote per ticket.
pub async fn upvote(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, i64)>,
    user: User,
    Form(form): Form<crate::pages::CsrfForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    let Some(chat) = &state.chat else {
        return not_found("This portal has no chat.");
    };
    let now = Utc::now();
    let room = match room_for(&state, &user, &slug, now) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let open: Vec<&str> = joinable_sessions(&state, room, now)
        .map(|s| s.guid.as_str())
        .collect();
    let guid = match state.store.questions_session(id) {
        Ok(Some(g)) if open.contains(&g.as_str()) => g,
        Ok(_) => return not_found("There is no such question in a session on now."),
        Err(e) => return internal_error("cannot read a question", &e),
    };
    match state.store.upvote(id, user.ticket.id) {
        Ok(_) => {
            tracing::debug!(session = %guid, question = id, "upvote");
            chat.wake();
            let back = back_to(&headers, &format!("/rooms/{}/questions", room.slug));
            Redirect::to(&format!("{back}#q-{id}")).into_response()
        }
        Err(e) => internal_error("cannot store a vote", &e),
    }
}

/// `GET /directory`: the ticket holders who chose to be listed.
pub async fn directory(State(state): State<Arc<AppState>>, user: User) -> Response {
    let Some(chat) = &state.chat else {
        return not_found("This portal has no chat.");
    };
    let list = match state.store.directory() {
        Ok(l) => l,
        Err(e) => return internal_error("cannot read the directory", &e),
    };
    let f = frame(&state, &user);
    page(&f, "Directory", html! {
        h1 { "Directory" }
        p.muted { "Attendees who chose to be found. " a href="/settings#directory" { "Your choice" } }
        @if list.is_empty() { p { "Nobody is listed yet." } }
        ul.directory {
            @for l in &list {
                li {
                    strong { (l.name) } " "
                    @match &l.user_id {
                        Some(u) => { a href=(chat.element_user(u)) { (u) } }
                        None => { span.muted { "not on the chat yet" } }
                    }
                }
            }
        }
    })
    .into_response()
}

/// The settings' section: listed in the directory or not.
pub fn settings_section(state: &AppState, user: &User) -> Markup {
    if state.chat.is_none() {
        return html! {};
    }
    let listed = state.store.listed(user.ticket.id).unwrap_or(false);
    html! {
        h2 id="directory" { "Directory" }
        p { "Whether other ticket holders can find you in the portal's "
            a href="/directory" { "directory" } " (your name and chat address). "
            @if listed { strong { "You are listed." } } @else { strong { "You are not listed." } } }
        form method="post" action="/settings/directory" {
            input type="hidden" name="csrf" value=(user.csrf);
            @if listed {
                input type="hidden" name="listed" value="0";
                button.quiet type="submit" { "Remove me from the directory" }
            } @else {
                input type="hidden" name="listed" value="1";
                button.quiet type="submit" { "List me in the directory" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ListedForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    listed: String,
}

/// `POST /settings/directory`.
pub async fn set_listed(
    State(state): State<Arc<AppState>>,
    user: User,
    Form(form): Form<ListedForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    if state.chat.is_none() {
        return not_found("This portal has no chat.");
    }
    if let Err(e) = state.store.set_listed(user.ticket.id, form.listed == "1") {
        return internal_error("cannot store the directory choice", &e);
    }
    Redirect::to("/settings#directory").into_response()
}
