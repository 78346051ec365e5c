//! The calls of a port: each is counted on its connection (for the idle timeout) and under the
//! port's cap from its HEADERS until its response ends; a call beyond the cap is answered
//! RESOURCE_EXHAUSTED without reaching the service.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tower_layer::Layer;

use super::conn::{CallGuard, ConnInfo};
use super::{Throttled, held_back};

/// The layer of [`super::PortLimits::server`]: `I` is the connect info inside [`ConnInfo`].
#[derive(Debug)]
pub struct CallLayer<I> {
    slots: Arc<Semaphore>,
    max: usize,
    refused: Arc<Throttled>,
    _info: PhantomData<fn() -> I>,
}

impl<I> Clone for CallLayer<I> {
    fn clone(&self) -> Self {
        Self { slots: self.slots.clone(), max: self.max, refused: self.refused.clone(), _info: PhantomData }
    }
}

impl<I> CallLayer<I> {
    /// At most `max` calls in flight at once through every service of this layer.
    pub fn new(max: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max)), max, refused: Arc::default(), _info: PhantomData }
    }
}

impl<S, I> Layer<S> for CallLayer<I> {
    type Service = CallService<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService { inner, layer: self.clone() }
    }
}

/// The service of [`CallLayer`].
#[derive(Debug)]
pub struct CallService<S, I> {
    inner: S,
    layer: CallLayer<I>,
}

impl<S: Clone, I> Clone for CallService<S, I> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), layer: self.layer.clone() }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, I, B, R> Service<Request<B>> for CallService<S, I>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    I: Clone + Send + Sync + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<TrackedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let call = match req.extensions_mut().remove::<ConnInfo<I>>() {
            Some(conn) => {
                req.extensions_mut().insert(conn.inner);
                Some(conn.calls.start())
            }
            None => None,
        };
        let Ok(slot) = self.layer.slots.clone().try_acquire_owned() else {
            if let Some(held) = self.layer.refused.note() {
                tracing::warn!(max_calls = self.layer.max, "call refused: too many in flight{}", held_back(held));
            }
            let refused =
                Status::resource_exhausted("too many calls in flight at this server; retry later").into_http();
            return Box::pin(std::future::ready(Ok(refused.map(|body| TrackedBody { body, _held: None }))));
        };
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| TrackedBody { body, _held: Some((slot, call)) }))
        })
    }
}

/// A response body that keeps its call counted until it is dropped (sent, or the stream reset).
#[derive(Debug)]
pub struct TrackedBody<R> {
    body: R,
    _held: Option<(OwnedSemaphorePermit, Option<CallGuard>)>,
}

impl<R: Body + Unpin> Body for TrackedBody<R> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<R::Data>, R::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
