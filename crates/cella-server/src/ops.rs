//! The operations listener (`cella serve --metrics ADDR`): plain HTTP on an address of
//! its own, apart from the attested gRPC API, for Prometheus and Kubernetes probes.
//!
//! - `GET /metrics`: the node's metrics in Prometheus' text format (names in
//!   `docs/operations.md`; `deploy/grafana/cella.json` is built on them).
//! - `GET /healthz`: 200 while the process serves HTTP at all (liveness).
//! - `GET /readyz`: 200 only while every readiness check passes, else 503; the body
//!   lists each check and why it fails (readiness).
//!
//! Nothing here is secret and nothing here changes state: the listener carries no
//! authentication, so it should listen on loopback or a cluster-internal address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cella_attest::renew::CertResolver;
use cella_libos::LibosExecutor;
use cella_platform::Platform;
use cella_platform::observe::{Observer, TaskEnded};
use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Evidence older than this is stale for readiness: the age clients refuse (the
/// `max_evidence_age_secs` of the policy the node writes, `tls::POLICY_MAX_AGE_SECS`).
const MAX_EVIDENCE_AGE: Duration = Duration::from_secs(crate::tls::POLICY_MAX_AGE_SECS);
/// Task latency buckets: 5 ms to about 22 minutes (a task's default deadline is 5).
const TASK_BUCKETS: (f64, f64, u16) = (0.005, 2.0, 19);
/// Store commit buckets: 50 µs (a commit without fsync) to about 1.6 s (a stalled disk).
const COMMIT_BUCKETS: (f64, f64, u16) = (0.000_05, 2.0, 16);

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn task_histogram() -> Histogram {
    let (start, factor, n) = TASK_BUCKETS;
    Histogram::new(exponential_buckets(start, factor, n))
}

fn commit_histogram() -> Histogram {
    let (start, factor, n) = COMMIT_BUCKETS;
    Histogram::new(exponential_buckets(start, factor, n))
}

/// The label value of an executor that is not known (its function was deleted).
const UNKNOWN: &str = "unknown";

/// The metrics the node counts as things happen; the platform reports to them as its
/// [`Observer`], the API layer through [`NodeMetrics::api_request`].
#[derive(Debug)]
pub struct NodeMetrics {
    tasks_ended: Family<Labels2, Counter>,
    queue_wait: Histograms<Labels1>,
    run: Histograms<Labels1>,
    end_to_end: Histograms<Labels1>,
    store_commit: Histogram,
    api_requests: Family<[(&'static str, String); 2], Counter>,
}

impl NodeMetrics {
    fn new() -> Self {
        Self {
            tasks_ended: Family::default(),
            queue_wait: Family::new_with_constructor(task_histogram),
            run: Family::new_with_constructor(task_histogram),
            end_to_end: Family::new_with_constructor(task_histogram),
            store_commit: commit_histogram(),
            api_requests: Family::default(),
        }
    }

    fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "tasks_ended",
            "Tasks that reached a terminal status, by status and executor",
            self.tasks_ended.clone(),
        );
        registry.register_with_unit(
            "task_queue_wait",
            "Time from Staged to Running (the last attempt)",
            Unit::Seconds,
            self.queue_wait.clone(),
        );
        registry.register_with_unit(
            "task_run",
            "Time from Running to the end",
            Unit::Seconds,
            self.run.clone(),
        );
        registry.register_with_unit(
            "task_end_to_end",
            "Time from creation to the end",
            Unit::Seconds,
            self.end_to_end.clone(),
        );
        registry.register_with_unit(
            "store_commit",
            "Duration of one metadata store commit (a batch of writes)",
            Unit::Seconds,
            self.store_commit.clone(),
        );
        registry.register(
            "api_requests",
            "gRPC requests answered, by method and status code",
            self.api_requests.clone(),
        );
    }

    /// Counts one answered API call: `method` is the gRPC path, `code` the status
    /// code's name.
    pub fn api_request(&self, method: &str, code: tonic::Code) {
        self.api_requests
            .get_or_create(&[
                ("method", method.to_owned()),
                ("code", cella_proto::code_name(code).to_owned()),
            ])
            .inc();
    }
}

impl Observer for NodeMetrics {
    fn task_ended(&self, ended: &TaskEnded) {
        let executor = ended.executor.map_or(UNKNOWN, |e| e.as_str());
        self.tasks_ended
            .get_or_create(&[("status", ended.status.as_str()), ("executor", executor)])
            .inc();
        let by = [("executor", executor)];
        if let Some(wait) = ended.queue_wait {
            self.queue_wait
                .get_or_create(&by)
                .observe(wait.as_secs_f64());
        }
        if let Some(run) = ended.run {
            self.run.get_or_create(&by).observe(run.as_secs_f64());
        }
        self.end_to_end
            .get_or_create(&by)
            .observe(ended.end_to_end.as_secs_f64());
    }

    fn store_commit(&self, took: Duration) {
        self.store_commit.observe(took.as_secs_f64());
    }
}

/// Where the LibOS executor's start-up probe stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibosProbe {
    /// The node has no LibOS configuration: nothing to probe.
    NotConfigured,
    /// The probe has not passed yet.
    Pending,
    /// The probe passed: the machine can run the configured backend.
    Passed,
    /// The probe failed, and why.
    Failed(String),
}

