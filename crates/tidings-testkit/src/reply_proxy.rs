use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A loopback TCP proxy that can lose one direction: with [`ReplyProxy::mute`] on,
/// what the client sends still reaches the server but the server's answers are read
/// and thrown away, connections staying open — an asymmetric partition. A NATS client
/// behind it has its publishes stored while every acknowledgement (and PONG) is lost,
/// which a [`crate::TcpProxy`] cut (both directions closed at once) cannot produce.
#[derive(Debug)]
pub struct ReplyProxy {
    addr: SocketAddr,
    muted: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl ReplyProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding a proxy: {e}"));
        let addr = listener.local_addr().expect("invariant: bound");
        let muted = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (muted2, stop2) = (muted.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop2.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let (muted, stop) = (muted2.clone(), stop2.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let up = tokio::io::copy(&mut client_rx, &mut server_tx);
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = server_rx.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            if !muted.load(Ordering::SeqCst) {
                                client_tx.write_all(&buf[..n]).await?;
                            }
                        }
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        Self { addr, muted, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Loses (`true`) or passes again (`false`) everything the server sends.
    pub fn mute(&self, muted: bool) {
        self.muted.store(muted, Ordering::SeqCst);
    }
}

impl Drop for ReplyProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
