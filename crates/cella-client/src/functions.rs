//! Function calls: register, get, list, update, disable, delete.

use crate::Client;
use crate::error::{ClientError, Result};
use crate::proto;

impl Client {
    /// Registers a function (`function_owner` role). `payload` is the builtin's name for
    /// `builtin`, the module for `wasm`, the program for `libos`.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`] (`InvalidArgument` for a
    /// spec that breaks a rule).
    pub async fn register_function(
        &self,
        spec: proto::FunctionSpec,
        payload: Vec<u8>,
    ) -> Result<proto::FunctionInfo> {
        let request = self.authed(proto::RegisterFunctionRequest {
            spec: Some(spec),
            payload,
        })?;
        Ok(self
            .function_service()
            .register_function(request)
            .await
            .map_err(|s| ClientError::status("RegisterFunction", s))?
            .into_inner())
    }

    /// Gets a function the caller may use; with `include_payload` (owner only) the
    /// payload too.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn get_function(
        &self,
        function_id: &str,
        include_payload: bool,
    ) -> Result<proto::FunctionInfo> {
        let request = self.authed(proto::GetFunctionRequest {
            function_id: function_id.to_owned(),
            include_payload,
        })?;
        Ok(self
            .function_service()
            .get_function(request)
            .await
            .map_err(|s| ClientError::status("GetFunction", s))?
            .into_inner())
    }

    /// Replaces a function's spec, and its payload when `payload` is `Some` (owner only).
    /// Changing the payload voids the approvals of every task that uses the function.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn update_function(
        &self,
        function_id: &str,
        spec: proto::FunctionSpec,
        payload: Option<Vec<u8>>,
    ) -> Result<proto::FunctionInfo> {
        let request = self.authed(proto::UpdateFunctionRequest {
            function_id: function_id.to_owned(),
            spec: Some(spec),
            payload,
        })?;
        Ok(self
            .function_service()
            .update_function(request)
            .await
            .map_err(|s| ClientError::status("UpdateFunction", s))?
            .into_inner())
    }

    /// Disables a function: no new tasks, no invocations (owner only).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn disable_function(&self, function_id: &str) -> Result<proto::FunctionInfo> {
        let request = self.authed(proto::DisableFunctionRequest {
            function_id: function_id.to_owned(),
        })?;
        Ok(self
            .function_service()
            .disable_function(request)
            .await
            .map_err(|s| ClientError::status("DisableFunction", s))?
            .into_inner())
    }

    /// Deletes a function that no unfinished task uses (owner only).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn delete_function(&self, function_id: &str) -> Result<()> {
        let request = self.authed(proto::DeleteFunctionRequest {
            function_id: function_id.to_owned(),
        })?;
        self.function_service()
            .delete_function(request)
            .await
            .map_err(|s| ClientError::status("DeleteFunction", s))?;
        Ok(())
    }
}
