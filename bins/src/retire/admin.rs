//! The operator commands: queue, status, reset, rerun, cancel, request, states, db.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{NaiveDate, Utc};
use clap::{Args, Subcommand};
use retirement_core::{CoreError, Deadline, OriginalIdentity, Override, Retirement};
use retirement_store::{
    DieselStore, MoveTarget, NewRetirement, QueueQuery, StateWindow, StoreError, StoreOptions,
};
use serde::Serialize;

use super::{operator, today};
use crate::config::Config;
use crate::error::{CliError, exit};
use crate::wiring::{self, LMS_STORE};

#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    /// Only learners requested more than this many days ago (config `cool_off_days`).
    #[arg(long, visible_alias = "cool_off_days")]
    cool_off_days: Option<i64>,
    /// At most this many, lowest retirement id first.
    #[arg(long, visible_alias = "max_user_batch_size")]
    limit: Option<i64>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["username", "email", "user_id"])))]
pub(crate) struct StatusArgs {
    /// The learner's original username (exact case).
    username: Option<String>,
    /// Find the learner by original email instead (any case). With `store: lms`, through
    /// the LMS's staff account lookup, which names a retirement only while it can still be
    /// cancelled.
    #[arg(long)]
    email: Option<String>,
    /// Find the learner by LMS user id instead.
    #[arg(long)]
    user_id: Option<i64>,
    /// Print the record as JSON.
    #[arg(long)]
    json: bool,
}

/// One learner, by original username, retirement id or LMS user id.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Who {
    /// The learner's original username (exact case).
    username: Option<String>,
    /// The learner by retirement id instead (`retire queue` lists it beside the retired
    /// username a vendor's task names).
    #[arg(long)]
    retirement_id: Option<i64>,
    /// The learner by LMS user id instead.
    #[arg(long)]
    user_id: Option<i64>,
}

impl Who {
    /// The learner, with its log.
    async fn find(&self, wired: &wiring::Wired) -> Result<Retirement, CliError> {
        match self.retirement_id {
            Some(id) => Ok(wired.store.get(retirement_core::RetirementId(id)).await?),
            None => find(wired, self.username.as_deref(), None, self.user_id).await,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct DoneArgs {
    #[command(flatten)]
    who: Who,
    /// The manual stage's working state (e.g. RETIRING_SALESFORCE) the learner waits in.
    #[arg(long)]
    stage: String,
    /// What was done (written to the learner's log).
    #[arg(long)]
    reason: String,
    /// Who did it (default $USER; written to the learner's log).
    #[arg(long)]
    operator: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExtendArgs {
    #[command(flatten)]
    who: Who,
    /// Why the request needs longer (recorded; GDPR Art. 12(3) asks for the reasons to be
    /// given to the learner).
    #[arg(long)]
    reason: String,
    /// Who decided (default $USER; recorded).
    #[arg(long)]
    operator: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// The learner's original username (exact case).
    username: String,
    /// The state to move to: usually the `*_COMPLETE` just before the step to retry, or
    /// PENDING to run every step again.
    #[arg(long)]
    to: String,
    /// Why (written to the learner's log).
    #[arg(long)]
    reason: String,
    /// Who is doing this (default $USER; written to the learner's log).
    #[arg(long)]
    operator: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "rewind"])))]
pub(crate) struct RerunArgs {
    /// The state the learners are in now.
    #[arg(long, visible_alias = "initial_state")]
    state: String,
    /// The first request day (UTC, YYYY-MM-DD).
    #[arg(long, visible_alias = "start_date")]
    start_date: NaiveDate,
    /// The last request day (UTC, YYYY-MM-DD; default today).
    #[arg(long, visible_alias = "end_date")]
    end_date: Option<NaiveDate>,
    /// Move them to this state (e.g. PENDING to rerun every step).
    #[arg(long, visible_alias = "new_state")]
    to: Option<String>,
    /// Move each back to where the driver can resume: its last state, or the state before it
    /// when that was a working state.
    #[arg(long, visible_alias = "rewind-state")]
    rewind: bool,
    /// Why (written to each learner's log).
    #[arg(long)]
    reason: String,
    /// Who is doing this (default $USER).
    #[arg(long)]
    operator: Option<String>,
    /// Only say how many learners would move.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The learner's email address (any case).
    email: String,
    /// Why (recorded in the journal with the operator, the only trace once the request is
    /// deleted; default "cancelled at the learner's request").
    #[arg(long)]
    reason: Option<String>,
    /// Who (default $USER).
    #[arg(long)]
    operator: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["username", "email", "csv"])))]
