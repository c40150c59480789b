//! A tower layer that counts the API's answers by method and status code for the
//! metrics (`cella_api_requests_total`).
//!
//! The code is the one a trailers-only answer carries in its headers, as tonic sends
//! every refusal of a unary call; an answer without it is counted `OK` (a stream that
//! fails after its first message is counted `OK` too: its status comes in trailers).
//! A method the node does not serve is counted as `other`, never by its path: a caller
//! choosing paths must not grow the metrics without bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::{Code, Status};

use crate::ops::NodeMetrics;

/// The method label of calls to methods the node does not serve.
const OTHER: &str = "other";

/// Counts each answer in [`NodeMetrics::api_request`]; counts nothing without metrics.
#[derive(Debug, Clone)]
pub(crate) struct CountLayer(pub(crate) Option<Arc<NodeMetrics>>);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`CountLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Count<S> {
    inner: S,
    metrics: Option<Arc<NodeMetrics>>,
}

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for Count<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Boxed<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let metrics = self.metrics.clone();
        let path = metrics.as_ref().map(|_| req.uri().path().to_owned());
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await;
            if let (Some(m), Some(path), Ok(r)) = (&metrics, &path, &response) {
                let code = Status::from_header_map(r.headers()).map_or(Code::Ok, |s| s.code());
                let method = if code == Code::Unimplemented {
                    OTHER
                } else {
                    path.as_str()
                };
                m.api_request(method, code);
            }
            response
        })
    }
}
