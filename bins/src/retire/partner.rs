//! The LMS's partner-reporting queue:
//! - `retire partner-report`: one CSV per partner, published and announced, then the
//!   delivered rows cleaned up (`retirement_http::partner::PartnerReporter`);
//! - `retire partner-report prune`: warn, then delete reports past their retention;
//! - `retire partner-queue drain`: empty the queue without a report, for sites with no
//!   partners (a pipeline with `LMS retirement_partner_queue` otherwise keeps each learner's
//!   originals there for ever).

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use retirement_http::alerts::{AlertSink, Smtp, Webhook};
use retirement_http::archive::ArchiveTarget;
use retirement_http::partner::{self, Contacts, PartnerReporter, PartnerSettings, Spool};

use crate::config::Config;
use crate::error::{CliError, exit};
use crate::wiring;

/// The spool's default path (in the working directory, as the default SQLite store).
pub(crate) const DEFAULT_SPOOL: &str = "partner-report-spool.json";

#[derive(Debug, Subcommand)]
pub(crate) enum PartnerQueueCommand {
    /// Fetch every queued row and remove it, reporting to nobody.
    Drain,
}

pub(crate) async fn partner_queue(
    config: &Config,
    command: PartnerQueueCommand,
) -> Result<u8, CliError> {
    let PartnerQueueCommand::Drain = command;
    if config.partner_report_configured() {
        return Err(CliError::Refused(
            "org_partner_mapping is configured: those partners are owed a report; drain \
             only a queue nobody reports from"
                .into(),
        ));
    }
    let clients = wiring::clients(config, &retirement_http::runtime::default_worker_id())?
        .ok_or_else(|| config.error("base_urls.lms", "is required: the queue is in the LMS"))?;
    let rows = partner::fetch(&clients).await?;
    let usernames: Vec<String> = rows.iter().map(|r| r.original_username.clone()).collect();
    partner::cleanup(&clients, &usernames).await?;
    println!(
        "drained {} row(s) from the LMS's partner-reporting queue (no report made)",
        usernames.len()
    );
    Ok(exit::OK)
}

/// Where reports go.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// A folder, or s3://bucket/prefix, gs://…, az://…, file://… (default
    /// `partner_report.output`).
    #[arg(long, value_name = "DIR|URL")]
    output: Option<String>,
    /// Allow `AWS_ENDPOINT_URL` to be plain HTTP on a host that is not loopback.
    #[arg(long)]
    allow_http: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct PartnerReportArgs {
    #[command(subcommand)]
    command: Option<PartnerReportCommand>,
    #[command(flatten)]
    output: OutputArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PartnerReportCommand {
    /// Warn each report's recipients once, `--warn-days` before its deletion, then delete
    /// reports older than `--age-days` (by the day in their name).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Delete reports this many days old (default `partner_report.retention_days`, 60).
    #[arg(long, value_name = "DAYS")]
    age_days: Option<i64>,
    /// Warn recipients this many days before (default `partner_report.warn_days`, 7).
    #[arg(long, value_name = "DAYS")]
    warn_days: Option<i64>,
    #[command(flatten)]
    output: OutputArgs,
}

/// The report's settings from the config.
fn settings(config: &Config) -> Result<PartnerSettings, CliError> {
    let p = &config.partner_report;
    let mapping = p.mapping.clone().ok_or_else(|| {
        config.error(
            "org_partner_mapping",
            "is required: it maps each org to the partners owed its learners",
        )
    })?;
    let platform = p.platform.clone().ok_or_else(|| {
        config.error(
            "partner_report_platform_name",
            "is required: it names the reports",
        )
    })?;
    Ok(PartnerSettings {
        mapping,
        platform,
        exempt: p.keys.exempted_partners.iter().cloned().collect(),
        retention_days: p
            .keys
            .retention_days
            .unwrap_or(partner::DEFAULT_RETENTION_DAYS),
    })
}

/// Each partner's sinks: its addresses (less `denied_notification_domains`) through the
/// relay, and its webhook. A partner left with none has no point of contact.
fn contacts(config: &Config) -> Result<Contacts, CliError> {
    let p = &config.partner_report;
    let relay = p
        .keys
        .smtp
        .as_ref()
        .or_else(|| config.alerts.as_ref().and_then(|a| a.smtp.as_ref()));
    let denied: Vec<String> = p.denied_domains.iter().map(|d| d.to_lowercase()).collect();
    let mut contacts = Contacts::new();
    for (partner, contact) in &p.keys.contacts {
        let mut sinks: Vec<Box<dyn AlertSink>> = Vec::new();
        let to: Vec<String> = contact
            .email
            .iter()
            .filter(|a| {
                !denied
                    .iter()
                    .any(|d| a.to_lowercase().ends_with(d.as_str()))
            })
            .cloned()
            .collect();
        if let (false, Some(relay)) = (to.is_empty(), relay) {
            sinks.push(Box::new(Smtp {
                host: relay.host.clone(),
                port: relay.port.unwrap_or(587),
                security: relay.security,
                username: relay.username.clone(),
                password: relay.password.clone(),
                from: relay.from.clone(),
                to,
            }));
        }
        if let Some(url) = &contact.webhook_url {
            sinks.push(Box::new(Webhook::new(url.clone()).map_err(|e| {
                config.error(
                    &format!("partner_report.contacts.{partner}.webhook_url"),
                    e.to_string(),
                )
            })?));
        }
        contacts.insert(partner.clone(), sinks);
    }
    Ok(contacts)
}

fn output(config: &Config, args: &OutputArgs) -> Result<ArchiveTarget, CliError> {
    let location = args
        .output
        .clone()
        .or_else(|| config.partner_report.keys.output.clone())
        .ok_or_else(|| {
            CliError::Usage(
                "name where reports go: --output DIR|URL or partner_report.output".into(),
            )
        })?;
    Ok(ArchiveTarget::open_location(&location, args.allow_http)?)
}

fn spool(config: &Config) -> Spool {
    Spool::new(
        config
            .partner_report
            .keys
            .spool
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL)),
    )
}