pub(crate) struct RequestArgs {
    /// One learner's original username (with `store: lms`, the username alone: the LMS
    /// knows the rest).
    #[arg(long)]
    username: Option<String>,
    /// Their email address. Alone, it is all the tool needs: with `store: lms` the LMS's
    /// account lookup finds the username; the standalone store keeps the email as the
    /// username too.
    #[arg(long)]
    email: Option<String>,
    /// Their full name.
    #[arg(long)]
    name: Option<String>,
    /// Their LMS user id.
    #[arg(long)]
    lms_user_id: Option<i64>,
    /// A CSV file of username,email[,name[,lms_user_id]] (a header row is skipped). The whole
    /// file is checked before anything is queued; learners already queued are skipped, so a
    /// re-run finishes an interrupted one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["username", "email", "name", "lms_user_id"])]
    csv: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StatesCommand {
    /// Make the store's state table match the config (`retirement_states`, or PENDING, the
    /// pipeline's pairs, ERRORED, ABORTED, COMPLETE), as upstream's populate_retirement_states.
    /// Refused while learners are in non-terminal states other than PENDING.
    Sync {
        /// Only print the plan.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Create or upgrade the store's tables (SQL stores only).
    Migrate,
}

fn describe(r: &Retirement) -> String {
    format!("retirement {} ({})", r.id(), r.retired_username())
}

pub(crate) async fn queue(config: &Config, args: QueueArgs) -> Result<u8, CliError> {
    let wired = wiring::wire(config).await?;
    let extensions = wired.extensions().await?;
    let pipeline = wiring::pipeline(config, &wired).await?;
    let query = QueueQuery {
        states: pipeline
            .queue_states()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        cool_off_days: args.cool_off_days.unwrap_or(config.cool_off_days),
        limit: args.limit,
    };
    let learners = wired.store.queue(&query, Utc::now()).await?;
    let mut out = String::new();
    for r in &learners {
        if args.json {
            #[derive(Serialize)]
            struct Row<'a> {
                retirement_id: i64,
                retired_username: &'a str,
                state: &'a str,
                requested: String,
                due: String,
                days_left: i64,
            }
            let deadline = deadline_of(config, r, &extensions);
            let row = Row {
                retirement_id: r.id().0,
                retired_username: r.retired_username(),
                state: r.current_state(),
                requested: r.created().to_rfc3339(),
                due: deadline.due.to_rfc3339(),
                days_left: deadline.days_left,
            };
            let _ = writeln!(out, "{}", serde_json::to_string(&row).unwrap_or_default());
        } else {
            let deadline = deadline_of(config, r, &extensions);
            let _ = writeln!(
                out,
                "{:>8}  {:<40}  {:<24}  {}  due {} ({})",
                r.id().0,
                r.retired_username(),
                r.current_state(),
                r.created().format("%Y-%m-%d"),
                deadline.due.format("%Y-%m-%d"),
                deadline.describe()
            );
        }
    }
    let waiting = waiting_learners(&wired, &pipeline).await?;
    for (r, wait) in &waiting {
        if args.json {
            let row = serde_json::json!({
                "retirement_id": r.id().0,
                "retired_username": r.retired_username(),
                "state": r.current_state(),
                "requested": r.created().to_rfc3339(),
                "waiting_on": wait,
            });
            let _ = writeln!(out, "{row}");
        } else {
            let _ = writeln!(
                out,
                "{:>8}  {:<40}  {:<24}  {}  {wait}",
                r.id().0,
                r.retired_username(),
                r.current_state(),
                r.created().format("%Y-%m-%d")
            );
        }
    }
    if !args.json {
        let _ = writeln!(out, "{} learner(s) to retire", learners.len());
        if !waiting.is_empty() {
            let _ = writeln!(
                out,
                "{} learner(s) waiting on a vendor job or a person",
                waiting.len()
            );
        }
    }
    for warning in wiring::pipeline_warnings(config, &pipeline) {
        eprintln!("retire: warning: {warning}");
    }
    print!("{out}");
    Ok(exit::OK)
}

/// The learners parked in the working state of a job or manual stage, with what they wait
/// on (a stored wait that still applies).
pub(crate) async fn waiting_learners(
    wired: &wiring::Wired,
    pipeline: &retirement_core::Pipeline,
) -> Result<Vec<(Retirement, retirement_core::Wait)>, CliError> {
    let states: Vec<String> = pipeline
        .stages()
        .iter()
        .filter(|s| s.kind != retirement_core::StageKind::Call)
        .map(|s| s.working_state.clone())
        .collect();
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let waits: std::collections::HashMap<i64, retirement_core::Wait> = wired
        .store
        .waits()
        .await?
        .into_iter()
        .map(|(id, w)| (id.0, w))
        .collect();
    if waits.is_empty() {
        return Ok(Vec::new());
    }
    let query = QueueQuery {
        states,
        cool_off_days: 0,
        limit: None,
    };
    let listed = wired.store.queue(&query, Utc::now()).await?;
    Ok(listed
        .into_iter()
        .filter_map(|r| {
            let wait = waits.get(&r.id().0)?.clone();
            wait.applies_to(&r).then_some((r, wait))
        })
        .collect())
}

/// The `status` text of one retirement (no original username, email or name).
pub(crate) fn render_status(
    r: &Retirement,
    wait: Option<&retirement_core::Wait>,
    deadline: &Deadline,
    actions: &[retirement_store::OperatorAction],
) -> String {
    let mut out = String::new();
    let p = r.parts();
    let _ = writeln!(out, "retirement:       {}", r.id());
    let _ = writeln!(out, "retired username: {}", r.retired_username());
    let _ = writeln!(out, "retired email:    {}", p.retired_email);
    if let Some(user) = p.lms_user_id {
        let _ = writeln!(out, "LMS user id:      {user}");
    }
    let _ = writeln!(out, "state:            {}", r.current_state());
    let _ = writeln!(out, "last state:       {}", r.last_state());
    let _ = writeln!(
        out,
        "requested:        {}",
        r.created().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(
        out,
        "modified:         {}",
        r.modified().format("%Y-%m-%d %H:%M:%S UTC")
    );
    if !is_finished(r) {
        let extended = actions
            .iter()
            .filter(|a| a.kind == retirement_store::ActionKind::Extend)
            .count();
        let _ = writeln!(
            out,
            "due:              {} ({}{})",
            deadline.due.format("%Y-%m-%d %H:%M UTC"),
            deadline.describe(),
            match extended {
                0 => String::new(),
                1 => ", extended once".to_owned(),
                n => format!(", extended {n} times"),
            }
        );
    }
    if let Some(wait) = wait {
        let _ = writeln!(out, "waiting:          {wait}");
    }
    if !actions.is_empty() {
        let _ = writeln!(out, "operator actions:");
        for a in actions {
            let _ = writeln!(
                out,
                "  {}  {}  [operator:{}]  {}",
                a.at.format("%Y-%m-%d %H:%M:%S"),
                a.kind,
                a.operator,
                a.reason
            );
        }
    }
    let _ = writeln!(out, "log:");
    for entry in r.log() {
        let from = entry.from.as_deref().unwrap_or("(new)");
        let _ = writeln!(
            out,
            "  {}  {} -> {}  [{}]",
            entry.at.format("%Y-%m-%d %H:%M:%S"),
            from,
            entry.to,
            entry.actor
        );
        for line in entry.text.lines() {
            let _ = writeln!(out, "      {line}");
        }
    }
    out
}

pub(crate) async fn status(config: &Config, args: StatusArgs) -> Result<u8, CliError> {
    let wired = wiring::wire(config).await?;
    let r = find(
        &wired,
        args.username.as_deref(),
        args.email.as_deref(),
        args.user_id,
    )
    .await?;
    let wait = wired
        .store
        .wait_of(r.id())
        .await?
        .filter(|w| w.applies_to(&r));
    let actions = match &wired.journal {
        Some(journal) => journal.actions_of(r.id()).await?,
        None => Vec::new(),
    };
    let extensions: BTreeMap<_, _> = [(
        r.id(),
        actions
            .iter()
            .filter(|a| a.kind == retirement_store::ActionKind::Extend)
            .count() as u32,
    )]
    .into();
    let deadline = deadline_of(config, &r, &extensions);
    if args.json {
        #[derive(Serialize)]
        struct Json<'a> {
            retirement_id: i64,
            retired_username: &'a str,
            retired_email: &'a str,
            lms_user_id: Option<i64>,
            state: &'a str,
            last_state: &'a str,
            requested: String,
            modified: String,
            due: String,
            days_left: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            waiting_on: Option<&'a retirement_core::Wait>,
            log: &'a [retirement_core::LogEntry],
            operator_actions: Vec<serde_json::Value>,
        }
        let p = r.parts();
        let json = Json {
            retirement_id: r.id().0,
            retired_username: r.retired_username(),
            retired_email: &p.retired_email,
            lms_user_id: p.lms_user_id,
            state: r.current_state(),
            last_state: r.last_state(),
            requested: r.created().to_rfc3339(),
            modified: r.modified().to_rfc3339(),
            due: deadline.due.to_rfc3339(),
            days_left: deadline.days_left,
            waiting_on: wait.as_ref(),
            log: r.log(),
            operator_actions: actions
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "at": a.at.to_rfc3339(),
                        "operator": a.operator,
                        "action": a.kind.as_str(),
                        "reason": a.reason,
                    })
                })
                .collect(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        print!("{}", render_status(&r, wait.as_ref(), &deadline, &actions));
    }
    Ok(exit::OK)
}

