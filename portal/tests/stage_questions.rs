//! The stage's "Top questions" on the Watch page: the running session's
//! speakers (and staff) see its most-voted questions, as the backstage's
//! notice lists them; attendees, other sessions and other rooms do not
//! show there. Q&A is the portal's own forms and tables, so `[chat]` points
//! at a homeserver that is not there: nothing here waits for one.

mod common;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration as Span, Utc};
use common::oidc::free_port;
use common::*;

/// Three streamed session rooms:
/// - Main Track: "Talk now" (Ada Lovelace) ends in 5 minutes, "Talk next"
///   (Somebody Else) follows, already in its join window;
/// - Side Track: "Side talk" (Somebody Else) runs now;
/// - Later Track: only a talk in three hours.
fn write_event(dir: &Path) -> PathBuf {
    let now = Utc::now();
    let today = now.date_naive();
    let days = common::days_around(today);
    let room = |name: &str| {
        format!(
            "[[room]]\nname = \"{name}\"\nkind = \"session\"\nbackend = \"bbb\"\npeak = 80\naudience = \"stream\"\n\n"
        )
    };
    let event = format!(
        "id = \"stage\"\nname = \"Stage Conference\"\ntimezone = \"UTC\"\ndomain = \"stage.example.org\"\n\
         attendees = 100\nschedule = \"schedule.xml\"\n\n{days}{}{}{}",
        room("Main Track"),
        room("Side Track"),
        room("Later Track"),
    );
    let ev = |guid: &str, title: &str, start: DateTime<Utc>, minutes: i64, person: &str| {
        format!(
            r#"<event guid="{guid}" id="{guid}"><date>{}</date><start>{}</start><duration>{:02}:{:02}</duration><title>{title}</title><type>Talk</type><persons><person id="1">{person}</person></persons></event>"#,
            start.format("%Y-%m-%dT%H:%M:%S+00:00"),
            start.format("%H:%M"),
            minutes / 60,
            minutes % 60
        )
    };
    let switch = now + Span::minutes(5);
    let schedule = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<schedule><conference><title>Stage</title><time_zone_name>UTC</time_zone_name></conference>
<day index="1" date="{today}"><room name="Main Track">{}{}</room><room name="Side Track">{}</room><room name="Later Track">{}</room></day></schedule>"#,
        ev(
            "talk-now",
            "Talk now",
            switch - Span::minutes(55),
            55,
            "Ada Lovelace"
        ),
        ev("talk-next", "Talk next", switch, 60, "Somebody Else"),
        ev(
            "side-talk",
            "Side talk",
            now - Span::minutes(10),
            60,
            "Somebody Else"
        ),
        ev(
            "later-talk",
            "Later talk",
            now + Span::hours(3),
            60,
            "Somebody Else"
        ),
    );
    std::fs::write(dir.join("schedule.xml"), schedule).unwrap();
    let p = dir.join("event.toml");
    std::fs::write(&p, event).unwrap();
    p
}

/// The "Top questions" section of a page, if it has one.
fn top_section(html: &str) -> Option<&str> {
    let at = html.find("id=\"top-questions\"")?;
    let rest = &html[at..];
    Some(&rest[..rest.find("</section>").expect("the section ends")])
}

