//! A frozen coordinator (the process stopped, the kernel still accepting connections) does
//! not hang a client: every unary rpc ends with DEADLINE_EXCEEDED, which callers retry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use arlas_client::CoordinatorClient;
use arlas_core::LeaseId;

#[tokio::test]
async fn a_frozen_coordinator_ends_every_unary_rpc_with_a_deadline() {
    // Accepts connections and never answers: what a SIGSTOPped coordinator looks like.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let channel = arlas_runtime::client::endpoint(&format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client =
        CoordinatorClient::new(channel, None).with_deadline(Duration::from_millis(200));
    let lease = LeaseId::parse("524dd63941c11034390dba0d401cbc81").unwrap();
    let errors = tokio::time::timeout(Duration::from_secs(60), async {
        vec![
            client.run_state().await.unwrap_err(),
            client.heartbeat(&lease).await.unwrap_err(),
            client.population().await.unwrap_err(),
            client.assign_opponents(&lease, 1, 2).await.unwrap_err(),
            client.report_results(&lease, 1, &[]).await.unwrap_err(),
            client.deregister(&lease).await.unwrap_err(),
        ]
    })
    .await
    .expect("every call returned");
    for e in errors {
        assert_eq!(e.code(), Some(tonic::Code::DeadlineExceeded), "{e}");
        assert!(e.is_transient(), "{e}");
    }
}
