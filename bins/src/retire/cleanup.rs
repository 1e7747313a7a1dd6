//! `retire cleanup`: archive COMPLETE learners, then redact and delete their statuses.
//!
//! Fixes upstream's archive defects (D22): the file name is year-month-day; `--dry-run` is a
//! plain flag; the archive holds no original username, email or name unless `--include-pii`
//! is given; and each batch is written and flushed to disk before that batch is deleted, so a
//! failure never deletes a learner whose archive line is not on disk.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use chrono::{NaiveDate, TimeDelta, Utc};
use clap::Args;
use flate2::Compression;
use flate2::write::GzEncoder;
use retirement_core::{COMPLETE, Retirement};
use retirement_http::archive::{ArchiveTarget, Archiver, archive_line};
use retirement_store::StateWindow;

use crate::config::Config;
use crate::error::{CliError, exit};
use crate::wiring;

#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    /// Only learners requested more than this many days ago (tubular: 37 = 7 days of cool-off
    /// plus 30 days after).
    #[arg(long, visible_alias = "cool_off_days", default_value_t = 37)]
    cool_off_days: i64,
    /// The first request day (UTC, YYYY-MM-DD).
    #[arg(long, visible_alias = "start_date", default_value = "2018-01-01")]
    start_date: NaiveDate,
    /// The last request day (UTC, YYYY-MM-DD; default today minus --cool-off-days; must not
    /// fall inside the cool-off).
    #[arg(long, visible_alias = "end_date")]
    end_date: Option<NaiveDate>,
    /// Learners per batch: each batch is archived, flushed to disk, then deleted.
    #[arg(long, visible_alias = "batch_size", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Where the archive goes: object storage — s3://BUCKET/PREFIX, gs://BUCKET/PREFIX,
    /// az://CONTAINER/PREFIX, file:///DIR — as one object per batch under
    /// PREFIX/raw/YYYY/MM/, each read back before its learners are deleted; or a local FILE
    /// (gzip JSON lines; default retirement_archive_<UTC time>.json.gz). Credentials come from
    /// each provider's environment; AWS_ENDPOINT_URL names an S3-compatible server.
    #[arg(long, value_name = "URL|FILE")]
    archive: Option<String>,
    /// Allow AWS_ENDPOINT_URL to be plain HTTP on a host that is not loopback.
    #[arg(long)]
    allow_http: bool,
    /// Also write original_username, original_email and original_name to the archive.
    #[arg(long)]
    include_pii: bool,
    /// Only say how many learners would be archived and deleted.
    #[arg(long, visible_alias = "dry_run")]
    dry_run: bool,
}

pub(crate) async fn cleanup(config: &Config, args: CleanupArgs) -> Result<u8, CliError> {
    if args.cool_off_days < 0 {
        return Err(CliError::Usage(
            "--cool-off-days must not be negative".into(),
        ));
    }
    let latest = (Utc::now() - TimeDelta::days(args.cool_off_days)).date_naive();
    let end = args.end_date.unwrap_or(latest);
    if end > latest {
        return Err(CliError::Usage(
            "End date cannot occur within the cool_off_days period".into(),
        ));
    }
    if args.start_date >= end {
        return Err(CliError::Usage(
            "--start-date must be before --end-date".into(),
        ));
    }
    let wired = wiring::wire(config).await?;
    let window = StateWindow {
        state: COMPLETE.to_owned(),
        start: args.start_date,
        end,
    };
    let learners = wired.store.by_state_and_date(&window, Utc::now()).await?;
    let batches: Vec<&[Retirement]> = learners.chunks(args.batch_size as usize).collect();
    if args.dry_run {
        println!(
            "{} COMPLETE learner(s) requested {}..{} would be archived and deleted in {} batch(es) (dry run: nothing changed)",
            learners.len(),
            window.start,
            window.end,
            batches.len()
        );
        return Ok(exit::OK);
    }
    if learners.is_empty() {
        println!(
            "no COMPLETE learners requested {}..{}",
            window.start, window.end
        );
        return Ok(exit::OK);
    }
    if let Some(url) = args.archive.as_deref().filter(|a| ArchiveTarget::is_url(a)) {
        let target = ArchiveTarget::open(url, args.allow_http)?;
        let archiver = Archiver {
            store: wired.store.as_ref(),
            journal: wired.journal.as_deref(),
            target: &target,
            include_pii: args.include_pii,
        };
        let summary = archiver
            .archive_and_delete(&learners, args.batch_size as usize, Utc::now())
            .await?;
        for object in &summary.objects {
            println!("archived to {object}");
        }
        println!(
            "archived and deleted {} learner(s) in {} object(s){}",
            summary.deleted,
            summary.objects.len(),
            if args.include_pii {
                " (with original username, email and name)"
            } else {
                ""
            }
        );
        return Ok(exit::OK);
    }
    let path = args.archive.clone().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(format!(
            "retirement_archive_{}.json.gz",
            Utc::now().format("%Y_%m_%d_%H_%M_%S")
        ))
    });
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(CliError::io(format!(
            "creating the archive {}",
            path.display()
        )))?;
    let mut gz = GzEncoder::new(file, Compression::default());
    let mut deleted = 0usize;
    for batch in &batches {
        for r in batch.iter() {
            writeln!(gz, "{}", archive_line(r, args.include_pii))
                .map_err(CliError::io(format!("writing {}", path.display())))?;
        }
        // Make this batch's lines readable from the file before its learners are deleted.
        gz.flush()
            .and_then(|()| gz.get_ref().sync_data())
            .map_err(CliError::io(format!("flushing {}", path.display())))?;
        let usernames: Vec<String> = batch
            .iter()
            .map(|r| r.original().username.clone())
            .collect();
        match wired.store.cleanup(&usernames).await {
            Ok(removed) => deleted += removed.len(),
            Err(e) => {
                let _ = gz.finish();
                eprintln!(
                    "retire: archived and deleted {deleted} learner(s) before a batch failed; \
                     the failed batch is in the archive but was not deleted"
                );
                return Err(e.into());
            }
        }
    }
    gz.finish()
        .and_then(|f| f.sync_all())
        .map_err(CliError::io(format!("closing {}", path.display())))?;
    println!(
        "archived and deleted {deleted} learner(s) in {} batch(es) to {}{}",
        batches.len(),
        path.display(),
        if args.include_pii {
            " (with original username, email and name)"
        } else {
            ""
        }
    );
    Ok(exit::OK)
}
