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
            status: "serving".into(),
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
