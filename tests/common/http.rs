//! An axum router served in-process on an ephemeral port, and requests to
//! it over plain HTTP/1.1 (no client crate among the dev-dependencies).
//! Used by the tests that serve HTTP (axum is a dev-dependency of every test).
#![allow(dead_code)]

use std::net::SocketAddr;

use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `app` on 127.0.0.1 at an ephemeral port.
pub async fn start(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub struct Reply {
    pub status: u16,
    /// Header lines, lower-cased.
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The `Retry-After` header's seconds (panics without one).
    pub fn retry_after(&self) -> u64 {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .expect("retry-after")
            .parse()
            .unwrap()
    }
}

/// One request with extra header lines (each ending in `\r\n`).
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    Reply {
        status: head[9..12].parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// One `GET`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, "").await
}
