//! Serving: the listener, the connection loop that can drop a response after its commit
//! (a lost answer), the in-flight count, and the [`Emulator`] handle tests start and stop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::Response;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{config::*, faults::*, record::*, responses::*, routes::*, store::*};

/// A running emulator. Dropping it or calling [`Emulator::shutdown`] stops it.
pub struct Emulator {
    pub(super) shared: Arc<Shared>,
    pub(super) addr: SocketAddr,
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Emulator {
    /// Binds `addr` (use `127.0.0.1:0` in tests) and serves in a spawned task.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, addr)?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_shared(Arc::clone(&shared), listener, async move {
            // A dropped sender means the Emulator was dropped: stop as well.
            let _ = stopped.await;
        }));
        Ok(Emulator {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, to use in place of `https://supersim.twilio.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.shared.store().stats.clone()
    }

    /// How many times a registration of this ICCID committed over HTTP: 0 or 1 for a correct
    /// client, since a re-POST of a registered SIM answers 83003 without committing again.
    pub fn commits(&self, iccid: &str) -> u32 {
        self.shared.store().commits.get(iccid).copied().unwrap_or(0)
    }

    /// The registered SIM, if any, with any scheduled change that is due applied.
    pub fn sim(&self, iccid: &str) -> Option<SimRecord> {
        let mut store = self.shared.store();
        let index = *store.by_iccid.get(iccid)?;
        store.sims[index].settle(Instant::now());
        Some(store.sims[index].clone())
    }

    /// Returns once `POST /v1/Sims/{Sid}` has been requested `count` times in all.
    pub async fn wait_for_updates(&self, count: u64) {
        let mut seen = self.shared.updates_seen.subscribe();
        let _ = seen.wait_for(|seen| *seen >= count).await;
    }

    /// Makes every scheduled status change take effect now, whatever `update_delay` says.
    pub fn finish_scheduled(&self) {
        let mut store = self.shared.store();
        for sim in &mut store.sims {
            if let Some((_, due)) = sim.scheduled.as_mut() {
                *due = Instant::now();
            }
            sim.settle(Instant::now());
        }
    }

    /// Sets a SIM's status directly (as if changed in the Console); for tests.
    pub fn set_status(&self, iccid: &str, status: &str, fleet: Option<&str>) {
        let mut store = self.shared.store();
        if let Some(&index) = store.by_iccid.get(iccid) {
            let sim = &mut store.sims[index];
            sim.status = status.to_string();
            sim.scheduled = None;
            sim.scheduled_fleet = None;
            sim.fleet_sid = fleet.map(fleet_sid_for);
        }
    }

    /// The Fleets made up for a rehearsal because a run named them, in order.
    pub fn made_up_fleets(&self) -> Vec<String> {
        self.shared.store().made_up_fleets.clone()
    }

    /// The next `POST /v1/Sims/{Sid}` requests for the SIM with this ICCID get these faults,
    /// one per request, in order.
    pub fn inject_update(&self, iccid: &str, faults: Vec<Fault>) {
        self.shared
            .store()
            .injected_updates
            .entry(iccid.to_string())
            .or_default()
            .extend(faults);
    }

    /// The next `GET /v1/Sims/{Sid}` requests for the SIM with this ICCID get these faults,
    /// one per request, in order.
    pub fn inject_fetch(&self, iccid: &str, faults: Vec<Fault>) {
        self.shared
            .store()
            .injected_fetches
            .entry(iccid.to_string())
            .or_default()
            .extend(faults);
    }

    /// The next `GET /v1/Fleets/{Sid}` requests for this SID or unique name (as asked) get
    /// these faults, one per request, in order.
    pub fn inject_fleet(&self, sid_or_name: &str, faults: Vec<Fault>) {
        self.shared
            .store()
            .injected_fleets
            .entry(sid_or_name.to_string())
            .or_default()
            .extend(faults);
    }

    /// Adds a second SIM with this ICCID (already on the account) and returns its SID: an
    /// account whose lookup by ICCID shows two SIMs, which Twilio says never happens. The
    /// ICCID's registration and updates still go to the first.
    pub fn duplicate_sim(&self, iccid: &str) -> Option<String> {
        let mut store = self.shared.store();
        let index = *store.by_iccid.get(iccid)?;
        let mut twin = store.sims[index].clone();
        twin.sid = format!("HS{}", "d".repeat(32));
        store.sims.push(twin.clone());
        Some(twin.sid)
    }

    /// Gives the SIM with this ICCID the SID `sid` as the account spells it (the same SID in
    /// capitals, say: Twilio's pattern allows `A-F`); requests must then name it so.
    pub fn respell_sid(&self, iccid: &str, sid: &str) {
        let mut store = self.shared.store();
        if let Some(&index) = store.by_iccid.get(iccid) {
            store.sims[index].sid = sid.to_string();
        }
    }

    /// Registers the ICCID on the account out of band (as if done earlier, in the Console)
    /// and returns its SID. Not counted as a commit.
    pub fn preregister(&self, iccid: &str) -> String {
        let mut store = self.shared.store();
        match store.by_iccid.get(iccid) {
            Some(&i) => store.sims[i].sid.clone(),
            None => self.shared.insert_sim(&mut store, iccid).sid,
        }
    }

    /// The next `POST /v1/Sims` requests for this ICCID get these faults, one per request,
    /// in order, before any random fault.
    pub fn inject(&self, iccid: &str, faults: Vec<Fault>) {
        self.shared
            .store()
            .injected
            .entry(iccid.to_string())
            .or_default()
            .extend(faults);
    }

    /// Forgets every fault injected and not yet met (on registrations, updates, fetches and
    /// Fleet lookups), so a later run meets none.
    pub fn clear_injected(&self) {
        let mut store = self.shared.store();
        store.injected.clear();
        store.injected_updates.clear();
        store.injected_fetches.clear();
        store.injected_fleets.clear();
    }

    /// Stops accepting connections and waits for requests in progress to finish.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Dropping `stop` signals the serving task; it finishes on its own.
        self.stop.take();
    }
}

/// Serves the emulator on `listener` until `shutdown` completes, then lets requests in
/// progress finish. Used by the `emulator` subcommand.
pub(crate) async fn serve(
    config: EmulatorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(config, listener.local_addr()?)?);
    serve_shared(shared, listener, shutdown).await
}

/// Hyper's connection loop rather than `axum::serve`, because only here can a handler's
/// answer become a service error, which makes hyper close the connection without writing
/// anything: the client sees a connection error, as with a real lost response.
pub(super) async fn serve_shared(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let other_app = tokio::spawn(super::other_app::run(Arc::clone(&shared)));
    let router = TowerToHyperService::new(router(shared));
    let service = hyper::service::service_fn(move |request| {
        let answer = hyper::service::Service::call(&router, request);
        async move {
            let response: Response = answer
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            if response.extensions().get::<LoseResponse>().is_some() {
                Err(ResponseLost)
            } else {
                Ok(response)
            }
        }
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Per-connection failures (reset before accept, too many open files) must
                // not stop the server; the pause avoids a busy loop while they last.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are lost responses and client disconnects: expected, not reported.
            let _ = connection.await;
        });
    }
    other_app.abort();
    graceful.shutdown().await;
    Ok(())
}
