//! What a REST method implementation sees and returns: the [`Handler`] trait, the request
//! ([`RestRequest`], its body as a [`RequestStream`]) and the answer ([`RestReply`] or a
//! [`HandlerError`] with its status).

use crate::error::BoxError;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::Body as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A REST method implementation. Implemented for every
/// `Fn(RestRequest) -> impl Future<Output = Result<RestReply, HandlerError>>` that is
/// `Send + Sync + 'static`.
pub trait Handler: Send + Sync + 'static {
    /// Serves one request.
    fn call(&self, req: RestRequest) -> BoxFuture<Result<RestReply, HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(RestRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<RestReply, HandlerError>> + Send + 'static,
{
    fn call(&self, req: RestRequest) -> BoxFuture<Result<RestReply, HandlerError>> {
        Box::pin(self(req))
    }
}

/// An authenticated request to a REST method.
#[derive(Debug)]
pub struct RestRequest {
    method: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: RequestStream,
}

impl RestRequest {
    pub(crate) fn new(
        method: String,
        query: Vec<(String, String)>,
        headers: HeaderMap,
        body: Body,
    ) -> RestRequest {
        RestRequest {
            method,
            query,
            headers,
            body: RequestStream { body },
        }
    }

    /// The method name (the last path segment).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The first value of query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All query parameters, decoded, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request body, to read chunk by chunk.
    pub fn body_mut(&mut self) -> &mut RequestStream {
        &mut self.body
    }

    /// Takes the request body.
    pub fn into_body(self) -> RequestStream {
        self.body
    }
}

/// An error reading a request body (the client went away, or the body was malformed).
#[derive(Debug, thiserror::Error)]
#[error("request body: {0}")]
pub struct BodyError(#[source] pub BoxError);

/// A streamed request body on the server side.
pub struct RequestStream {
    body: Body,
}

impl std::fmt::Debug for RequestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestStream { .. }")
    }
}

impl RequestStream {
    /// The next chunk, `None` at the end of the body.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        self.next().await
    }
}

impl Stream for RequestStream {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(BodyError(Box::new(e))))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                    }
                    // Trailers and empty chunks carry nothing for the handler.
                }
            }
        }
    }
}

/// A handler's answer: a status (200 by default), headers, and a body that may be streamed.
pub struct RestReply {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

impl std::fmt::Debug for RestReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestReply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl RestReply {
    /// 200 with an empty body.
    pub fn empty() -> RestReply {
        RestReply::bytes(Bytes::new())
    }

    /// 200 with `body` (sent with a `Content-Length`).
    pub fn bytes(body: impl Into<Bytes>) -> RestReply {
        RestReply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Body::from(body.into()),
        }
    }

    /// 200 with a body streamed from `stream` (chunked). An error from the stream aborts the
    /// connection, which the client sees as a network error.
    pub fn stream<S, E>(stream: S) -> RestReply
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        RestReply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Body::from_stream(stream),
        }
    }

    /// Sets the status.
    pub fn with_status(mut self, status: StatusCode) -> RestReply {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> RestReply {
        self.headers.append(name, value);
        self
    }
}

impl IntoResponse for RestReply {
    fn into_response(self) -> Response {
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// A handler's refusal: a status and a message the client receives in
/// [`RestError::Remote`](crate::RestError::Remote).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct HandlerError {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// The text sent as the body.
    pub message: String,
}

impl HandlerError {
    /// A refusal with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> HandlerError {
        HandlerError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request's parameters or body are invalid.
    pub fn bad_request(message: impl Into<String>) -> HandlerError {
        HandlerError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 500: the handler failed.
    pub fn internal(message: impl Into<String>) -> HandlerError {
        HandlerError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for HandlerError {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}