/// What the node has started so far, for readiness and scrape-time metrics.
#[derive(Debug)]
struct Started {
    platform: Arc<Platform>,
    resolver: Arc<CertResolver>,
    libos: Option<Arc<LibosExecutor>>,
}

/// The state behind the operations listener: the metrics registry and the readiness
/// checks. Made before the node starts, so that probes see "not ready" during start-up.
#[derive(Debug)]
pub struct Ops {
    registry: Registry,
    metrics: Arc<NodeMetrics>,
    state: Arc<OpsState>,
}

#[derive(Debug)]
struct OpsState {
    libos: Mutex<LibosProbe>,
    started: OnceLock<Started>,
    stopping: std::sync::atomic::AtomicBool,
}

impl OpsState {
    fn libos(&self) -> std::sync::MutexGuard<'_, LibosProbe> {
        self.libos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for Ops {
    fn default() -> Self {
        Self::new()
    }
}

impl Ops {
    /// A registry with the node's metrics, and readiness checks that fail until the node
    /// is [attached](Ops::attach).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cella");
        let metrics = Arc::new(NodeMetrics::new());
        metrics.register(&mut registry);
        let state = Arc::new(OpsState {
            libos: Mutex::new(LibosProbe::NotConfigured),
            started: OnceLock::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        registry.register_collector(Box::new(Gauges(Arc::clone(&state))));
        Self {
            registry,
            metrics,
            state,
        }
    }

    /// The metrics the platform and the API layer report to.
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    /// Records where the LibOS probe stands.
    pub fn set_libos_probe(&self, probe: LibosProbe) {
        *self.state.libos() = probe;
    }

    /// The node is up: readiness and scrape-time metrics read it from now on.
    pub(crate) fn attach(
        &self,
        platform: Arc<Platform>,
        resolver: Arc<CertResolver>,
        libos: Option<Arc<LibosExecutor>>,
    ) {
        if self
            .state
            .started
            .set(Started {
                platform,
                resolver,
                libos,
            })
            .is_err()
        {
            tracing::warn!("the operations listener was attached to a node twice");
        }
    }

    /// The node is shutting down: not ready any more, so load balancers stop sending.
    pub(crate) fn stopping(&self) {
        self.state
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Each readiness check and its failure, if any; ready when none failed.
    pub fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let s = &self.state;
        let mut checks = Vec::new();
        if s.stopping.load(std::sync::atomic::Ordering::Acquire) {
            checks.push(("serving", Err("the node is shutting down".into())));
        }
        let libos = match &*s.libos() {
            LibosProbe::NotConfigured | LibosProbe::Passed => Ok(()),
            LibosProbe::Pending => Err("the LibOS probe has not passed yet".into()),
            LibosProbe::Failed(why) => Err(format!("the LibOS probe failed: {why}")),
        };
        checks.push(("libos_probe", libos));
        let Some(started) = s.started.get() else {
            checks.push(("node", Err("the node is starting".into())));
            return checks;
        };
        let store = match started.platform.health() {
            Ok(h) => match h.store_write_failure {
                None => Ok(()),
                Some(why) => Err(format!("metadata writes fail: {why}")),
            },
            Err(e) => Err(format!(
                "reading the store: {}",
                cella_store::error_chain(&e)
            )),
        };
        checks.push(("store_writable", store));
        let executors = if started.platform.executor_kinds().is_empty() {
            Err("no executor is registered".into())
        } else {
            Ok(())
        };
        checks.push(("executors", executors));
        checks.push(("evidence_fresh", evidence_fresh(&started.resolver)));
        checks
    }

    /// The metrics in Prometheus' text format.
    ///
    /// # Errors
    ///
    /// Only if formatting fails (it writes to a `String`).
    pub fn scrape(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `stop` is canceled.
    ///
    /// # Errors
    ///
    /// When `addr` cannot be bound.
    pub async fn serve(
        self: &Arc<Self>,
        addr: SocketAddr,
        stop: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let ops = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            tracing::debug!(error = %e, "operations listener: accept failed");
                            continue;
                        }
                    },
                    () = stop.cancelled() => return,
                };
                let ops = Arc::clone(&ops);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let ops = Arc::clone(&ops);
                        async move { Ok::<_, Infallible>(ops.respond(&req)) }
                    });
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                    {
                        tracing::debug!(error = %e, "operations listener: connection failed");
                    }
                });
            }
        });
        tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
        Ok(bound)
    }

    fn respond<B>(&self, req: &hyper::Request<B>) -> hyper::Response<Full<Bytes>> {
        let (status, content_type, body) = if req.method() != hyper::Method::GET {
            (405, "text/plain", "only GET\n".to_owned())
        } else {
            match req.uri().path() {
                "/healthz" => (200, "text/plain", "ok\n".to_owned()),
                "/readyz" => {
                    let checks = self.readiness();
                    let ready = checks.iter().all(|(_, r)| r.is_ok());
                    let body: String = checks
                        .iter()
                        .map(|(name, r)| match r {
                            Ok(()) => format!("{name}: ok\n"),
                            Err(why) => format!("{name}: {why}\n"),
                        })
                        .collect();
                    (if ready { 200 } else { 503 }, "text/plain", body)
                }
                "/metrics" => match self.scrape() {
                    Ok(text) => (
                        200,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        text,
                    ),
                    Err(_) => (500, "text/plain", "encoding the metrics failed\n".into()),
                },
                _ => (
                    404,
                    "text/plain",
                    "not found: /metrics, /healthz, /readyz\n".into(),
                ),
            }
        };
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, v);
        }
        response
    }
}

