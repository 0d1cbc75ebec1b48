//! `runner probe URL`: an HTTP health check for images without a shell.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// GETs `url` and returns its status; 2xx is healthy.
pub async fn probe(url: &str, timeout: Duration) -> Result<http::StatusCode> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{url:?}: only http:// URLs can be probed");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("{url:?} has no host"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());

    let attempt = async {
        let stream = TcpStream::connect((authority.host(), port))
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        anyhow::Ok(response.status())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .with_context(|| format!("no answer from {url} within {timeout:?}"))?
}
