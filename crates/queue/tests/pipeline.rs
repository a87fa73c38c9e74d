//! The queue's stages as one pipeline over a real SQLite store and spool:
//! what is accepted is reviewed (the hook sees its bytes), delivered through
//! the transport, and a shutdown after the last hand-over ends cleanly.

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tomare_config::Config;
use tomare_model::{Address, Envelope, Facts, MessageId, OutcomeClass, Payload, RcptOutcome, State};
use tomare_queue::{Pipeline, Review, Ruling, Spool, Stage, Stopped, Transport};
use tomare_store::{QueueStore, SqliteStore, Store};

#[derive(Default)]
struct Seen(Mutex<Vec<(MessageId, Vec<u8>)>>);

struct NoRules(Config, Arc<Seen>);

impl Review for NoRules {
    fn review(&self, _id: &MessageId, envelope: &Envelope, _data: &[u8], is_dsn: bool) -> (Facts, Ruling) {
        (Facts::default(), Ruling::default_hold(&self.0, envelope, is_dsn))
    }

    fn reviewed(&self, id: &MessageId, data: &Arc<Vec<u8>>, _facts: Facts) {
        self.1.0.lock().unwrap().push((id.clone(), data.to_vec()));
    }
}

#[derive(Default)]
struct Delivered(Mutex<Vec<(MessageId, Vec<u8>)>>);

#[async_trait]
impl Transport for Delivered {
    async fn send(&self, id: &MessageId, _from: &Address, rcpts: &[Address], data: &Payload) -> Vec<RcptOutcome> {
        let Payload::Bytes(bytes) = data else { panic!("small messages are sent from memory") };
        self.0.lock().unwrap().push((id.clone(), bytes.clone()));
        rcpts
            .iter()
            .map(|r| RcptOutcome { address: r.clone(), class: OutcomeClass::Delivered, reply: "250 ok".into() })
            .collect()
    }
}

/// A stage after the queue: records when it was stopped, and how many
/// deliveries there were by then.
struct After(Arc<Delivered>, Arc<Mutex<Option<usize>>>);

impl Stage for After {
    fn stop(self: Box<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            *self.1.lock().unwrap() = Some(self.0.0.lock().unwrap().len());
        })
    }
}

async fn until(what: impl Fn() -> bool) {
    let start = Instant::now();
    while !what() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mail_is_reviewed_delivered_and_the_pipeline_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.hold.external = tomare_config::Duration(Duration::ZERO);
    config.hold.internal = tomare_config::Duration(Duration::ZERO);
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("tomare.db")).await.unwrap());
    let org = sqlite.ensure_org("Example").await.unwrap();
    let store: Arc<dyn Store> = sqlite.clone();
    let spool = Spool::open(dir.path()).unwrap();
    let (seen, delivered) = (Arc::new(Seen::default()), Arc::new(Delivered::default()));
    let review = Arc::new(NoRules(config.clone(), seen.clone()));
    let stopped_after = Arc::new(Mutex::new(None));
    let pipeline = Pipeline::builder(&config, store.clone(), spool, review, delivered.clone())
        .org(org)
        .then(Box::new(After(delivered.clone(), stopped_after.clone())))
        .start();
    let acceptor = pipeline.acceptor();
    let mut ids = Vec::new();
    for i in 0..3 {
        let envelope = Envelope {
            mail_from: "taro@example.com".parse().unwrap(),
            rcpt_to: vec![format!("r{i}@customer.test").parse().unwrap()],
            helo: "h".into(),
            client_ip: "127.0.0.1".into(),
            auth_user: None,
        };
        let data = format!("Subject: m{i}\r\n\r\nbody {i}\r\n").into_bytes();
        ids.push((acceptor.accept(envelope, data.clone(), false).await.unwrap(), data));
    }
    // What SMTP does at shutdown: its acceptor goes first.
    drop(acceptor);
    until(|| delivered.0.lock().unwrap().len() >= 3).await;
    let got = delivered.0.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "every accepted message delivered once");
    for (id, data) in &ids {
        assert!(got.iter().any(|(d, b)| d == id && b == data), "{id} delivered as accepted");
        assert!(seen.0.lock().unwrap().iter().any(|(s, b)| s == id && b == data), "the hook saw {id}");
    }
    let start = Instant::now();
    loop {
        let rows = store.list(None, 10).await.unwrap();
        if rows.iter().all(|m| m.state == State::Delivered) || start.elapsed() > Duration::from_secs(10) {
            assert!(rows.iter().all(|m| m.state == State::Delivered), "{rows:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*stopped_after.lock().unwrap(), None, "the stage after the queue runs until shutdown");
    let stopped = pipeline.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stopped, Stopped { cut_short: false, commits_left: false });
    assert_eq!(*stopped_after.lock().unwrap(), Some(3), "stopped last, after every delivery");
}
