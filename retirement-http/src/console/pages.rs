//! The console's HTML: server-rendered with maud (every interpolation escaped), one small
//! stylesheet, no JavaScript. Pages show learners by retirement id and retired username only;
//! an original email appears only on the page that answers a logged reveal.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use retirement_core::Pipeline;

use super::access::Session;
use super::ops::{
    ActionName, BulkResult, DUE_SOON_DAYS, Filter, LearnerPage, LearnerRow, LearnerView, Overview,
    Sort,
};

const STYLE: &str = r#"
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header .who{margin-left:auto;font-size:.9rem}
header form{display:inline}
main{max-width:1180px;margin:1rem auto;padding:0 1rem}
h1{font-size:1.4rem;margin:.6rem 0}
h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}
.card{background:#fff;border:1px solid #d7dce2;border-radius:6px;padding:.5rem .9rem;min-width:8.5rem}
.card b{display:block;font-size:1.5rem}
.card.bad b{color:#b3261e}.card.warn b{color:#9a6700}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e3e6ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td.num{text-align:right}
.overdue{color:#b3261e;font-weight:600}.soon{color:#9a6700}
.notice{background:#e6f4ea;border:1px solid #9cd3ae;padding:.5rem .8rem;border-radius:4px}
.error{background:#fdecea;border:1px solid #f1a9a4;padding:.5rem .8rem;border-radius:4px}
.unavailable{color:#6b7480;font-size:.9rem}
form.action{background:#fff;border:1px solid #d7dce2;border-radius:6px;padding:.5rem .8rem;margin:.4rem 0}
input[type=text],input[type=password],select{padding:.25rem;font:inherit}
button{font:inherit;padding:.25rem .8rem;cursor:pointer}
pre{white-space:pre-wrap;margin:0;font-size:.85rem}
.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin:.4rem 0}
.filters label{display:flex;flex-direction:column;font-size:.85rem}
.pager{margin:.5rem 0}
.login{max-width:24rem;margin:4rem auto;background:#fff;border:1px solid #d7dce2;border-radius:6px;padding:1rem 1.4rem}
.login label{display:block;margin:.4rem 0}
svg text{font:12px system-ui,sans-serif}
"#;

fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · retire console" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { "retire console" }
                    @if let Some(session) = session {
                        a href="/" { "Overview" }
                        a href="/learners" { "Learners" }
                        a href="/bulk" { "Bulk retry" }
                        span.who {
                            "Signed in as " (session.operator) " "
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in page.
pub(super) fn login(error: Option<&str>, passwords: bool, lms: bool) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            div.login {
                h1 { "Sign in" }
                @if let Some(error) = error { p.error id="login-error" { (error) } }
                @if passwords {
                    form method="post" action="/login" {
                        label { "Operator" br; input type="text" name="name" id="name" autocomplete="username" required; }
                        label { "Password" br; input type="password" name="password" id="password" autocomplete="current-password" required; }
                        button type="submit" id="sign-in" { "Sign in" }
                    }
                }
                @if lms {
                    p { a href="/login/lms" id="sign-in-lms" { "Sign in with the LMS (staff)" } }
                }
                @if !passwords && !lms {
                    p.error { "No way to sign in is configured: add console.operators or console.lms_sign_in." }
                }
            }
        },
    )
}

fn days(row: &LearnerRow) -> Markup {
    match row.days_left {
        None => html! { "—" },
        Some(_) if row.overdue => {
            html! { span.overdue { (describe_days(row.days_left.unwrap_or(0), true)) } }
        }
        Some(d) if d <= DUE_SOON_DAYS => html! { span.soon { (describe_days(d, false)) } },
        Some(d) => html! { (describe_days(d, false)) },
    }
}

fn describe_days(days: i64, overdue: bool) -> String {
    match days {
        _ if overdue && days >= 0 => "overdue today".to_owned(),
        d if d < 0 => format!("{} days overdue", -d),
        0 => "due today".to_owned(),
        1 => "1 day left".to_owned(),
        d => format!("{d} days left"),
    }
}

fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The pipeline as a diagram: PENDING, each stage's working and completion states, COMPLETE,
/// and the dead ends, each with its count.
fn diagram(pipeline: &Pipeline, counts: &[(String, usize)]) -> Markup {
    let count = |state: &str| {
        counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n)
    };
    let stages = pipeline.stages();
    let row_h = 34;
    let height = row_h * (stages.len() as i32 + 2) + 10;
    let mut boxes = String::new();
    let mut push = |x: i32, y: i32, w: i32, state: &str, fill: &str| {
        boxes.push_str(&format!(
            r##"<g><rect x="{x}" y="{y}" width="{w}" height="24" rx="5" fill="{fill}" stroke="#5b6b7c"/><text x="{tx}" y="{ty}">{name} ({n})</text></g>"##,
            tx = x + 8,
            ty = y + 16,
            name = maud::html! { (state) }.into_string(),
            n = count(state),
        ));
    };
    let arrow = |x1: i32, y1: i32, x2: i32, y2: i32, dashed: bool| {
        format!(
            r##"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#5b6b7c" marker-end="url(#a)"{}/>"##,
            if dashed {
                r#" stroke-dasharray="4 3""#
            } else {
                ""
            }
        )
    };
    let mut lines = String::new();
    push(10, 5, 230, retirement_core::PENDING, "#e8eef7");
    for (i, stage) in stages.iter().enumerate() {
        let y = 5 + row_h * (i as i32 + 1);
        push(10, y, 230, &stage.working_state, "#fff7e0");
        push(290, y, 230, &stage.complete_state, "#e6f4ea");
        lines.push_str(&arrow(240, y + 12, 288, y + 12, false));
        lines.push_str(&arrow(125, y - 10, 125, y - 1, false));
        lines.push_str(&arrow(520, y + 12, 588, 30, true));
    }
    let last = 5 + row_h * (stages.len() as i32 + 1);
    push(10, last, 230, retirement_core::COMPLETE, "#d2ecd9");
    lines.push_str(&arrow(125, last - 10, 125, last - 1, false));
    push(590, 18, 150, retirement_core::ERRORED, "#fdecea");
    push(590, 58, 150, retirement_core::ABORTED, "#eeeeee");
    html! {
        svg id="state-diagram" width="760" height=(height) role="img" aria-label="The pipeline's states with the number of learners in each" {
            defs { marker id="a" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse" { path d="M0 0L10 5L0 10z" fill="#5b6b7c" {} } }
            (PreEscaped(lines))
            (PreEscaped(boxes))
        }
        p.unavailable { "Each stage runs its working state (left), then records its completion (right); a failed step goes to ERRORED (dashed). Operators move learners out of dead ends with reset, retry or rerun." }
    }
}

/// The overview page.
pub(super) fn overview(
    session: &Session,
    overview: &Overview,
    pipeline: &Pipeline,
    store_kind: &str,
    notice: Option<&str>,
) -> Markup {
    let card = |id: &str, label: &str, n: usize, class: &str, link: &str| {
        html! {
            a.card.(class) id=(id) href=(link) style="color:inherit;text-decoration:none" { b { (n) } (label) }
        }
    };
    page(
        "Overview",
        Some(session),
        html! {
            @if let Some(notice) = notice { p.notice { (notice) } }
            h1 { "Overview" }
            p { "Store: " (store_kind) " · statutory clock: " (overview.regime) }
            div.cards {
                (card("open", "open requests", overview.open, "", "/learners"))
                (card("errored", "ERRORED", overview.errored, if overview.errored > 0 { "bad" } else { "" }, "/learners?state=ERRORED"))
                (card("overdue", "overdue", overview.overdue, if overview.overdue > 0 { "bad" } else { "" }, "/learners?overdue=true"))
                (card("due-soon", &format!("due within {DUE_SOON_DAYS} days"), overview.due_soon, if overview.due_soon > 0 { "warn" } else { "" }, &format!("/learners?max_days_left={DUE_SOON_DAYS}")))
                (card("stuck", "stuck (worker died)", overview.stuck, if overview.stuck > 0 { "warn" } else { "" }, "/learners"))
                (card("waiting", "waiting on a vendor or a person", overview.waiting, "", "/learners"))
            }
            @if let Some(age) = overview.oldest_pending_seconds {
                p { "Oldest PENDING request: " (age / 86_400) " days old." }
            }
            h2 { "Learners per state" }
            (diagram(pipeline, &overview.by_state))
            table id="by-state" {
                thead { tr { th { "State" } th { "Learners" } } }
                tbody {
                    @for (state, n) in &overview.by_state {
                        tr { td { a href={ "/learners?state=" (state) } { (state) } } td.num data-state=(state) { (n) } }
                    }
                }
            }
            h2 { "Last runs" }
            @if overview.runs.is_empty() {
                p.unavailable { "No runs recorded (runs are recorded by `retire run` in the store's database; with store: lms, in lease_store)." }
            } @else {
                table id="runs" {
                    thead { tr { th { "Started" } th { "Took" } th { "Worker" } th { "Outcome" } th { "Claimed" } th { "Complete" } th { "ERRORED" } th { "Waiting" } } }
                    tbody {
                        @for run in &overview.runs {
                            tr {
                                td { (when(run.started)) }
                                td.num { ((run.ended - run.started).num_seconds()) " s" }
                                td { (run.worker) }
                                td { (run.outcome) }
                                td.num { (run.claimed) }
                                td.num { (run.completed) }
                                td.num { (run.errored) }
                                td.num { (run.waiting) }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn sort_option(current: Sort, value: Sort, label: &str) -> Markup {
    let name = serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    html! { option value=(name) selected[current == value] { (label) } }
}

/// The learners list.
pub(super) fn learners(
    session: &Session,
    page_: &LearnerPage,
    filter: &Filter,
    states: &[String],
    query_without_page: &str,
) -> Markup {
    page(
        "Learners",
        Some(session),
        html! {
            h1 { "Learners" }
            form.filters method="get" action="/learners" {
                label { "State" select name="state" id="filter-state" {
                    option value="" { "any" }
                    @for state in states { option value=(state) selected[filter.state.as_deref() == Some(state.as_str())] { (state) } }
                } }
                label { "Requested from" input type="date" name="from" value=[filter.from.map(|d| d.to_string())]; }
                label { "to" input type="date" name="to" value=[filter.to.map(|d| d.to_string())]; }
                label { "At most days left" input type="text" size="4" name="max_days_left" value=[filter.max_days_left.map(|d| d.to_string())]; }
                label { "Sort" select name="sort" {
                    (sort_option(filter.sort, Sort::Due, "soonest due"))
                    (sort_option(filter.sort, Sort::Requested, "oldest request"))
                    (sort_option(filter.sort, Sort::Id, "retirement id"))
                    (sort_option(filter.sort, Sort::State, "state"))
                } }
                button type="submit" id="filter" { "Filter" }
            }
            p id="total" data-state=[filter.state.as_deref()] { (page_.total) " learner(s) match." }
            (learner_table(&page_.rows, None))
            div.pager {
                @if page_.page > 1 { a href={ "/learners?" (query_without_page) "&page=" (page_.page - 1) } { "← previous" } " " }
                "page " (page_.page) " of " (page_.pages)
                @if page_.page < page_.pages { " " a href={ "/learners?" (query_without_page) "&page=" (page_.page + 1) } id="next" { "next →" } }
            }
        },
    )
}

fn learner_table(rows: &[LearnerRow], select: Option<&str>) -> Markup {
    html! {
        table id="learners" {
            thead { tr {
                @if select.is_some() { th { "Retry" } }
                th { "Retirement" } th { "Retired username" } th { "State" } th { "Requested" } th { "Due" } th { "Days left" } th { "" }
            } }
            tbody {
                @for row in rows {
                    tr data-id=(row.retirement_id) {
                        @if let Some(name) = select {
                            td { input type="checkbox" name=(name) value=(row.retirement_id) id={ "select-" (row.retirement_id) }; }
                        }
                        td { a href={ "/learners/" (row.retirement_id) } { (row.retirement_id) } }
                        td { code { (row.retired_username) } }
                        td.state { (row.state) }
                        td { (row.requested.format("%Y-%m-%d")) }
                        td { @if let Some(due) = row.due { (due.format("%Y-%m-%d")) } @else { "—" } }
                        td { (days(row)) @if row.extensions > 0 { " (extended)" } }
                        td {
                            @if row.stuck { "stuck " }
                            @if let Some(w) = &row.waiting { span title=(w) { "waiting" } }
                        }
                    }
                }
            }
        }
    }
}

/// One learner's page; `revealed` is the original email after a logged reveal.
pub(super) fn learner(
    session: &Session,
    view: &LearnerView,
    notice: Option<&str>,
    error: Option<&str>,
    revealed: Option<&str>,
) -> Markup {
    let row = &view.row;
    let available = |action: ActionName| {
        view.actions
            .iter()
            .find(|a| a.action == action)
            .and_then(|a| a.unavailable.clone())
    };
    let form = |action: ActionName, label: &str, extra: Markup| {
        let id = row.retirement_id;
        match available(action) {
            Some(why) => html! {
                div.action.unavailable id={ "unavailable-" (action.as_str()) } { b { (label) } ": unavailable — " (why) }
            },
            None => html! {
                form.action method="post" action={ "/learners/" (id) "/" (action.as_str()) } id={ "form-" (action.as_str()) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    b { (label) } " "
                    (extra)
                    input type="text" name="reason" placeholder="reason (required, audited)" size="40" required;
                    " "
                    button type="submit" id={ "do-" (action.as_str()) } { (label) }
                }
            },
        }
    };
    page(
        &format!("Retirement {}", row.retirement_id),
        Some(session),
        html! {
            @if let Some(notice) = notice { p.notice id="notice" { (notice) } }
            @if let Some(error) = error { p.error id="error" { (error) } }
            h1 { "Retirement " (row.retirement_id) }
            table id="summary" {
                tr { th { "Retired username" } td { code { (row.retired_username) } } }
                tr { th { "Retired email" } td { code { (view.retired_email) } } }
                @if let Some(user) = view.lms_user_id { tr { th { "LMS user id" } td { (user) } } }
                tr { th { "State" } td id="state" { (row.state) } }
                tr { th { "Last state" } td { (row.last_state) } }
                tr { th { "Requested" } td { (when(row.requested)) } }
                tr { th { "Due" } td id="due" {
                    @if let Some(due) = row.due { (when(due)) " (" (days(row)) ")" @if row.extensions > 0 { " · extended " (row.extensions) "×" } } @else { "answered" }
                } }
                @if let Some(wait) = &view.wait { tr { th { "Waiting" } td { (wait.to_string()) } } }
                @if row.stuck { tr { th { "Stuck" } td { "In a working state with no write for longer than a lease: its worker died; the next run repeats the step." } } }
                @if let Some(email) = revealed { tr { th { "Original email" } td id="revealed" { (email) " " span.unavailable { "(this reveal is recorded in the timeline)" } } } }
            }
            h2 { "Actions" }
            (form(ActionName::Retry, "Retry from the failed stage", html! {}))
            (form(ActionName::Reset, "Reset", html! {
                "to " select name="to" id="reset-to" { @for state in &view.reset_targets { option value=(state) selected[*state == row.last_state] { (state) } } } " "
            }))
            (form(ActionName::Rerun, "Rerun every stage", html! {}))
            (form(ActionName::Done, "Mark the manual step done", html! {}))
            (form(ActionName::Cancel, "Cancel the request", html! {}))
            (form(ActionName::Extend, "Extend the deadline", html! {}))
            (form(ActionName::Reveal, "Reveal the original email", html! {}))
            h2 { "Timeline" }
            table id="timeline" {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "Text" } } }
                tbody {
                    @for entry in &view.timeline {
                        tr { td { (when(entry.at)) } td { (entry.actor) } td { (entry.what) } td { pre { (entry.text) } } }
                    }
                }
            }
        },
    )
}

/// The bulk retry page: the ERRORED learners with checkboxes, and the last result.
pub(super) fn bulk(
    session: &Session,
    errored: &[LearnerRow],
    result: Option<&BulkResult>,
) -> Markup {
    page(
        "Bulk retry",
        Some(session),
        html! {
            h1 { "Retry ERRORED learners" }
            @if let Some(result) = result {
                div.notice id="bulk-result" {
                    p { (result.moved.len()) " moved, " (result.refused.len()) " refused." }
                    @if !result.refused.is_empty() {
                        ul { @for (id, why) in &result.refused { li { "retirement " (id) ": " (why) } } }
                    }
                }
            }
            @if errored.is_empty() {
                p id="none" { "No learner is ERRORED." }
            } @else {
                form method="post" action="/bulk" id="bulk" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    p { "Each selected learner moves back to the state before the stage that failed; the next run retries that stage." }
                    (learner_table(errored, Some("id")))
                    p {
                        input type="text" name="reason" placeholder="reason (required, audited)" size="50" required id="bulk-reason";
                        " "
                        button type="submit" id="do-bulk" { "Retry selected" }
                    }
                }
            }
        },
    )
}

/// An error page (not found, refused).
pub(super) fn error(session: Option<&Session>, status: u16, message: &str) -> Markup {
    page(
        "Error",
        session,
        html! { h1 { "Error " (status) } p.error { (message) } p { a href="/" { "Back to the overview" } } },
    )
}
