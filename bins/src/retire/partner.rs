//! `retire partner-queue drain`: empties the LMS's partner-reporting queue without a report,
//! for sites with no partners (a pipeline with `LMS retirement_partner_queue` otherwise keeps
//! each learner's originals there for ever).

use clap::Subcommand;
use retirement_http::partner;

use crate::config::Config;
use crate::error::{CliError, exit};
use crate::wiring;

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
