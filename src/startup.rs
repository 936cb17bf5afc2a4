//! `Application`: wires store, keys and services, binds the listener and serves HTTP(S) until
//! told to stop, then drains open connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use chrono::TimeDelta;

use crate::api::{self, ApiSettings, AppState, Services};
use crate::clock::{Clock, SystemClock};
use crate::config::{ServeConfig, TlsFiles};
use crate::domain::{PolicyError, PolicySet};
use crate::metrics::Metrics;
use crate::random::{Csprng, SystemRandom};
use crate::service::Lifecycle;
use crate::service::keys::load_checkpoint_key;
use crate::service::keys::reencrypt::reencrypt_in_background;
use crate::service::unseal::{SealSwitch, Sealer, Unsealer};
use crate::service::{
    AccessService, AccessSettings, Alarms, Anchor, AuditReader, AuditTrail, Authenticator,
    DetokenizeService, GrantService, Guard, Health, Housekeeping, KeyError, KeyService,
    ReviewService, SessionService, TokenService, UsageReporter,
};
use crate::store::{self, SchemaStatus, StoreError};
use crate::tls::{self, TlsError};

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest open connections get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server did not start. Messages never include the master key or database password.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Plain HTTP was asked for on an address other than loopback.
    #[error(
        "refusing plain HTTP on non-loopback address {0}: give --tls-cert and --tls-key, listen on a loopback address, or pass --force-plain-http behind a TLS-terminating proxy"
    )]
    PlainHttpNotLoopback(SocketAddr),
    /// Only one of the certificate and key was given.
    #[error("--tls-cert and --tls-key go together")]
    TlsIncomplete,
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The policy file could not be read.
    #[error("cannot read the policy file {0}: {1}")]
    PolicyFile(String, String),
    /// The policy file is not valid.
    #[error("invalid policy file {0}: {1}")]
    Policy(String, PolicyError),
    /// The database is unreachable or failed.
    #[error("database: {0}")]
    Database(#[from] StoreError),
    /// Migrations are missing.
    #[error(
        "the database schema is behind this binary by {pending} migration(s): run `strongroom migrate` first"
    )]
    SchemaBehind {
        /// How many.
        pending: usize,
    },
    /// An applied migration was changed.
    #[error("migration {version} in the database differs from this binary's copy")]
    SchemaModified {
        /// Which.
        version: i64,
    },
    /// The audit trail did not take the start of the service.
    #[error("the audit trail cannot be written: {0}")]
    Audit(#[from] crate::service::AuditError),
    /// Keys could not be loaded (e.g. a different master key).
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    /// The listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A bound, ready-to-serve instance.
pub struct Application {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    state: AppState,
    housekeeping: Housekeeping,
    lifecycle: Lifecycle,
    purge_interval: Duration,
    header_read_timeout: Duration,
    /// The keys to re-encrypt with in the background, and the rate (rows a second).
    reencrypt: Option<(Arc<KeyService>, u32)>,
    /// Told by `POST /v1/sys/seal` to stop serving and drop the keys.
    seal: SealSwitch,
}

/// Why an instance stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was told to stop (a signal, or the caller's future).
    Shutdown,
    /// An admin sealed it: its keys are dropped; custodians must unseal it again.
    Sealed,
}

impl Application {
    /// Builds an instance with the system clock and CSPRNG.
    pub async fn build(config: ServeConfig) -> Result<Application, StartupError> {
        Application::build_with(config, Arc::new(SystemClock), Arc::new(SystemRandom::new())).await
    }

    /// Builds an instance with the given clock and CSPRNG (tests pass their own).
    pub async fn build_with(
        config: ServeConfig,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Csprng>,
    ) -> Result<Application, StartupError> {
        Application::build_on(config, None, clock, rng).await
    }

