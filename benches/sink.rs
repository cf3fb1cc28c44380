//! sink: the upload backend of `scripts/bench` (case 2b).
//!
//! `sink --port P` serves HTTP/1.1 on 127.0.0.1:P with hyper, one thread:
//! every request body is read to the end (and counted) before the answer
//! `ok <bytes>`, so a proxy has to carry the whole upload. A static nginx
//! cannot stand in: its `return` answers before reading the body, and a
//! proxy then closes the client connection.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(port) = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse::<u16>().ok())
    else {
        // `cargo bench` with no arguments: nothing to do.
        eprintln!("usage: sink --port P (driven by scripts/bench)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(serve(port)) {
        eprintln!("sink: {e}");
        std::process::exit(1);
    }
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut body = req.into_body();
    let mut n = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            n += d.len();
        }
    }
    Ok(Response::new(Full::new(Bytes::from(format!("ok {n}\n")))))
}