/// Whether the certificate clients attest is younger than the age they accept.
fn evidence_fresh(resolver: &CertResolver) -> Result<(), String> {
    let cert = cella_attest::ratls::RaTlsCert::parse(&resolver.certificate())
        .map_err(|e| format!("the node's certificate does not parse: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age = now.saturating_sub(cert.not_before);
    if age > MAX_EVIDENCE_AGE.as_secs() {
        return Err(format!(
            "the evidence is {age} s old, more than the {} s clients accept (renewal fails?)",
            MAX_EVIDENCE_AGE.as_secs()
        ));
    }
    Ok(())
}

/// The metrics read at scrape time from what the node already counts: queue depth,
/// worker occupancy, and the LibOS pools.
#[derive(Debug)]
struct Gauges(Arc<OpsState>);

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(started) = self.0.started.get() else {
            return Ok(());
        };
        if let Ok(h) = started.platform.health() {
            let queued = i64::try_from(h.queued).unwrap_or(i64::MAX);
            gauge(
                &mut encoder,
                "tasks_queued",
                "Tasks waiting in the queue",
                queued,
            )?;
            gauge(
                &mut encoder,
                "workers",
                "Execution workers",
                as_i64(h.workers),
            )?;
            gauge(
                &mut encoder,
                "workers_busy",
                "Execution workers running a task",
                as_i64(h.running),
            )?;
        }
        let Some(libos) = &started.libos else {
            return Ok(());
        };
        let stats: Vec<_> = libos
            .runtimes()
            .filter_map(|r| libos.pool_stats(r).map(|s| (r.to_owned(), s)))
            .collect();
        let mut family = encoder.encode_descriptor(
            "libos_pool_instances",
            "LibOS instances of each runtime's pool, by state",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (runtime, s) in &stats {
            for (state, n) in [
                ("idle", s.idle),
                ("launching", s.launching),
                ("busy", s.busy),
            ] {
                let labels = [("runtime", runtime.as_str()), ("state", state)];
                ConstGauge::new(as_i64(n)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, pick) in [
            (
                "libos_instance_launches",
                "LibOS instances launched and attested",
                (|s: &cella_libos::PoolStats| s.launched) as fn(&cella_libos::PoolStats) -> u64,
            ),
            (
                "libos_instance_launch_failures",
                "LibOS instance launches that failed (attestation refusals included)",
                |s| s.launch_failures,
            ),
        ] {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (runtime, s) in &stats {
                let labels = [("runtime", runtime.as_str())];
                ConstCounter::new(pick(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "attestation_refusals",
            "LibOS instances whose attestation was refused, by reason",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (runtime, s) in &stats {
            for (reason, n) in &s.attestation_refusals {
                let labels = [("runtime", runtime.as_str()), ("reason", reason)];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(ops: &Ops) -> Vec<&'static str> {
        ops.readiness()
            .into_iter()
            .filter(|(_, r)| r.is_err())
            .map(|(name, _)| name)
            .collect()
    }

    #[tokio::test]
    async fn not_ready_until_the_libos_probe_passes_and_the_node_runs() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Arc::new(Ops::new());
        ops.set_libos_probe(LibosProbe::Pending);
        assert_eq!(failing(&ops), ["libos_probe", "node"]);
        let mut config = crate::ServerConfig::new(
            cella_platform::NodeConfig::new(dir.path().join("node")),
            "127.0.0.1:0".parse().unwrap(),
        );
        config.node.workers = 1;
        config.ops = Some(Arc::clone(&ops));
        let executors = crate::default_executors(&config.node).unwrap();
        let node = crate::RunningNode::start(config, executors).await.unwrap();
        // The node serves, but the probe has not passed: still not ready.
        assert_eq!(failing(&ops), ["libos_probe"]);
        ops.set_libos_probe(LibosProbe::Failed("no user namespaces".into()));
        let checks = ops.readiness();
        assert!(
            checks.iter().any(|(n, r)| *n == "libos_probe"
                && r.as_ref().is_err_and(|e| e.contains("no user namespaces"))),
            "{checks:?}"
        );
        ops.set_libos_probe(LibosProbe::Passed);
        assert!(failing(&ops).is_empty(), "{:?}", ops.readiness());
        let text = ops.scrape().unwrap();
        assert!(text.contains("cella_workers 1"), "{text}");
        node.shutdown().await;
        assert_eq!(failing(&ops), ["serving"]);
    }
}
