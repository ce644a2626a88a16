//! HTTP/1.1 framing: requests from bytes, responses to bytes.

mod chunked;
mod conn;
mod headers;
mod request;
mod response;
mod target;

pub use chunked::{ChunkedDecoder, ChunkedError};
pub use conn::ServerConn;
pub use headers::Headers;
pub use request::{HttpError, Limits, Request, RequestReader};
pub use response::{encode_closing, reason, websocket_accept, Body, Response};
