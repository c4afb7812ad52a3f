//! HTML: one layout, one small stylesheet inlined, no JavaScript. maud
//! escapes every interpolated string, so schedule text renders as text.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::sync::atomic::{AtomicUsize, Ordering};

use maud::{html, Markup, PreEscaped, Render, DOCTYPE};

use crate::store::Ticket;

const CSS: &str = r#"
:root{--fg:#1b1f23;--bg:#fff;--muted:#5c6670;--line:#d8dde2;--accent:#0b5cad;--ok:#1a7f37;--bad:#b42318;--soft:#f3f6f9}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8ea;--bg:#15181b;--muted:#9aa4ad;--line:#343a40;--accent:#6cb2ff;--ok:#4ac26b;--bad:#ff7b72;--soft:#1f2428}}
*{box-sizing:border-box}body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{border-bottom:1px solid var(--line);padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
header .ev{font-weight:700;margin-right:auto}nav a{margin-right:.8rem}a{color:var(--accent)}
main{max-width:60rem;margin:0 auto;padding:1rem}footer{color:var(--muted);font-size:.9rem;padding:1rem;text-align:center;border-top:1px solid var(--line)}
h1{font-size:1.5rem;margin:.2rem 0 1rem}h2{font-size:1.15rem;margin:1.4rem 0 .5rem}
.card{border:1px solid var(--line);border-radius:.5rem;padding:.6rem .8rem;margin:.5rem 0;background:var(--soft)}
.row{display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:baseline}.grow{flex:1 1 16rem}
.t{font-variant-numeric:tabular-nums;white-space:nowrap}.muted{color:var(--muted);font-size:.92rem}
.live{color:var(--ok);font-weight:600}.down{color:var(--bad);font-weight:600}.up{color:var(--ok);font-weight:600}.draining{color:var(--accent);font-weight:600}
button,.button{font:inherit;border:0;border-radius:.4rem;padding:.45rem .9rem;background:var(--accent);color:#fff;cursor:pointer;text-decoration:none;display:inline-block}
button.quiet{background:transparent;color:var(--accent);border:1px solid var(--line);padding:.2rem .6rem}
form.inline{display:inline}input,select{font:inherit;padding:.45rem;border:1px solid var(--line);border-radius:.4rem;width:100%;max-width:24rem;background:var(--bg);color:var(--fg)}
label{display:block;margin:.6rem 0 .2rem}.error{color:var(--bad);font-weight:600}
table{border-collapse:collapse;width:100%;font-size:.95rem}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line)}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.watch{display:grid;grid-template-columns:minmax(0,2fr) minmax(14rem,1fr);gap:1rem}@media (max-width:50rem){.watch{grid-template-columns:1fr}}
ol.chat{list-style:none;padding:0;margin:0;max-height:28rem;overflow-y:auto;font-size:.95rem}ol.chat li{padding:.15rem 0}.votes{font-weight:700;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}.banner{background:var(--soft);border-left:4px solid var(--accent);padding:.5rem .8rem;margin-bottom:1rem}
"#;

/// Everything a page needs to know about the event and the viewer.
pub struct Frame<'a> {
    pub chrome: &'a Chrome,
    pub user: Option<(&'a Ticket, &'a str)>,
}

/// The parts of every page that depend only on the event, rendered once.
pub struct Chrome {
    /// The event's name, escaped.
    name: String,
    footer: String,
}

impl Chrome {
    pub fn new(ev: &conference::Event) -> Chrome {
        Chrome {
            name: html! { (ev.name) }.into_string(),
            footer: html! {
                footer {
                    @if let Some(chat) = &ev.chat { a href=(chat) { "Chat" } " · " }
                    @if let Some(coc) = &ev.code_of_conduct { a href=(coc) { "Code of conduct" } " · " }
                    @if let Some(contact) = &ev.contact { a href=(contact) { "Contact the organisers" } " · " }
                    @if ev.timezone == chrono_tz::UTC { "Times in UTC" }
                    @else { "Times in UTC and in " (ev.timezone.name()) " (the event's time zone)" }
                }
            }
            .into_string(),
        }
    }
}

/// The largest page rendered so far: new pages start with a buffer this
/// big, so that a page is written once instead of grown and copied.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(16 * 1024);

/// A page of the portal: the layout around `body`, which renders straight
/// into the page's buffer.
pub fn page(frame: &Frame, title: &str, body: impl Render) -> Markup {
    let chrome = frame.chrome;
    let name = PreEscaped(chrome.name.as_str());
    let mut out = String::with_capacity(PAGE_SIZE.load(Ordering::Relaxed) + 1024);
    out.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    html! { title { (title) " · " (name) } }.render_to(&mut out);
    out.push_str("<style>");
    out.push_str(CSS);
    out.push_str("</style></head><body>");
    html! {
        header {
            span.ev { (name) }
            @if let Some((ticket, csrf)) = frame.user {
                nav {
                    a href="/" { "Welcome" }
                    a href="/timetable" { "Timetable" }
                    a href="/schedule" { "Schedule" }
                    @if ticket.is_staff() {
                        a href="/staff" { "Staff room" }
                        a href="/status" { "Status" }
                    }
                    a href="/settings" { "Settings" }
                }
                form.inline method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button.quiet type="submit" { "Log out" }
                }
            }
        }
    }
    .render_to(&mut out);
    out.push_str("<main>");
    body.render_to(&mut out);
    out.push_str("</main>");
    out.push_str(&chrome.footer);
    out.push_str("</body></html>");
    PAGE_SIZE.fetch_max(out.len().min(1 << 20), Ordering::Relaxed);
    PreEscaped(out)
}

/// A plain page for errors and notices, without navigation.
pub fn message_page(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { main {
                h1 { (title) }
                p { (message) }
                p { a href="/" { "Back to the portal" } }
            } }
        }
    }
}

/// `08:20–09:25 UTC`, and the same in the event's and the viewer's zones.
pub fn times(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    event_tz: Tz,
    user_tz: Option<Tz>,
) -> Markup {
    let span = |tz: Tz| {
        let (s, e) = (start.with_timezone(&tz), end.with_timezone(&tz));
        format!(
            "{}–{} {}",
            s.format("%H:%M"),
            e.format("%H:%M"),
            s.format("%Z")
        )
    };
    html! {
        span.t title=(start.format("%Y-%m-%d %H:%M UTC")) { (span(chrono_tz::UTC)) }
        @if event_tz != chrono_tz::UTC {
            " · " span.t title="the event's time zone" { (span(event_tz)) }
        }
        @if let Some(tz) = user_tz.filter(|tz| *tz != event_tz && *tz != chrono_tz::UTC) {
            " · " span.t title="your time zone" { "you: " (span(tz)) }
        }
    }
}

/// A POST form with only a CSRF token and a button.
pub fn post_button(action: &str, csrf: &str, label: &str, class: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            button class=[class] type="submit" { (label) }
        }
    }
}

/// Markup written by a function straight into the page's buffer (for long
/// lists, which `html!` would build in a buffer of their own and copy).
pub struct Direct<F: Fn(&mut String)>(pub F);

impl<F: Fn(&mut String)> Render for Direct<F> {
    fn render_to(&self, buffer: &mut String) {
        (self.0)(buffer)
    }
}