/// One learner by original username, original email or LMS user id.
pub(crate) async fn find(
    wired: &wiring::Wired,
    username: Option<&str>,
    email: Option<&str>,
    user_id: Option<i64>,
) -> Result<Retirement, CliError> {
    let found = match (username, email, user_id) {
        (Some(username), _, _) => wired.store.find_by_username(username).await,
        (None, Some(email), _) => wired.store.find_by_email(email).await,
        (None, None, Some(id)) => wired.store.find_by_user_id(id).await,
        (None, None, None) => {
            return Err(CliError::Usage(
                "name the learner: USERNAME, --email or --user-id".into(),
            ));
        }
    };
    found.map_err(|e| match e {
        // Never echo what was looked up: it is the learner's original username or email.
        StoreError::NotFound { .. } if username.is_some() || email.is_some() => {
            CliError::Refused("No retirement matches that learner.".into())
        }
        e => e.into(),
    })
}

/// `retire done`: marks a person's manual stage finished, audited like a reset.
pub(crate) async fn done(config: &Config, args: DoneArgs) -> Result<u8, CliError> {
    let why = Override {
        operator: operator(args.operator)?,
        reason: args.reason,
    };
    let wired = wiring::wire(config).await?;
    let pipeline = wiring::pipeline(config, &wired).await?;
    let Some(stage) = pipeline
        .stages()
        .iter()
        .find(|s| s.working_state == args.stage)
    else {
        return Err(CliError::Usage(format!(
            "{} is not a working state of the pipeline",
            args.stage
        )));
    };
    if stage.kind != retirement_core::StageKind::Manual {
        return Err(CliError::Refused(format!(
            "{} ({} {}) is not a manual stage: its service finishes it; use `retire reset` to \
             move a learner by hand",
            stage.working_state, stage.service, stage.operation
        )));
    }
    let before = args.who.find(&wired).await?;
    if before.current_state() != stage.working_state {
        return Err(CliError::Refused(format!(
            "{} is in {}, not in {}: nothing to mark",
            describe(&before),
            before.current_state(),
            stage.working_state
        )));
    }
    let after = wired
        .store
        .force(before.id(), &stage.complete_state, &why, Utc::now())
        .await?;
    println!(
        "{}: {} done by {}, now {}; the next `retire run` goes on from there",
        describe(&after),
        stage.service,
        why.operator,
        after.current_state()
    );
    Ok(exit::OK)
}

