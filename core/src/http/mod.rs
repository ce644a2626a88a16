//! HTTP/1.1 framing: requests from bytes, responses to bytes; and the
//! client's side of it, for dialing remote servers (`client`, `url`).

mod chunked;
mod client;
mod conn;
mod headers;
mod request;
mod response;
mod target;
mod url;

pub use chunked::{ChunkedDecoder, ChunkedError};
pub use client::{Outgoing, ResponseError, ResponseEvent, ResponseHead, ResponseReader, MAX_HEAD};
pub use conn::ServerConn;
pub use headers::Headers;
pub use request::{HttpError, Limits, Request, RequestReader};
pub use response::{encode_closing, reason, websocket_accept, Body, Fields, Response};
pub use url::{BadUrl, Url};
