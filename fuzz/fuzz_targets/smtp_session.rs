//! Whole SMTP sessions: the input is split into client writes (sizes taken
//! from the input itself) and fed to a real `Session` over an in-memory
//! pipe. No panic, the session ends, and every `250 ... queued as` reply
//! matches a message the sink took.
#![no_main]

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tomare_model::{Envelope, Metrics};
use tomare_smtp::{Authenticator, Incoming, Login, MessageSink, Session, SessionConfig};

#[derive(Default)]
struct Sink(Arc<Mutex<usize>>);

#[async_trait]
impl MessageSink for Sink {
    async fn accept(&self, _: Envelope, _: Vec<u8>) -> Result<String, String> {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        Ok(format!("Q{n}"))
    }
    async fn begin(&self) -> Result<Box<dyn Incoming>, String> {
        Ok(Box::new(Spill(self.0.clone())))
    }
}

struct Spill(Arc<Mutex<usize>>);

#[async_trait]
impl Incoming for Spill {
    async fn write(&mut self, _: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
    async fn finish(self: Box<Self>, _: Envelope) -> Result<String, String> {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        Ok(format!("Q{n}"))
    }
}

struct Users;

#[async_trait]
impl Authenticator for Users {
    async fn verify(&self, user: &str, password: &str) -> Option<Login> {
        (user == "taro@example.com" && password == "pw")
            .then(|| Login { user: user.into(), send_as: vec!["taro@example.com".parse().unwrap()] })
    }
}

fn config() -> Arc<SessionConfig> {
    static CFG: std::sync::OnceLock<Arc<SessionConfig>> = std::sync::OnceLock::new();
    CFG.get_or_init(|| {
        let mut c = tomare_config::Config::default();
        c.smtp.max_message_size = tomare_config::ByteSize(3000);
        c.smtp.max_recipients = 5;
        c.smtp.max_errors = 100;
        c.smtp.idle_timeout = tomare_config::Duration(Duration::from_secs(2));
        Arc::new(SessionConfig::new(&c, "fuzz.example.com".into(), None))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let count = Arc::new(Mutex::new(0));
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let peer = if seed & 0x80 == 0 { "127.0.0.1" } else { "203.0.113.1" }.parse().unwrap();
        let session = Session::new(
            config(),
            Arc::new(Sink(count.clone())),
            Arc::new(Users),
            Arc::new(Metrics::default()),
            peer,
            rx,
        );
        let task = tokio::spawn(session.run(server));
        let (mut rd, mut wr) = tokio::io::split(client);
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        });
        let chunk = 1 + (seed as usize & 0x3f);
        for piece in input.chunks(chunk) {
            if wr.write_all(piece).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        drop(wr);
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the session ends").expect("no panic").ok();
        let out = reader.await.unwrap();
        let queued = out.windows(13).filter(|w| w == b"Ok: queued as").count();
        assert_eq!(queued, *count.lock().unwrap());
    });
});