/// `retire extend`: one more statutory period for one learner, recorded in the journal.
pub(crate) async fn extend(config: &Config, args: ExtendArgs) -> Result<u8, CliError> {
    let why = Override {
        operator: operator(args.operator)?,
        reason: args.reason,
    };
    let wired = wiring::wire(config).await?;
    wired.journal("extending a deadline")?;
    let pipeline = wiring::pipeline(config, &wired).await?;
    let learner = args.who.find(&wired).await?;
    let console = wiring::console(config, &wired, pipeline);
    let deadline = console
        .extend(learner.id(), &why)
        .await
        .map_err(|e| match e {
            retirement_http::HttpError::Refused(m) => CliError::Refused(m),
            other => other.into(),
        })?;
    println!(
        "{}: deadline extended by {}, now due {} ({}); recorded as operator {}",
        describe(&learner),
        why.operator,
        deadline.due.format("%Y-%m-%d %H:%M UTC"),
        deadline.describe(),
        why.operator
    );
    Ok(exit::OK)
}

pub(crate) async fn reset(config: &Config, args: ResetArgs) -> Result<u8, CliError> {
    let why = Override {
        operator: operator(args.operator)?,
        reason: args.reason,
    };
    let wired = wiring::wire(config).await?;
    let before = wired.store.find_by_username(&args.username).await?;
    let after = wired
        .store
        .force(before.id(), &args.to, &why, Utc::now())
        .await?;
    println!(
        "{}: {} -> {} (recorded in its log as operator {})",
        describe(&after),
        before.current_state(),
        after.current_state(),
        why.operator
    );
    if config.retirement_pipeline.is_some()
        && let Ok(pipeline) = config.pipeline(None)
    {
        match pipeline.position(after.current_state()) {
            retirement_core::Position::Pending | retirement_core::Position::Complete(_) => {
                let next = pipeline
                    .first_stage_after(after.current_state())
                    .and_then(|i| pipeline.stages().get(i))
                    .map(|s| s.working_state.as_str())
                    .unwrap_or("COMPLETE");
                println!("the next `retire run` resumes it at {next}");
            }
            retirement_core::Position::Working(_) => println!(
                "the next `retire run` runs {} again (no worker holds it now)",
                after.current_state()
            ),
            retirement_core::Position::End => {
                println!("the learner is in an end state; `retire run` leaves it alone")
            }
            retirement_core::Position::Unknown => {
                println!("warning: this state is not in the config's pipeline")
            }
        }
    }
    Ok(exit::OK)
}