/// The section's questions as (text, votes), in page order.
fn top_questions(section: &str) -> Vec<(String, i64)> {
    let field = |li: &str, class: &str| {
        let open = format!("class=\"{class}\">");
        let v = &li[li.find(&open).unwrap_or_else(|| panic!("{class} in {li}")) + open.len()..];
        v[..v.find('<').unwrap()].to_owned()
    };
    section
        .split("<li>")
        .skip(1)
        .map(|li| {
            (
                field(li, "text"),
                field(li, "votes").parse().expect("a vote count"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_sees_the_top_questions_of_its_session_on_the_watch_page() {
    let dir = TempDir::new("stage-questions");
    let event = write_event(dir.path());
    let secret = dir.write("registration-secret", "a-registration-secret-for-tests\n");
    let stream = "[stream]\nurls = [\"https://edge-1.stage.example.org/hls\"]\n";
    let chat = format!(
        "[chat]\nhomeserver_url = \"http://127.0.0.1:{}\"\nserver_name = \"venue.test\"\n\
         registration_shared_secret_file = \"{}\"\n",
        free_port(),
        secret.display()
    );
    let config = write_config(dir.path(), 1.0, &[], &format!("{stream}{chat}"));
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    let base = p.url.clone();
    let mut users = Vec::new();
    for (email, code) in [
        ("ada@example.org", "ada-ticket-0001"),
        ("bob@example.org", "bob-ticket-0002"),
        ("carol@example.org", "carol-ticket-03"),
        ("dan@example.org", "dan-ticket-0004"),
    ] {
        let cookie = login(&c, &base, email, code).await;
        let csrf = session_csrf(&c, &base, &cookie).await;
        users.push((cookie, csrf));
    }
    let [ada, bob, carol, dan] = [0, 1, 2, 3].map(|i| users[i].clone());

    let ask = |(cookie, csrf): &(String, String), room: &str, guid: &str, text: &str| {
        let (c, url) = (c.clone(), format!("{base}/rooms/{room}/questions"));
        let (cookie, csrf, guid, text) = (
            cookie.clone(),
            csrf.clone(),
            guid.to_owned(),
            text.to_owned(),
        );
        async move {
            let (st, loc, body) = post(
                &c,
                &url,
                &cookie,
                &[("csrf", &csrf), ("guid", &guid), ("text", &text)],
            )
            .await;
            assert_eq!(st, 303, "asking {text:?}: {body}");
            loc.rsplit("#q-").next().unwrap().parse::<i64>().unwrap()
        }
    };
    let vote = |(cookie, csrf): &(String, String), room: &str, q: i64| {
        let (c, url) = (c.clone(), format!("{base}/rooms/{room}/questions/{q}/vote"));
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        async move {
            let (st, _, body) = post(&c, &url, &cookie, &[("csrf", &csrf)]).await;
            assert_eq!(st, 303, "vote for {q}: {body}");
        }
    };

    // Talk now: 4, 2 and 1 votes (asking is a vote), then eight more with
    // one vote each, so the eleventh is past the backstage's ten.
    let q1 = ask(&bob, "main-track", "talk-now", "Why the kernel?").await;
    let q2 = ask(&dan, "main-track", "talk-now", "How fast is it?").await;
    let q3 = ask(&carol, "main-track", "talk-now", "Which licence?").await;
    for who in [&ada, &bob, &carol] {
        vote(who, "main-track", q2).await;
    }
    vote(&dan, "main-track", q3).await;
    for i in 1..=8 {
        ask(
            &bob,
            "main-track",
            "talk-now",
            &format!("Filler question {i}"),
        )
        .await;
    }
    // The next session in the same room and another room's session, voted
    // above all of them.
    let next = ask(
        &dan,
        "main-track",
        "talk-next",
        "A question for the next talk",
    )
    .await;
    let side = ask(
        &dan,
        "side-track",
        "side-talk",
        "A question for the side talk",
    )
    .await;
    for who in [&ada, &bob, &carol] {
        vote(who, "main-track", next).await;
        vote(who, "side-track", side).await;
    }
    assert!(q1 < q2 && q2 < q3);

    // Ada speaks in the session on now: its ten top questions, most votes
    // first, ties by age, with their vote counts.
    let watch = format!("{base}/rooms/main-track/watch");
    let (st, _, html) = get(&c, &watch, &ada.0).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Join the stage"), "Ada is on the stage");
    let section = top_section(&html).unwrap_or_else(|| panic!("no top questions for Ada: {html}"));
    assert!(section.contains("Top questions"), "{section}");
    let mut want: Vec<(String, i64)> = vec![
        ("How fast is it?".into(), 4),
        ("Which licence?".into(), 2),
        ("Why the kernel?".into(), 1),
    ];
    want.extend((1..=7).map(|i| (format!("Filler question {i}"), 1)));
    assert_eq!(top_questions(section), want, "{section}");
    for absent in [
        "Filler question 8",
        "A question for the next talk",
        "A question for the side talk",
    ] {
        assert!(!section.contains(absent), "{absent:?} shown: {section}");
    }
    assert!(!section.contains("<form"), "the stage's list has no forms");

    // Staff are on every stage too; Carol's Side Track shows only its own.
    let (st, _, html) = get(&c, &watch, &carol.0).await;
    assert_eq!(st, 200);
    let section = top_section(&html).expect("top questions for staff");
    assert_eq!(top_questions(section), want, "{section}");
    let (st, _, html) = get(&c, &format!("{base}/rooms/side-track/watch"), &carol.0).await;
    assert_eq!(st, 200, "{html}");
    let section = top_section(&html).expect("Side Track's top questions");
    assert_eq!(
        top_questions(section),
        [("A question for the side talk".to_owned(), 4)],
        "{section}"
    );

    // Bob is in the audience: the page as it was, no stage section.
    let (st, _, html) = get(&c, &watch, &bob.0).await;
    assert_eq!(st, 200, "{html}");
    assert!(!html.contains("Join the stage"));
    assert!(
        top_section(&html).is_none() && !html.contains("Top questions"),
        "{html}"
    );
    // Ada is not on Side Track's stage.
    let (st, _, html) = get(&c, &format!("{base}/rooms/side-track/watch"), &ada.0).await;
    assert_eq!(st, 200, "{html}");
    assert!(top_section(&html).is_none(), "{html}");
    // No session on now in Later Track: nothing, even for staff.
    let (st, _, html) = get(&c, &format!("{base}/rooms/later-track/watch"), &carol.0).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Join the stage"), "staff are on the stage");
    assert!(top_section(&html).is_none(), "{html}");

    // Without `[chat]` (same database, questions and all): no section.
    drop(p);
    let config = write_config(dir.path(), 1.0, &[], stream);
    let p = Portal::start(&event, &state, Some(&config));
    let ada = login(&c, &p.url, "ada@example.org", "ada-ticket-0001").await;
    let (st, _, html) = get(&c, &format!("{}/rooms/main-track/watch", p.url), &ada).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Join the stage"), "Ada is on the stage");
    assert!(
        top_section(&html).is_none() && !html.contains("Top questions"),
        "{html}"
    );
}
