//! A TCP proxy on loopback that can freeze: while frozen it forwards nothing in either direction on any
//! connection (old or new; new ones are still accepted, as a stalled network path would), so the kernel buffers
//! fill and both ends stall; unfrozen, everything held flows on. For network-stall tests of RTSP interleaved over
//! TCP: point the camera URL at [`TcpProxy::port`] instead of the camera's.
//!
//! Plain threads (two per connection), so it works from any test, with or without a runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Whether traffic is held, with a condition variable the pumps wait on.
#[derive(Default)]
struct Gate {
    frozen: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, frozen: bool) {
        *self.frozen.lock().expect("gate lock") = frozen;
        self.changed.notify_all();
    }

    /// Returns once the gate is open (or `stop` is set).
    fn pass(&self, stop: &AtomicBool) {
        let mut frozen = self.frozen.lock().expect("gate lock");
        while *frozen && !stop.load(Ordering::Relaxed) {
            frozen = self.changed.wait(frozen).expect("gate lock");
        }
    }
}

struct Shared {
    gate: Gate,
    stop: AtomicBool,
    /// Every socket the proxy opened, so dropping it closes them all.
    sockets: Mutex<Vec<TcpStream>>,
}

/// A running proxy from a free loopback port to `upstream`. Dropping it closes every connection.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            gate: Gate::default(),
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("tcp-proxy".into())
            .spawn(move || accept_loop(listener, upstream, s))?;
        Ok(TcpProxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Holds all traffic from now on.
    pub fn freeze(&self) {
        self.shared.gate.set(true);
    }

    /// Lets traffic flow again, what was held first.
    pub fn unfreeze(&self) {
        self.shared.gate.set(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.gate.set(false);
        for s in self.shared.sockets.lock().expect("sockets lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        if let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) {
            shared
                .sockets
                .lock()
                .expect("sockets lock")
                .extend([c3, s3]);
        }
        for (from, to) in [(client, s2), (server, c2)] {
            let s = shared.clone();
            let _ = std::thread::Builder::new()
                .name("tcp-proxy-pump".into())
                .spawn(move || pump(from, to, &s));
        }
    }
}

/// Copies `from` to `to` chunk by chunk, each chunk only while the gate is open; at the end of either side,
/// closes both so the other pump ends too.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        shared.gate.pass(&shared.stop);
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Data read just before a freeze waits for the thaw too.
        shared.gate.pass(&shared.stop);
        if shared.stop.load(Ordering::Relaxed) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An echo server on loopback for the proxy to forward to.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = c.try_clone().unwrap();
                    let mut w = c;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn roundtrip(c: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        c.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn forwards_holds_while_frozen_and_releases_on_thaw() {
        let proxy = TcpProxy::start(echo()).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        assert_eq!(roundtrip(&mut c, b"hello").unwrap(), b"hello");

        proxy.freeze();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let e = roundtrip(&mut c, b"stall").unwrap_err();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        );
        // A connection opened while frozen is accepted but carries nothing either.
        let mut late = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        late.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(roundtrip(&mut late, b"late").is_err());

        proxy.unfreeze();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut held = [0u8; 5];
        c.read_exact(&mut held).unwrap();
        assert_eq!(&held, b"stall", "what was held arrives after the thaw");
        late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut held = [0u8; 4];
        late.read_exact(&mut held).unwrap();
        assert_eq!(&held, b"late");
    }

    #[test]
    fn dropping_the_proxy_closes_its_connections() {
        let proxy = TcpProxy::start(echo()).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        assert_eq!(roundtrip(&mut c, b"x").unwrap(), b"x");
        drop(proxy);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    }
}
