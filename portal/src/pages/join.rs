//! Join: the redirect into a BigBlueButton meeting (created on the least
//! loaded server when needed) or a Jitsi room (with a signed token).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use conference::{Backend, RoomKind};

use super::{unavailable, CsrfForm};
use crate::auth::{self, User};
use crate::rooms::access;
use crate::state::AppState;
use crate::views;

pub async fn join(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    user: User,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    let now = Utc::now();
    let Some(room) = state.event.rooms.iter().find(|r| r.slug == slug) else {
        return super::not_found("There is no such room.");
    };
    let Some(moderator) = access(&state, &user.ticket, room, now) else {
        return match room.kind {
            RoomKind::Session => (
                StatusCode::FORBIDDEN,
                views::message_page(
                    "Not open yet",
                    &format!(
                        "{} opens {} minutes before its next session starts.",
                        room.name,
                        state.config.join_early.num_minutes()
                    ),
                ),
            )
                .into_response(),
            _ => auth::forbidden("This room is not open to you."),
        };
    };
    // A streamed room's meeting is its stage: its audience watches.
    if room.streamed() && !moderator {
        return axum::response::Redirect::to(&format!("/rooms/{}/watch", room.slug))
            .into_response();
    }
    let ticket = &user.ticket;
    let name = ticket.display_name();
    match room.backend {
        Backend::Bbb => {
            if !state.cluster.configured() {
                return unavailable(
                    "Not configured",
                    &format!(
                        "The server of {} is not configured on this portal.",
                        room.name
                    ),
                );
            }
            let id = state.meeting_id(room);
            let Some(server) = state.cluster.place(&id) else {
                return unavailable("No server available", "No BigBlueButton server answers right now. Try again in a minute; the staff have been told by the status page.");
            };
            let key = &state.config.session_key;
            let mod_pw = &auth::sign(key, "bbb-moderator", &id)[..20];
            let att_pw = &auth::sign(key, "bbb-attendee", &id)[..20];
            if !state.cluster.has_people(&server, &id) {
                let logout = format!("{}/", state.base_url(&headers));
                if let Err(e) = open_bbb_meeting(&state, room, &server, &logout).await {
                    tracing::error!(room = %room.slug, server = %server.name, error = %e, "BBB create failed");
                    return (StatusCode::BAD_GATEWAY, views::message_page("The room could not be opened", "Its BigBlueButton server did not accept the meeting. Try again in a minute.")).into_response();
                }
            }
            let user_id = format!("venue-{}", ticket.id);
            let mut params: Vec<(&str, &str)> = vec![
                ("fullName", &name),
                ("meetingID", &id),
                ("role", if moderator { "MODERATOR" } else { "VIEWER" }),
                ("password", if moderator { mod_pw } else { att_pw }),
                ("userID", &user_id),
                ("redirect", "true"),
            ];
            if room.kind == RoomKind::Session && !moderator {
                // Talks are listened to: offer listen-only first.
                params.push(("userdata-bbb_listen_only_mode", "true"));
            }
            if !room.webcams {
                params.push(("userdata-bbb_auto_share_webcam", "false"));
            }
            let url = state.cluster.join_url(&server, &params);
            tracing::info!(ticket = ticket.id, room = %room.slug, server = %server.name, moderator, "join");
            Redirect::to(&url).into_response()
        }
        Backend::Jitsi => {
            let Some(j) = &state.config.jitsi else {
                return unavailable(
                    "Not configured",
                    &format!(
                        "The server of {} is not configured on this portal.",
                        room.name
                    ),
                );
            };
            let jroom = state.meeting_id(room);
            let token = conference::protocol::jwt::jitsi_token(
                j.secret.as_bytes(),
                &conference::protocol::jwt::JitsiGrant {
                    app_id: &j.app_id,
                    domain: &j.domain,
                    room: &jroom,
                    user: conference::protocol::jwt::JitsiUser {
                        id: format!("venue-{}", ticket.id),
                        name,
                        email: ticket.email.clone(),
                        moderator,
                    },
                    now: now.timestamp(),
                    ttl: j.token_ttl,
                },
            );
            tracing::info!(ticket = ticket.id, room = %room.slug, moderator, "join (jitsi)");
            Redirect::to(&format!("https://{}/{}?jwt={}", j.domain, jroom, token)).into_response()
        }
    }
}

/// Creates the BBB meeting of `room` on `server` (BBB answers an existing
/// one with its details, so this is safe to repeat). Also used by the stage
/// capture (crate::capture::api), which joins the meeting as a viewer.
pub async fn open_bbb_meeting(
    state: &AppState,
    room: &conference::Room,
    server: &crate::bbb::Target,
    logout: &str,
) -> anyhow::Result<()> {
    let id = state.meeting_id(room);
    let key = &state.config.session_key;
    let mod_pw = &auth::sign(key, "bbb-moderator", &id)[..20];
    let att_pw = &auth::sign(key, "bbb-attendee", &id)[..20];
    let mut welcome = format!("Welcome to {} at {}!", room.name, state.event.name);
    if let Some(coc) = &state.event.code_of_conduct {
        welcome.push_str(&format!(" The code of conduct applies here: {coc}"));
    }
    let session_room = room.kind == RoomKind::Session;
    let mut params: Vec<(&str, &str)> = vec![
        ("name", &room.name),
        ("meetingID", &id),
        ("attendeePW", att_pw),
        ("moderatorPW", mod_pw),
        ("welcome", &welcome),
        ("logoutURL", logout),
        ("record", "false"),
        ("muteOnStart", if session_room { "true" } else { "false" }),
        ("meta_venue-event", &state.event.id),
        ("meta_venue-room", &room.slug),
    ];
    if !room.webcams {
        params.push(("lockSettingsDisableCam", "true"));
        params.push(("webcamsOnlyForModerator", "true"));
    }
    state
        .cluster
        .create(server, &id, &params)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
