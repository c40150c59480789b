//! `cella.v1.FunctionService`.

use cella_proto::v1 as pb;
use cella_proto::v1::function_service_server::FunctionService;
use tonic::{Request, Response, Status};

use super::{Api, page_reply, page_request};
use crate::convert::{function_info, function_spec};

/// The function service.
#[derive(Debug, Clone)]
pub(crate) struct FunctionApi(pub(crate) Api);

#[tonic::async_trait]
impl FunctionService for FunctionApi {
    async fn register_function(
        &self,
        req: Request<pb::RegisterFunctionRequest>,
    ) -> Result<Response<pb::FunctionInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let spec = function_spec(r.spec)?;
        let f = self
            .0
            .run(move |p| p.register_function(&caller, spec, &r.payload))
            .await?;
        Ok(Response::new(function_info(&f, None)))
    }

    async fn get_function(
        &self,
        req: Request<pb::GetFunctionRequest>,
    ) -> Result<Response<pb::FunctionInfo>, Status> {
        let r = req.get_ref().clone();
        let v = self
            .0
            .as_caller(&req, move |p, c| {
                p.get_function(c, &r.function_id, r.include_payload)
            })
            .await?;
        Ok(Response::new(function_info(&v.function, v.payload)))
    }

    async fn list_functions(
        &self,
        req: Request<pb::ListFunctionsRequest>,
    ) -> Result<Response<pb::ListFunctionsResponse>, Status> {
        let r = req.get_ref();
        let mine = r.mine_only;
        let page = page_request(r.page_size, &r.page_token, false)?;
        let fs = self
            .0
            .as_caller(&req, move |p, c| p.list_functions(c, mine, &page))
            .await?;
        let (functions, next_page_token) = page_reply(&fs, |f| function_info(f, None));
        Ok(Response::new(pb::ListFunctionsResponse {
            functions,
            next_page_token,
        }))
    }

    async fn update_function(
        &self,
        req: Request<pb::UpdateFunctionRequest>,
    ) -> Result<Response<pb::FunctionInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let spec = function_spec(r.spec)?;
        let f = self
            .0
            .run(move |p| p.update_function(&caller, &r.function_id, spec, r.payload.as_deref()))
            .await?;
        Ok(Response::new(function_info(&f, None)))
    }

    async fn disable_function(
        &self,
        req: Request<pb::DisableFunctionRequest>,
    ) -> Result<Response<pb::FunctionInfo>, Status> {
        let id = req.get_ref().function_id.clone();
        let f = self
            .0
            .as_caller(&req, move |p, c| p.disable_function(c, &id))
            .await?;
        Ok(Response::new(function_info(&f, None)))
    }

    async fn delete_function(
        &self,
        req: Request<pb::DeleteFunctionRequest>,
    ) -> Result<Response<pb::DeleteFunctionResponse>, Status> {
        let id = req.get_ref().function_id.clone();
        self.0
            .as_caller(&req, move |p, c| p.delete_function(c, &id))
            .await?;
        Ok(Response::new(pb::DeleteFunctionResponse {}))
    }
}