pub(crate) async fn partner_report(
    config: &Config,
    args: PartnerReportArgs,
) -> Result<u8, CliError> {
    let settings = settings(config)?;
    let contacts = contacts(config)?;
    let spool = spool(config);
    if let Some(PartnerReportCommand::Prune(prune)) = args.command {
        let target = output(config, &prune.output)?;
        let reporter = PartnerReporter {
            settings: &settings,
            contacts: &contacts,
            output: &target,
            spool: &spool,
        };
        let keys = &config.partner_report.keys;
        let age = prune
            .age_days
            .or(keys.retention_days)
            .unwrap_or(partner::DEFAULT_RETENTION_DAYS);
        let warn = prune
            .warn_days
            .or(keys.warn_days)
            .unwrap_or(partner::DEFAULT_WARN_DAYS);
        if age < 1 || warn < 0 {
            return Err(CliError::Usage(
                "--age-days must be at least 1 and --warn-days not negative".into(),
            ));
        }
        let outcome = reporter.prune(age, warn, chrono::Utc::now()).await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&outcome).unwrap_or_default()
            );
        } else {
            for (location, on) in &outcome.warned {
                println!("warned   {location} (deleted on {on})");
            }
            for location in &outcome.deleted {
                println!("deleted  {location}");
            }
            for location in &outcome.no_contact {
                println!("unwarned {location} (its partner has no point of contact)");
            }
            for (location, why) in &outcome.failed {
                println!("FAILED   {location}: {why}");
            }
            println!(
                "pruned: {} warned, {} deleted, {} kept (reports older than {age} days are \
                 deleted; recipients are warned {warn} days before)",
                outcome.warned.len(),
                outcome.deleted.len(),
                outcome.kept
            );
        }
        return Ok(if outcome.failed.is_empty() {
            exit::OK
        } else {
            exit::FAILED
        });
    }
    let target = output(config, &args.output)?;
    let clients = wiring::clients(config, &retirement_http::runtime::default_worker_id())?
        .ok_or_else(|| config.error("base_urls.lms", "is required: the queue is in the LMS"))?;
    let reporter = PartnerReporter {
        settings: &settings,
        contacts: &contacts,
        output: &target,
        spool: &spool,
    };
    let outcome = reporter.run(&clients, chrono::Utc::now()).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
    } else {
        println!(
            "partner report: {} row(s) fetched from the LMS, {} carried over in the spool",
            outcome.fetched, outcome.carried
        );
        let width = outcome
            .delivered
            .iter()
            .map(|d| d.partner.len())
            .chain(outcome.exempt.iter().map(|(p, _)| p.len()))
            .chain(outcome.no_contact.iter().map(|(p, _)| p.len()))
            .max()
            .unwrap_or(0);
        for d in &outcome.delivered {
            println!(
                "  published   {:width$}  {:>4} learner(s)  {}",
                d.partner, d.learners, d.location
            );
        }
        for (partner, n) in &outcome.exempt {
            println!("  exempt      {partner:width$}  {n:>4} learner(s)  (no report)");
        }
        for (partner, n) in &outcome.no_contact {
            println!(
                "  NO CONTACT  {partner:width$}  {n:>4} learner(s)  (no report; held in the spool)"
            );
        }
        for (partner, why) in &outcome.failed {
            println!("  FAILED      {partner:width$}  {why}");
        }
        if let Some(why) = &outcome.cleanup_error {
            println!("  cleanup FAILED: {why}");
        }
        println!(
            "cleaned up {} row(s) in the LMS; {} row(s) wait in the spool {}",
            outcome.cleaned,
            outcome.waiting,
            spool.path().display()
        );
    }
    if !outcome.no_contact.is_empty() {
        let partners: BTreeSet<&str> = outcome.no_contact.iter().map(|(p, _)| p.as_str()).collect();
        eprintln!(
            "retire: compliance failure: partners owed a report have no point of contact: {} \
             (add them under partner_report.contacts; their learners wait in the spool)",
            partners.into_iter().collect::<Vec<_>>().join(", ")
        );
        return Ok(exit::COMPLIANCE);
    }
    Ok(
        if outcome.failed.is_empty() && outcome.cleanup_error.is_none() {
            exit::OK
        } else {
            exit::FAILED
        },
    )
}
