//! The userspace TCP fault proxy between members (this machine's kernel has no `netem`): every member's
//! advertised peer URL is a proxy port, which forwards to the member's real peer listener. Each link
//! (from member, to member) can be given a delay and "loss", applied to the bytes going that way.
//!
//! Loss cannot be real packet loss above TCP; it is emulated the way a lossy link looks to TCP's user:
//! now and then a piece of data arrives late by a retransmission timeout (`stall`), and the data behind
//! it waits too. Order and content are always kept.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// What a link does to the bytes crossing it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFault {
    /// Added to every piece of data (one way).
    pub delay: Duration,
    /// Chance that a piece of data is held back by `stall` more.
    pub loss: f64,
    pub stall: Duration,
}

/// Every link's fault, by (from, to) member index; links not listed are clean.
#[derive(Debug, Default)]
pub struct Links {
    faults: Mutex<HashMap<(usize, usize), LinkFault>>,
}

impl Links {
    pub fn set(&self, from: usize, to: usize, fault: LinkFault) {
        self.faults.lock().expect("links lock").insert((from, to), fault);
    }

    pub fn clear(&self) {
        self.faults.lock().expect("links lock").clear();
    }

    fn get(&self, from: usize, to: usize) -> LinkFault {
        self.faults.lock().expect("links lock").get(&(from, to)).copied().unwrap_or_default()
    }

    /// For a connection whose sender is unknown (loopback runs, where every member connects from
    /// 127.0.0.1): the largest fault on any link into or out of `member`.
    fn worst(&self, member: usize) -> LinkFault {
        let faults = self.faults.lock().expect("links lock");
        faults.iter().filter(|((from, to), _)| *from == member || *to == member).map(|(_, fault)| *fault).fold(
            LinkFault::default(),
            |worst, fault| LinkFault {
                delay: worst.delay.max(fault.delay),
                loss: worst.loss.max(fault.loss),
                stall: worst.stall.max(fault.stall),
            },
        )
    }
}

/// Serves the proxy of member `to` until the task is aborted. `identify` names the member an incoming
/// connection comes from (by its source address); when it cannot (loopback runs), the connection gets
/// the worst fault of any link of `to`.
pub async fn serve(
    listener: TcpListener,
    to: usize,
    target: SocketAddr,
    links: Arc<Links>,
    identify: Arc<dyn Fn(SocketAddr) -> Option<usize> + Send + Sync>,
) {
    loop {
        let Ok((inbound, source)) = listener.accept().await else { continue };
        let from = identify(source);
        let links = links.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else { return };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (inbound_read, inbound_write) = inbound.into_split();
            let (outbound_read, outbound_write) = outbound.into_split();
            let link = move |a: Option<usize>, b: Option<usize>| {
                let links = links.clone();
                move || match (a, b) {
                    (Some(a), Some(b)) => links.get(a, b),
                    (Some(member), None) | (None, Some(member)) => links.worst(member),
                    (None, None) => LinkFault::default(),
                }
            };
            let up = pump(inbound_read, outbound_write, link(from, Some(to)));
            let down = pump(outbound_read, inbound_write, link(Some(to), from));
            // When either way ends, the connection is over.
            tokio::select! {
                _ = up => {}
                _ = down => {}
            }
        });
    }
}

/// Copies one direction, holding each piece of data as the link's current fault says.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    fault: impl Fn() -> LinkFault + Send + 'static,
) {
    let (pieces, mut queue) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(4096);
    let writer = tokio::spawn(async move {
        while let Some((due, piece)) = queue.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&piece).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    let mut last_due = Instant::now();
    loop {
        let count = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(count) => count,
        };
        let fault = fault();
        let mut due = Instant::now() + fault.delay;
        if fault.loss > 0.0 && rand::random::<f64>() < fault.loss {
            due += fault.stall;
        }
        // Never overtake earlier data.
        due = due.max(last_due);
        last_due = due;
        if pieces.send((due, buffer[..count].to_vec())).await.is_err() {
            break;
        }
    }
    drop(pieces);
    let _ = writer.await;
}
