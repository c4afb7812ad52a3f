//! Calendar subscription URLs. Calendar apps send no cookies, so a ticket's
//! personal feed is reached by an unguessable URL instead:
//! `/feeds/<ticket id>-<mac>/my.ics`, where mac is 128 bits of
//! HMAC-SHA256(session key, ticket id + the ticket's feed nonce).
//! Regenerating the nonce (settings page) or revoking the ticket makes the
//! old URL answer 404.

use crate::auth::sign;
use crate::state::AppState;
use crate::store::Ticket;

fn mac(key: &[u8], ticket_id: i64, nonce: &str) -> String {
    sign(key, "feed", &format!("{ticket_id}:{nonce}"))[..32].to_owned()
}

/// The path of the ticket's personal feed for its current nonce.
pub fn path(state: &AppState, ticket_id: i64, nonce: &str) -> String {
    format!(
        "/feeds/{ticket_id}-{}/my.ics",
        mac(&state.config.session_key, ticket_id, nonce)
    )
}

/// The ticket a feed token belongs to, if the token is current.
pub fn owner(state: &AppState, token: &str) -> anyhow::Result<Option<Ticket>> {
    let Some((id, given)) = token.split_once('-') else {
        return Ok(None);
    };
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    let Some((ticket, nonce)) = state.store.feed_owner(id)? else {
        return Ok(None);
    };
    let expected = mac(&state.config.session_key, id, &nonce);
    Ok(
        conference::protocol::constant_time_eq(expected.as_bytes(), given.as_bytes())
            .then_some(ticket),
    )
}