    /// Builds an instance on `listener` when given (one a sealed phase served on before),
    /// else on a listener bound to `config.listen`.
    pub async fn build_on(
        config: ServeConfig,
        listener: Option<TcpListener>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Csprng>,
    ) -> Result<Application, StartupError> {
        // Cheap refusals first, before touching the database.
        let tls = tls_acceptor(config.tls.as_ref(), config.force_plain_http, config.listen)?;
        let policy_text = match &config.policy_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                StartupError::PolicyFile(path.display().to_string(), e.to_string())
            })?),
            None => None,
        };
        let policies = Arc::new(match (&config.policy_file, &policy_text) {
            (Some(path), Some(text)) => PolicySet::from_toml(text)
                .map_err(|e| StartupError::Policy(path.display().to_string(), e))?,
            _ => PolicySet::empty(),
        });
        if policies.policies().is_empty() {
            // Not an error (a vault may only tokenize), but every access request will be
            // refused with reason `purpose`, and a newcomer should not have to guess why.
            tracing::warn!(
                policy_file = config.policy_file.as_ref().map(|p| p.display().to_string()),
                "no access policy: every access request is refused (reason purpose) and \
                 nobody can detokenize; give --policy-file / STRONGROOM_POLICY_FILE a TOML \
                 file with [[policy]] tables (README, Policies)"
            );
        }

        // A request never waits for a connection longer than it may run.
        let wait = config.api.request_timeout;
        let store = store::open_serving(&config.database_url, config.db_pool_size, wait).await?;
        match store.schema_status().await? {
            SchemaStatus::Current => {}
            SchemaStatus::Behind { pending } => return Err(StartupError::SchemaBehind { pending }),
            SchemaStatus::Modified { version } => {
                return Err(StartupError::SchemaModified { version });
            }
        }
        let metrics = Metrics::new();
        let checkpoint_key = load_checkpoint_key(
            store.as_ref(),
            &config.master_key,
            rng.as_ref(),
            clock.as_ref(),
        )
        .await?;
        // The audit appenders have connections of their own (one each, and a spare while a
        // lost one is replaced): a flood of requests holding the shared pool cannot starve the
        // trail, nor the writes that commit with their records.
        // The embedded store has one writer: more lanes would only wait for each other.
        let lanes = if config.database_url.is_embedded() {
            1
        } else {
            config.audit_lanes.max(1)
        };
        let connections = u32::try_from(lanes + 1).unwrap_or(u32::MAX);
        let writers = store::open_serving(&config.database_url, connections, wait).await?;
        let audit = AuditTrail::spawn_lanes(
            lanes,
            writers,
            Some(Anchor::new(
                checkpoint_key,
                config.audit_checkpoint_file,
                config.audit_checkpoint_interval,
            )),
            Arc::clone(&clock),
            metrics.clone(),
        );
        let keys = Arc::new(
            KeyService::load(
                store.clone(),
                config.master_key,
                Arc::clone(&rng),
                Arc::clone(&clock),
                config.keys,
                audit.clone(),
            )
            .await?,
        );
        let guard = Arc::new(Guard::new(
            store.clone(),
            Arc::clone(&clock),
            config.tokenize_bucket_budget,
        ));
        let alarms = Alarms::new(Arc::clone(&guard), audit.clone(), metrics.clone());
        let tokens = Arc::new(TokenService::new(
            store.clone(),
            Arc::clone(&keys),
            alarms.clone(),
            audit.clone(),
            Arc::clone(&rng),
            Arc::clone(&clock),
        ));
        let access = Arc::new(AccessService::new(
            store.clone(),
            store.clone(),
            Arc::clone(&keys),
            Arc::clone(&policies),
            audit.clone(),
            Arc::clone(&clock),
            AccessSettings {
                // At most 30 days, so that no request's expiry can leave chrono's range.
                request_ttl: TimeDelta::from_std(config.access_request_ttl)
                    .unwrap_or(TimeDelta::hours(1))
                    .min(TimeDelta::days(30)),
                totp_lockout: crate::service::mfa::lockout(config.totp_lockout_minutes),
            },
        ));
        let grants = Arc::new(GrantService::new(
            store.clone(),
            Arc::clone(&keys),
            audit.clone(),
            Arc::clone(&clock),
        ));
        let authn = Arc::new(Authenticator::new(
            store.clone(),
            Arc::clone(&clock),
            audit.clone(),
            metrics.clone(),
        ));
        let seal = SealSwitch::default();
        let sessions = Arc::new(SessionService::new(
            Arc::clone(&authn),
            store.clone(),
            Arc::clone(&keys),
            audit.clone(),
            Arc::clone(&rng),
            Arc::clone(&clock),
            crate::service::mfa::lockout(config.totp_lockout_minutes),
        ));
        let housekeeping = Housekeeping::new(
            Arc::clone(&keys),
            Arc::clone(&tokens),
            Arc::clone(&access),
            guard,
            Arc::clone(&authn),
        );
        let lifecycle = Lifecycle::new(audit.clone(), Arc::clone(&clock));
        let health = Health::new(store.clone(), audit.clone(), Arc::clone(&keys));
        let reencrypt = (config.reencrypt_rows_per_second > 0)
            .then(|| (Arc::clone(&keys), config.reencrypt_rows_per_second));
        let state = AppState::new(
            Services {
                keys,
                detokenize: DetokenizeService::new(
                    Arc::clone(&access),
                    Arc::clone(&tokens),
                    Arc::clone(&grants),
                    alarms,
                    audit.clone(),
                    Arc::clone(&clock),
                ),
                tokens,
                grants,
                audit_reader: AuditReader::new(store.clone(), audit.clone(), Arc::clone(&clock)),
                reports: UsageReporter::new(store.clone(), audit.clone(), Arc::clone(&clock)),
                review: ReviewService::new(
                    store.clone(),
                    Arc::clone(&access),
                    audit.clone(),
                    Arc::clone(&clock),
                ),
                access,
                health,
                sealer: Sealer::new(seal.clone(), audit.clone(), Arc::clone(&clock)),
                audit,
                authn,
                sessions,
            },
            clock,
            metrics,
            ApiSettings {
                // The browser is on HTTPS when this instance serves TLS, or when it was told it
                // sits behind a proxy that does.
                secure_cookies: tls.is_some() || config.force_plain_http,
                ..config.api
            },
            config.trusted_proxies,
        );
        // The trail hears of this instance and its policies before anyone is served.
        lifecycle.started(policy_text.as_deref(), &policies).await?;
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.listen)
                .await
                .map_err(|e| StartupError::Bind(config.listen, e))?,
        };
        Ok(Application {
            listener,
            tls,
            router: api::router(state.clone()),
            state,
            housekeeping,
            lifecycle,
            purge_interval: config.purge_interval,
            reencrypt,
            header_read_timeout: config.header_read_timeout,
            seal,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The bound port (tests bind port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Whether it serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The shared state, for tests and tools.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes or an admin seals the instance, then stops accepting
    /// and drains open connections; says which it was.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<Stopped> {
        let Application {
            listener,
            tls,
            router,
            state,
            housekeeping,
            lifecycle,
            purge_interval,
            header_read_timeout,
            reencrypt,
            seal,
        } = self;
        let audit = state.audit().clone();
        let reencryptor = reencrypt.map(|(keys, rate)| {
            tokio::spawn(reencrypt_in_background(keys, rate, state.metrics().clone()))
        });
        let purger = tokio::spawn(keep_house(state, housekeeping, purge_interval));
        let stopped = async {
            tokio::select! {
                () = shutdown => Stopped::Shutdown,
                () = seal.sealed() => Stopped::Sealed,
            }
        };
        let stopped = serve(&listener, tls, router, header_read_timeout, stopped).await;
        drop(listener);
        purger.abort();
        if let Some(reencryptor) = reencryptor {
            reencryptor.abort();
        }
        // The last records are vouched for outside the database before the process ends.
        lifecycle.stopped().await;
        audit.checkpoint().await;
        Ok(stopped)
    }
}

/// Accepts and serves connections on `listener` with `router` until `stop` completes, then
/// drains open connections; answers what `stop` said.
async fn serve<T>(
    listener: &TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    header_read_timeout: Duration,
    stop: impl Future<Output = T> + Send,
) -> T {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that trickles its headers (slowloris) is cut off instead of holding a task.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    let outcome = loop {
        // Finished connections are reaped as new ones come.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            outcome = &mut stop => break outcome,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        connections.spawn(async move {
            let served = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            watcher
                                .watch(
                                    builder
                                        .serve_connection(TokioIo::new(tls_stream), service)
                                        .into_owned(),
                                )
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    watcher
                        .watch(
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .into_owned(),
                        )
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout");
    }
    // Whatever is still open is cut: it would keep the state, and a sealed instance's keys,
    // alive.
    connections.abort_all();
    outcome
}

/// TLS from the configured files; plain HTTP only on loopback unless forced.
fn tls_acceptor(
    files: Option<&TlsFiles>,
    force_plain_http: bool,
    listen: SocketAddr,
) -> Result<Option<TlsAcceptor>, StartupError> {
    match (files, force_plain_http) {
        (Some(files), _) => Ok(Some(TlsAcceptor::from(tls::server_config(
            &files.cert,
            &files.key,
        )?))),
        (None, false) if !listen.ip().is_loopback() => {
            Err(StartupError::PlainHttpNotLoopback(listen))
        }
        (None, _) => Ok(None),
    }
}

/// How a sealed instance serves until its custodians unseal it.
pub struct SealedConfig {
    /// Where the stored keys are.
    pub database_url: crate::store::DatabaseUrl,
    /// Where it listens (for the plain-HTTP check).
    pub listen: SocketAddr,
    /// TLS, or plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// Plain HTTP on a non-loopback address.
    pub force_plain_http: bool,
    /// The threshold the operator expects, if they said.
    pub threshold: Option<u8>,
    /// As `ServeConfig::header_read_timeout`.
    pub header_read_timeout: Duration,
}

/// Serves sealed on `listener` — `/healthz`, `/readyz` (503 `sealed`) and
/// `POST /v1/sys/unseal`, everything else 503 `sealed` — until custodians' shares rebuild a
/// master key that opens the stored keys (answered) or `shutdown` completes (`None`).
pub async fn run_sealed(
    config: SealedConfig,
    listener: &TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Option<crate::crypto::keys::MasterKey>, StartupError> {
    let tls = tls_acceptor(config.tls.as_ref(), config.force_plain_http, config.listen)?;
    let store = store::open_serving(&config.database_url, 2, Duration::from_secs(5)).await?;
    match store.schema_status().await? {
        SchemaStatus::Current => {}
        SchemaStatus::Behind { pending } => return Err(StartupError::SchemaBehind { pending }),
        SchemaStatus::Modified { version } => {
            return Err(StartupError::SchemaModified { version });
        }
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // No checkpoint key while sealed (it is derived from the master key): the records are
    // chained, and the next checkpoint of the unsealed instance vouches for them.
    let trail = AuditTrail::spawn(store.clone(), None, Arc::clone(&clock), Metrics::new());
    let unsealer = Arc::new(Unsealer::new(store, trail.clone(), clock, config.threshold));
    let (unsealed, key) = tokio::sync::oneshot::channel();
    let router = api::sys::sealed_router(unsealer, unsealed);
    let stop = async {
        tokio::select! {
            () = shutdown => None,
            key = key => key.ok(),
        }
    };
    let key = serve(listener, tls, router, config.header_read_timeout, stop).await;
    trail.checkpoint().await;
    Ok(key)
}

/// Housekeeping now and then (see [`Housekeeping`]), and forgetting the rate limit state of
/// idle principals.
async fn keep_house(state: AppState, housekeeping: Housekeeping, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        state.rate_limits().forget_idle();
        housekeeping.run_once().await;
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
