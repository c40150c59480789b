//! `cella.v1.NodeService`: unauthenticated health, version and published policies.

use std::sync::Arc;

use cella_proto::v1 as pb;
use cella_proto::v1::node_service_server::NodeService;
use tonic::{Request, Response, Status};

use super::Api;

/// The node service, with the policies the node publishes.
#[derive(Debug, Clone)]
pub(crate) struct NodeApi {
    pub(crate) api: Api,
    pub(crate) policies: Arc<pb::GetPoliciesResponse>,
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn health(
        &self,
        _req: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        let h = self.api.run(|p| p.health()).await?;
        Ok(Response::new(pb::HealthResponse {
            status: health_status(&h),
            workers: u32::try_from(h.workers).unwrap_or(u32::MAX),
            queued_tasks: h.queued,
            running_tasks: h.running as u64,
            isolation_warnings: h.isolation_warnings,
        }))
    }

    async fn version(
        &self,
        _req: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            api: "cella.v1".into(),
            executors: self
                .api
                .platform
                .executor_kinds()
                .iter()
                .map(ToString::to_string)
                .collect(),
            builtins: cella_executor::builtin::BuiltinExecutor::names()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }))
    }

    async fn get_policies(
        &self,
        _req: Request<pb::GetPoliciesRequest>,
    ) -> Result<Response<pb::GetPoliciesResponse>, Status> {
        Ok(Response::new(pb::GetPoliciesResponse::clone(
            &self.policies,
        )))
    }
}

/// The health status: "serving", or "degraded: …" with the reason while the node cannot
/// write its metadata (a full disk), so monitoring sees the outage before clients do.
fn health_status(h: &cella_platform::scheduler::Health) -> String {
    match &h.store_write_failure {
        None => "serving".into(),
        Some(reason) => format!("degraded: metadata writes are failing: {reason}"),
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn failing_store_writes_make_the_node_degraded_with_the_reason() {
        let mut h = cella_platform::scheduler::Health {
            workers: 1,
            queued: 0,
            running: 0,
            isolation_warnings: Vec::new(),
            store_write_failure: None,
        };
        assert_eq!(health_status(&h), "serving");
        h.store_write_failure = Some("I/O error: No space left on device (os error 28)".into());
        let status = health_status(&h);
        assert!(status.starts_with("degraded: "), "{status}");
        assert!(status.contains("No space left on device"), "{status}");
    }
}
