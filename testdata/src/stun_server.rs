//! A STUN server on loopback that answers binding requests (RFC 8489) as one on the far side of a NAT would: the
//! XOR-MAPPED-ADDRESS it reports is the address the test says the NAT gave the asking socket, not the loopback
//! address the request came from. It counts what it answered.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rtc::stun::message::{Message, BINDING_REQUEST, BINDING_SUCCESS};
use rtc::stun::xoraddr::XorMappedAddress;

pub struct StunServer {
    addr: SocketAddr,
    answered: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StunServer {
    /// Starts answering on a free loopback port; every requester is told it is seen at `public`.
    pub fn start(public: SocketAddr) -> std::io::Result<StunServer> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let answered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (answered, stop) = (answered.clone(), stop.clone());
            std::thread::Builder::new()
                .name("stun-server".into())
                .spawn(move || serve(&socket, public, &answered, &stop))?
        };
        Ok(StunServer {
            addr,
            answered,
            stop,
            thread: Some(thread),
        })
    }

    /// The `stun:` URL to configure.
    pub fn url(&self) -> String {
        format!("stun:{}", self.addr)
    }

    /// Binding requests answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for StunServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    socket: &UdpSocket,
    public: SocketAddr,
    answered: &AtomicUsize,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let mut request = Message::new();
        if request.unmarshal_binary(&buf[..n]).is_err() || request.typ != BINDING_REQUEST {
            continue;
        }
        let mut answer = Message::new();
        let seen = XorMappedAddress {
            ip: public.ip(),
            port: public.port(),
        };
        if answer
            .build(&[
                Box::new(BINDING_SUCCESS),
                Box::new(request.transaction_id),
                Box::new(seen),
            ])
            .is_ok()
            && socket.send_to(&answer.raw, from).is_ok()
        {
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