pub(crate) async fn rerun(config: &Config, args: RerunArgs) -> Result<u8, CliError> {
    let why = Override {
        operator: operator(args.operator)?,
        reason: args.reason,
    };
    let window = StateWindow {
        state: args.state,
        start: args.start_date,
        end: args.end_date.unwrap_or_else(today),
    };
    let target = match args.to {
        Some(to) => MoveTarget::To(to),
        None => MoveTarget::Rewind,
    };
    let wired = wiring::wire(config).await?;
    if args.dry_run {
        let found = wired.store.by_state_and_date(&window, Utc::now()).await?;
        println!(
            "{} learner(s) in {} requested {}..{} would move (dry run: nothing changed)",
            found.len(),
            window.state,
            window.start,
            window.end
        );
        return Ok(exit::OK);
    }
    let moved = wired
        .store
        .bulk_move(&window, &target, &why, Utc::now())
        .await?;
    for (id, entry) in &moved {
        println!("retirement {id}: -> {}", entry.to);
    }
    println!("{} learner(s) moved", moved.len());
    Ok(exit::OK)
}

pub(crate) async fn cancel(config: &Config, args: CancelArgs) -> Result<u8, CliError> {
    let wired = wiring::wire(config).await?;
    let r = match wired.store.find_by_email(&args.email).await {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => {
            return Err(CliError::Refused(
                "No retirement request with that email address exists.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    match wired.store.cancel(r.id()).await {
        Ok(()) => {
            if let Some(journal) = &wired.journal {
                let action = retirement_store::OperatorAction {
                    retirement_id: r.id(),
                    at: Utc::now(),
                    // tubular's cancel names no operator: $USER, or "unknown".
                    operator: operator(args.operator).unwrap_or_else(|_| "unknown".to_owned()),
                    kind: retirement_store::ActionKind::Cancel,
                    reason: args
                        .reason
                        .unwrap_or_else(|| "cancelled at the learner's request".to_owned()),
                };
                if let Err(e) = journal.record_action(&action).await {
                    tracing::warn!(error = %e, "the cancellation could not be journalled");
                }
            }
            println!(
                "Successfully cancelled retirement request {}. The learner must reset their \
                 password before they can log in again.",
                r.id()
            );
            Ok(exit::OK)
        }
        Err(StoreError::Core(e @ CoreError::NotPending { .. })) => {
            Err(CliError::Refused(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

struct RequestRow {
    line: usize,
    original: OriginalIdentity,
    lms_user_id: Option<i64>,
}

/// A request CSV: no header handling (a header row is recognised by its first cell), any
/// number of fields, cells trimmed.
fn csv_reader(path: &PathBuf) -> Result<csv::Reader<std::fs::File>, CliError> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}

fn read_csv(path: &PathBuf) -> Result<Vec<RequestRow>, CliError> {
    let mut reader = csv_reader(path)?;
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 1;
        let bad = |what: &str| CliError::Usage(format!("{}: line {line}: {what}", path.display()));
        let record = record.map_err(|_| bad("not valid CSV"))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = |i: usize| record.get(i).unwrap_or("").to_owned();
        if line == 1 && field(0).eq_ignore_ascii_case("username") {
            continue;
        }
        if !(2..=4).contains(&record.len()) {
            return Err(bad("expected username,email[,name[,lms_user_id]]"));
        }
        let (mut username, email) = (field(0), field(1));
        // No username: the email stands for it (all an operator may have).
        if username.is_empty() && email.contains('@') {
            username = email.clone();
        }
        if username.is_empty() {
            return Err(bad("the username is empty"));
        }
        if !email.contains('@') {
            return Err(bad("the email address has no @"));
        }
        let lms_user_id = match record.get(3).filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse().map_err(|_| bad("lms_user_id is not a number"))?),
            None => None,
        };
        rows.push(RequestRow {
            line,
            original: OriginalIdentity {
                username,
                email,
                name: field(2),
            },
            lms_user_id,
        });
    }
    Ok(rows)
}

pub(crate) async fn request(config: &Config, args: RequestArgs) -> Result<u8, CliError> {
    if config.store == LMS_STORE {
        return request_lms(config, args).await;
    }
    let ids = config
        .retired_ids()
        .map_err(|m| config.error("retired_id", m))?;
    let rows = match (&args.csv, args.username, args.email) {
        (Some(path), _, _) => read_csv(path)?,
        (None, Some(_), None) => {
            return Err(CliError::Usage(
                "the standalone store needs --email with --username".into(),
            ));
        }
        // Only an email: it stands for the username as well.
        (None, None, Some(email)) => vec![RequestRow {
            line: 0,
            original: OriginalIdentity {
                username: email.clone(),
                email,
                name: args.name.unwrap_or_default(),
            },
            lms_user_id: args.lms_user_id,
        }],
        (None, Some(username), Some(email)) => vec![RequestRow {
            line: 0,
            original: OriginalIdentity {
                username,
                email,
                name: args.name.unwrap_or_default(),
            },
            lms_user_id: args.lms_user_id,
        }],
        _ => {
            return Err(CliError::Usage(
                "give --username and --email, or --csv".into(),
            ));
        }
    };
    let wired = wiring::wire(config).await?;
    let (mut queued, mut already) = (0u64, 0u64);
    for row in rows {
        let request = NewRetirement::new(row.original, row.lms_user_id, &ids);
        match wired.store.enqueue(request, Utc::now()).await {
            Ok(r) => {
                queued += 1;
                tracing::debug!(retirement_id = r.id().0, "queued");
            }
            Err(StoreError::AlreadyHasStatus { .. } | StoreError::AlreadyHasRequest) => {
                already += 1;
            }
            Err(e) => {
                let at = if row.line > 0 {
                    format!(" at line {}", row.line)
                } else {
                    String::new()
                };
                eprintln!("retire: stopped{at}; {queued} queued before it");
                return Err(e.into());
            }
        }
    }
    println!("queued {queued}, already queued {already}");
    Ok(exit::OK)
}

pub(crate) async fn states(config: &Config, command: StatesCommand) -> Result<u8, CliError> {
    let StatesCommand::Sync { dry_run } = command;
    let desired = config.desired_states()?;
    let wired = wiring::wire(config).await?;
    let plan = wired.store.sync_states(&desired, dry_run).await?;
    let list = |names: &[String]| {
        if names.is_empty() {
            "(none)".to_owned()
        } else {
            names.join(", ")
        }
    };
    println!("added:   {}", list(&plan.added));
    println!("removed: {}", list(&plan.removed));
    println!("kept:    {}", list(&plan.kept));
    if dry_run {
        println!("dry run: nothing changed");
    }
    Ok(exit::OK)
}

pub(crate) async fn db(config: &Config, command: DbCommand) -> Result<u8, CliError> {
    let DbCommand::Migrate = command;
    // With the LMS as the store, the only schema of ours is the shared lease table's.
    let url = match (config.store.as_str(), &config.lease_store) {
        (LMS_STORE, Some(leases)) => leases,
        (LMS_STORE, None) => {
            return Err(CliError::Usage(
                "the LMS store has no schema to migrate (and no lease_store is configured)".into(),
            ));
        }
        (store, _) => store,
    };
    let store = DieselStore::open(url, &StoreOptions::default()).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("{}: up to date", store.redacted_url());
    } else {
        println!("{}: applied {}", store.redacted_url(), applied.join(", "));
    }
    Ok(exit::OK)
}

/// `retire request` with `store: lms`: the LMS's `bulk_retire_users`, by username (a CSV's
/// first column). The LMS answers with usernames: only counts and line numbers are printed.
async fn request_lms(config: &Config, args: RequestArgs) -> Result<u8, CliError> {
    let given: Vec<(usize, String)> = match (&args.csv, &args.username, &args.email) {
        (Some(path), _, _) => read_usernames(path)?,
        (None, Some(username), _) => vec![(0, username.clone())],
        (None, None, Some(email)) => vec![(0, email.clone())],
        _ => return Err(CliError::Usage("give --username, --email, or --csv".into())),
    };
    let wired = wiring::wire(config).await?;
    let Some(lms) = &wired.lms else {
        return Err(config.error("store", "`lms` needs base_urls.lms"));
    };
    let at = |line: usize| {
        if line > 0 {
            format!("line {line}")
        } else {
            "the learner".into()
        }
    };
    // An email (all an operator may have) is looked up: the LMS queues by username.
    let mut rows: Vec<(usize, String)> = Vec::with_capacity(given.len());
    let mut unknown = 0usize;
    for (line, who) in given {
        if !who.contains('@') {
            rows.push((line, who));
            continue;
        }
        match lms.username_for_email(&who).await? {
            Some(username) => rows.push((line, username)),
            None => {
                unknown += 1;
                eprintln!(
                    "retire: {}: no active LMS account has that email (unknown, or already being retired)",
                    at(line)
                );
            }
        }
    }
    let usernames: Vec<String> = rows.iter().map(|(_, u)| u.clone()).collect();
    let (queued, failed) = lms.bulk_retire(&usernames).await?;
    for (line, username) in &rows {
        if failed.contains(username) {
            eprintln!(
                "retire: {}: the LMS did not queue it (no such user, or already queued)",
                at(*line)
            );
        }
    }
    let not_queued = failed.len() + unknown;
    println!("queued {}, not queued {not_queued}", queued.len());
    Ok(if not_queued == 0 {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// The usernames of a request CSV (first column; a header row is skipped), with line numbers.
fn read_usernames(path: &PathBuf) -> Result<Vec<(usize, String)>, CliError> {
    let mut reader = csv_reader(path)?;
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 1;
        let record = record.map_err(|_| {
            CliError::Usage(format!("{}: line {line}: not valid CSV", path.display()))
        })?;
        let username = record.get(0).unwrap_or("").to_owned();
        if username.is_empty() || (line == 1 && username.eq_ignore_ascii_case("username")) {
            continue;
        }
        rows.push((line, username));
    }
    Ok(rows)
}

/// A learner's statutory deadline under the config's regime with its recorded extensions,
/// as of now.
pub(crate) fn deadline_of(
    config: &Config,
    r: &Retirement,
    extensions: &BTreeMap<retirement_core::RetirementId, u32>,
) -> Deadline {
    Deadline::at(
        config.deadline_regime,
        r.created(),
        extensions.get(&r.id()).copied().unwrap_or(0),
        Utc::now(),
    )
}

/// Whether the learner's request is answered (COMPLETE) or withdrawn (ABORTED).
fn is_finished(r: &Retirement) -> bool {
    matches!(
        r.current_state(),
        retirement_core::COMPLETE | retirement_core::ABORTED
    )
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
    format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// retirement_id, retired_username, state, received, due, days_left.
    Csv,
}

/// `retire report`: every open request (not COMPLETE or ABORTED, ERRORED included) with its
/// statutory deadline, oldest due first, with no original username, email or name.
pub(crate) async fn report(config: &Config, args: ReportArgs) -> Result<u8, CliError> {
    let ReportFormat::Csv = args.format;
    let wired = wiring::wire(config).await?;
    let pipeline = wiring::pipeline(config, &wired).await?;
    let states: Vec<String> = pipeline
        .all_states()
        .into_iter()
        .filter(|s| ![retirement_core::COMPLETE, retirement_core::ABORTED].contains(s))
        .map(str::to_owned)
        .collect();
    let query = QueueQuery {
        states,
        cool_off_days: 0,
        limit: None,
    };
    let extensions = wired.extensions().await?;
    let mut open: Vec<(Retirement, Deadline)> = wired
        .store
        .queue(&query, Utc::now())
        .await?
        .into_iter()
        .map(|r| {
            let deadline = deadline_of(config, &r, &extensions);
            (r, deadline)
        })
        .collect();
    open.sort_by_key(|(r, d)| (d.due, r.id()));
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    let write = |out: &mut csv::Writer<_>, row: &[&str]| {
        out.write_record(row)
            .map_err(|e| CliError::Usage(format!("writing the report: {e}")))
    };
    write(
        &mut out,
        &[
            "retirement_id",
            "retired_username",
            "state",
            "received",
            "due",
            "days_left",
            "regime",
        ],
    )?;
    let regime = config.deadline_regime.to_string();
    for (r, d) in &open {
        write(
            &mut out,
            &[
                &r.id().to_string(),
                r.retired_username(),
                r.current_state(),
                &d.received.to_rfc3339(),
                &d.due.to_rfc3339(),
                &d.days_left.to_string(),
                &regime,
            ],
        )?;
    }
    out.flush()
        .map_err(|e| CliError::Usage(format!("writing the report: {e}")))?;
    Ok(exit::OK)
}
