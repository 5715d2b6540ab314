//! A small HTTP/1 client on hyper for the tests: one connection per request, a timeout on
//! everything, the JSON body decoded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// The longest any test request may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// The body type of test requests: whole, or streamed through a channel.
pub(crate) type TestBody = BoxBody<Bytes, Infallible>;

/// A request to send.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Req {
    pub(crate) fn new(method: Method, path: &str) -> Self {
        Self { method, path: path.to_owned(), headers: Vec::new(), body: Bytes::new() }
    }

    pub(crate) fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A JSON body (`Content-Type: application/json`), sent exactly as `text`.
    pub(crate) fn json(self, text: &str) -> Self {
        self.header("content-type", "application/json").body(text.to_owned())
    }

    pub(crate) fn body(mut self, text: impl Into<Bytes>) -> Self {
        self.body = text.into();
        self
    }

    /// The request for `addr`, with `body` as its body.
    pub(crate) fn build(&self, addr: SocketAddr, body: TestBody) -> Request<TestBody> {
        let mut request = Request::builder().method(self.method.clone()).uri(&self.path);
        request = request.header("host", addr.to_string());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request.body(body).expect("a valid request")
    }
}

/// A response, its body parsed as JSON.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    /// The header's value as text (panics if absent).
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name} in {self:?}")).to_str().unwrap()
    }

    /// The run id of a `202`/`200` response.
    pub(crate) fn run_id(&self) -> cronflow_core::RunId {
        self.body["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no run id in {self:?}"))
            .parse()
            .unwrap()
    }
}

/// Opens a connection to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> SendRequest<TestBody> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    sender
}

/// Sends `request` on `sender` and reads the whole reply.
pub(crate) async fn send_on(
    sender: &mut SendRequest<TestBody>,
    request: Request<TestBody>,
) -> Reply {
    let exchange = async {
        sender.ready().await.expect("connection ready");
        let response = sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("response body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
        Reply { status: parts.status, headers: parts.headers, body }
    };
    tokio::time::timeout(TIMEOUT, exchange).await.expect("the request timed out")
}

/// Sends `req` to `addr` on a fresh connection.
pub(crate) async fn send(addr: SocketAddr, req: Req) -> Reply {
    let mut sender = connect(addr).await;
    let body = Full::new(req.body.clone()).boxed();
    send_on(&mut sender, req.build(addr, body)).await
}

/// `sha256=<hex>` of `body` under `secret`.
pub(crate) fn sign(secret: &str, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
