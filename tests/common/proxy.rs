//! A TCP proxy on 127.0.0.1 between a pool and a real server, to inject
//! faults: stall (accept and forward nothing), cut (close every open
//! connection), refuse (stop listening), delay, and recover.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Pass,
    Stall,
    Delay(Duration),
}

#[derive(Debug)]
struct Control {
    flow: watch::Sender<Flow>,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
    listening: watch::Sender<bool>,
}

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    control: Arc<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        assert!(
            upstream.ip().is_loopback(),
            "traffic goes to 127.0.0.1 only"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let control = Arc::new(Control {
            flow: watch::channel(Flow::Pass).0,
            cut: watch::channel(0).0,
            listening: watch::channel(true).0,
        });
        let c = Arc::clone(&control);
        // Subscribed before the task first runs, so a `refuse()` right after
        // `start()` is not taken as the value already seen.
        let mut listening = c.listening.subscribe();
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                match &listener {
                    Some(l) => {
                        tokio::select! {
                            accepted = l.accept() => {
                                if let Ok((client, _)) = accepted {
                                    tokio::spawn(forward(client, upstream, Arc::clone(&c)));
                                }
                            }
                            _ = listening.changed() => {
                                if !*listening.borrow_and_update() {
                                    listener = None; // closes the socket: connects are refused
                                }
                            }
                        }
                    }
                    None => {
                        if listening.changed().await.is_err() {
                            return;
                        }
                        if *listening.borrow_and_update() {
                            listener = Some(TcpListener::bind(addr).await.expect("re-bind"));
                        }
                    }
                }
            }
        });
        Proxy {
            addr,
            control,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Accepts and holds connections but forwards nothing.
    pub fn stall(&self) {
        self.control.flow.send_replace(Flow::Stall);
    }

    /// Forwards each chunk after `d`.
    pub fn delay(&self, d: Duration) {
        self.control.flow.send_replace(Flow::Delay(d));
    }

    /// Closes every open connection.
    pub fn cut(&self) {
        self.control.cut.send_modify(|g| *g += 1);
    }

    /// Stops listening (connects are refused) and closes every connection.
    pub fn refuse(&self) {
        self.control.listening.send_replace(false);
        self.cut();
    }

    /// Back to normal: listening, forwarding.
    pub fn recover(&self) {
        self.control.flow.send_replace(Flow::Pass);
        self.control.listening.send_replace(true);
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, c: Arc<Control>) {
    let mut cut = c.cut.subscribe();
    cut.borrow_and_update();
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, c.flow.subscribe());
    let down = pump(sr, cw, c.flow.subscribe());
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.changed() => {} // dropping both halves closes both sockets
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flow: watch::Receiver<Flow>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let f = *flow.borrow_and_update();
            match f {
                Flow::Pass => break,
                Flow::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Flow::Stall => {
                    if flow.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
