//! A TCP proxy of our own between the driver and the database that, once cutting starts,
//! closes every open connection at seeded random moments (both directions at once, mid-query
//! or mid-transaction, as a failing network or a database restart would).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use retirement_core::SplitMix64;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub(crate) struct CuttingProxy {
    address: String,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    connections: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
    seed: u64,
    acceptor: AbortHandle,
    cutter: Mutex<Option<AbortHandle>>,
}

impl CuttingProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards each connection to `upstream`.
    pub(crate) async fn start(upstream: &str, seed: u64) -> std::io::Result<CuttingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_owned();
        let acceptor = tokio::spawn({
            let links = links.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    connections.fetch_add(1, Ordering::Relaxed);
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
                    links.retain(|l| !l.is_finished());
                    links.push(link.abort_handle());
                }
            }
        })
        .abort_handle();
        Ok(CuttingProxy {
            address,
            links,
            connections,
            cuts: Arc::new(AtomicUsize::new(0)),
            seed,
            acceptor,
            cutter: Mutex::new(None),
        })
    }

    /// `127.0.0.1:<port>`.
    pub(crate) fn address(&self) -> String {
        self.address.clone()
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// From now on, every `min`..`max` (seeded), drops every open connection.
    pub(crate) fn start_cutting(&self, min: Duration, max: Duration) {
        let (links, cuts) = (self.links.clone(), self.cuts.clone());
        let mut random = SplitMix64::new(self.seed);
        let span = (max - min).as_millis().max(1) as u64;
        let cutter = tokio::spawn(async move {
            loop {
                let wait = min + Duration::from_millis(random.next_u64() % span);
                tokio::time::sleep(wait).await;
                let open: Vec<AbortHandle> = links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain(..)
                    .collect();
                if !open.is_empty() {
                    cuts.fetch_add(1, Ordering::Relaxed);
                }
                for link in open {
                    link.abort();
                }
            }
        });
        *self.cutter.lock().unwrap_or_else(|p| p.into_inner()) = Some(cutter.abort_handle());
    }

    /// Stops cutting; the number of cuts made.
    pub(crate) fn stop_cutting(&self) -> usize {
        if let Some(cutter) = self.cutter.lock().unwrap_or_else(|p| p.into_inner()).take() {
            cutter.abort();
        }
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop_cutting();
        self.acceptor.abort();
        for link in self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            link.abort();
        }
    }
}
