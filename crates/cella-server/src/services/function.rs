//! `cella.v1.FunctionService`.

use cella_proto::v1 as pb;
use cella_proto::v1::function_service_server::FunctionService;
use tonic::{Request, Response, Status};

use super::{Api, page_reply, page_request};
use crate::convert::{function_info, function_spec, parse};

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
        let caller = self.0.caller(&req)?;
        let id = parse("function_id", &req.get_ref().function_id)?;
        let include_payload = req.get_ref().include_payload;
        let v = self
            .0
            .run(move |p| p.get_function(&caller, id, include_payload))
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
        let id = parse("function_id", &r.function_id)?;
        let spec = function_spec(r.spec)?;
        let f = self
            .0
            .run(move |p| p.update_function(&caller, id, spec, r.payload.as_deref()))
            .await?;
        Ok(Response::new(function_info(&f, None)))
    }

    async fn disable_function(
        &self,
        req: Request<pb::DisableFunctionRequest>,
    ) -> Result<Response<pb::FunctionInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("function_id", &req.get_ref().function_id)?;
        let f = self.0.run(move |p| p.disable_function(&caller, id)).await?;
        Ok(Response::new(function_info(&f, None)))
    }

    async fn delete_function(
        &self,
        req: Request<pb::DeleteFunctionRequest>,
    ) -> Result<Response<pb::DeleteFunctionResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("function_id", &req.get_ref().function_id)?;
        self.0.run(move |p| p.delete_function(&caller, id)).await?;
        Ok(Response::new(pb::DeleteFunctionResponse {}))
    }
}
