//! `retire serve` (the operator console) and `retire console hash-password`.

use std::io::BufRead as _;
use std::net::SocketAddr;

use clap::{Args, Subcommand};
use retirement_http::console::{self, Access, AccessConfig, LmsSignIn, Operator};

use crate::config::Config;
use crate::error::{CliError, exit};
use crate::wiring;

/// The console's default address: loopback only.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8650";

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where to listen (config `console.listen`, default 127.0.0.1:8650). Anything but
    /// loopback should sit behind a TLS-terminating proxy.
    #[arg(long)]
    listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConsoleCommand {
    /// Read a password on stdin and print its argon2id hash for console.operators.
    HashPassword,
}

/// The access rules for `config`, served at `public_url`.
pub(crate) fn access(config: &Config, public_url: &str) -> Result<Access, CliError> {
    let keys = &config.console;
    let lms = match &keys.lms_sign_in {
        Some(sign_in) => {
            let base = config.base_urls.get("lms").cloned();
            let lms_url = sign_in.lms_url.clone().or(base.clone()).ok_or_else(|| {
                config.error(
                    "console.lms_sign_in.lms_url",
                    "is required without base_urls.lms",
                )
            })?;
            Some(LmsSignIn {
                token_url_base: base.unwrap_or_else(|| lms_url.clone()),
                lms_url,
                client_id: sign_in.client_id.clone(),
                client_secret: sign_in.client_secret.clone(),
            })
        }
        None => None,
    };
    let loopback_http = public_url.starts_with("http://127.")
        || public_url.starts_with("http://localhost")
        || public_url.starts_with("http://[::1]");
    let access = Access::new(AccessConfig {
        operators: keys
            .operators
            .iter()
            .map(|o| Operator {
                name: o.name.clone(),
                password_hash: o.password_hash.clone(),
            })
            .collect(),
        lms,
        public_url: public_url.to_owned(),
        secure_cookies: keys.secure_cookies.unwrap_or(!loopback_http),
    })
    .map_err(|e| config.error("console.operators", e.to_string()))?;
    if access.config.operators.is_empty() && access.config.lms.is_none() {
        return Err(config.error(
            "console",
            "needs operators (with password hashes from `retire console hash-password`) or \
             lms_sign_in: nothing is served without a session",
        ));
    }
    Ok(access)
}

/// Binds `listen`, refusing a bad address with a usage error.
pub(crate) async fn bind(listen: &str) -> Result<tokio::net::TcpListener, CliError> {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CliError::Usage(format!("{listen:?} is not an address like 127.0.0.1:8650"))
    })?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(CliError::io(format!("listening on {listen}")))
}

pub(crate) async fn serve(config: &Config, args: ServeArgs) -> Result<u8, CliError> {
    let listen = args
        .listen
        .or_else(|| config.console.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listener = bind(&listen).await?;
    let local = listener
        .local_addr()
        .map_err(CliError::io("reading the listening address"))?;
    let public_url = config
        .console
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let access = access(config, &public_url)?;
    let wired = wiring::wire(config).await?;
    let pipeline = wiring::pipeline(config, &wired).await?;
    let console = wiring::console(config, &wired, pipeline);
    if wired.journal.is_none() {
        tracing::warn!(
            "no lease_store: extensions, reveals and run history are unavailable in the console"
        );
    }
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "the console listens beyond loopback: put it behind TLS");
    }
    println!("retire console on {public_url} (Ctrl-C stops it)");
    let router = console::router(console, access, config.console.metrics_token.clone());
    let stop = super::drive::stop_on_signals();
    console::serve(listener, router, async move {
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .map_err(CliError::io("serving the console"))?;
    Ok(exit::OK)
}

pub(crate) fn console_command(command: ConsoleCommand) -> Result<u8, CliError> {
    let ConsoleCommand::HashPassword = command;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(CliError::io("reading the password on stdin"))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 12 {
        return Err(CliError::Usage(
            "the password must be at least 12 characters".into(),
        ));
    }
    let hash = console::access::hash_password(password)?;
    println!("{hash}");
    Ok(exit::OK)
}
