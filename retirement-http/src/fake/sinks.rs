//! Where alerts land in tests: a Slack-compatible webhook and an SMTP relay, both on
//! 127.0.0.1, each recording what it received.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::error::HttpError;

fn fail(e: impl std::fmt::Display) -> HttpError {
    HttpError::Fake(e.to_string())
}

/// A webhook that records each JSON body it is posted.
pub struct WebhookSink {
    /// Its URL.
    pub url: String,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WebhookSink {
    /// Starts it on a free port.
    pub async fn start() -> Result<WebhookSink, HttpError> {
        let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let store = received.clone();
        let router = Router::new().route(
            "/hook",
            post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let store = store.clone();
                async move {
                    store.lock().unwrap_or_else(|p| p.into_inner()).push(body);
                    "ok"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(fail)?;
        let url = format!("http://{}/hook", listener.local_addr().map_err(fail)?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(WebhookSink {
            url,
            received,
            _stop: stop,
        })
    }

    /// The bodies received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One message an SMTP sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// `MAIL FROM`.
    pub from: String,
    /// Each `RCPT TO`.
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and body).
    pub data: String,
}

impl Mail {
    fn parts(&self) -> (&str, &str) {
        let data = self.data.as_str();
        data.split_once("\n\n").unwrap_or((data, ""))
    }

    /// A header's value, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = self.parts();
        let unfolded = headers.replace("\n ", " ").replace("\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The body as text: quoted-printable decoded (lettre's choice for long lines).
    pub fn text(&self) -> String {
        let (_, body) = self.parts();
        let quoted = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        if !quoted {
            return body.to_owned();
        }
        let joined = body.replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && let Some(hex) = joined.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A plain-text SMTP relay (no TLS, no auth) that accepts every message.
pub struct SmtpSink {
    /// Its port on 127.0.0.1.
    pub port: u16,
    received: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Starts it on a free port.
    pub async fn start() -> Result<SmtpSink, HttpError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(fail)?;
        let port = listener.local_addr().map_err(fail)?.port();
        let received: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(socket, store).await;
                });
            }
        });
        Ok(SmtpSink {
            port,
            received,
            task,
        })
    }

    /// The messages accepted so far.
    pub fn received(&self) -> Vec<Mail> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn session(
    socket: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 fake-smtp ESMTP\r\n").await?;
    let mut mail = Mail {
        from: String::new(),
        to: Vec::new(),
        data: String::new(),
    };
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-fake-smtp\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = line[10..].trim().to_owned();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(line[8..].trim().to_owned());
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            while let Some(line) = lines.next_line().await? {
                if line == "." {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                data.push('\n');
            }
            mail.data = data;
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(std::mem::replace(
                    &mut mail,
                    Mail {
                        from: String::new(),
                        to: Vec::new(),
                        data: String::new(),
                    },
                ));
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"250 OK\r\n"
        };
        write.write_all(reply).await?;
    }
    Ok(())
}
