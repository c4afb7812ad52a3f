//! Q&A on the homeserver: each question posted to its session's room, and
//! each backstage's "Top questions" message kept up to date.

use anyhow::Result;
use serde_json::json;

use super::{attributed, plan, Bot, Chat};
use crate::state::AppState;

impl Chat {
    /// Posts new questions to their session's room, and keeps each
    /// backstage's "Top questions" message up to date (edited in place).
    pub(super) async fn questions(&self, bot: &Bot, state: &AppState) -> Result<()> {
        let ev = &state.event;
        let room_of = |guid: &str| {
            ev.sessions
                .iter()
                .find(|s| s.guid == guid)
                .and_then(|s| ev.room(&s.room).map(|r| (s, r)))
        };
        for (id, guid, name, text) in state.store.unposted_questions()? {
            if let Some((_, room)) = room_of(&guid) {
                // Its room not made yet: posted by a later pass.
                let Ok(target) = self.room_id(&room.slug) else {
                    continue;
                };
                self.matrix
                    .send(&bot.token, &target, &attributed(&name, &text, Some("asks")))
                    .await?;
                self.recent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&room.slug);
            }
            state.store.set_question_posted(id)?;
        }
        for guid in state.store.sessions_with_questions()? {
            let Some((session, room)) = room_of(&guid) else {
                continue;
            };
            if room.kind != conference::RoomKind::Session {
                continue;
            }
            let body = top_questions(&session.title, &state.store.questions(&guid, None)?);
            let old = state.store.top_message(&guid)?;
            if old.as_ref().is_some_and(|(_, b)| *b == body) {
                continue;
            }
            let Ok(backstage) = self.room_id(&plan::backstage_alias(&room.slug)) else {
                continue;
            };
            let event_id = match &old {
                None => {
                    self.matrix
                        .send(
                            &bot.token,
                            &backstage,
                            &json!({"msgtype": "m.notice", "body": body}),
                        )
                        .await?
                }
                Some((orig, _)) => {
                    self.matrix
                        .send(
                            &bot.token,
                            &backstage,
                            &json!({
                                "msgtype": "m.notice",
                                "body": format!("* {body}"),
                                "m.new_content": {"msgtype": "m.notice", "body": body},
                                "m.relates_to": {"rel_type": "m.replace", "event_id": orig},
                            }),
                        )
                        .await?;
                    orig.clone()
                }
            };
            state.store.set_top_message(&guid, &event_id, &body)?;
        }
        Ok(())
    }
}

/// The backstage's message: the ten questions with the most votes.
pub fn top_questions(title: &str, questions: &[super::store::Question]) -> String {
    let mut body = format!("Top questions — {title}");
    for (i, q) in questions
        .iter()
        .take(super::pages::TOP_QUESTIONS)
        .enumerate()
    {
        let votes = if q.votes == 1 { "vote" } else { "votes" };
        body.push_str(&format!(
            "\n{}. {} ({} {votes}, asked by {})",
            i + 1,
            q.text,
            q.votes,
            q.name
        ));
    }
    body
}
